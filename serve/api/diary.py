"""A person's days, ISO weeks and habits: intake against reference intakes (KDRI 2020 or
US DRI), from their logged photos and before/after pairs (corrections applied)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from serve.core.errors import unprocessable
from serve.db.access import load_user
from serve.deps import CurrentPrincipal, SessionDep
from serve.diary import DayReport, Habits, canteen_zone, days_report, habits, user_references

router = APIRouter(prefix="/v1/users", tags=["diary"])

System = Annotated[Literal["kdri2020", "us_dri"],
                   Query(description="reference intakes: Korean KDRI 2020 or US DRIs")]
ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
MAX_DAYS = 366


class WeekReport(BaseModel):
    """Seven days (Monday first) and the habits they show."""

    week: str
    days: list[DayReport]
    habits: Habits


def week_bounds(week: str) -> tuple[dt.date, dt.date]:
    """Monday and Sunday of an ISO week written like 2026-W48."""
    match = ISO_WEEK.match(week)
    if match is None:
        raise unprocessable(f"week must look like 2026-W48, got {week!r}", code="invalid_week")
    try:
        monday = dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as exc:
        raise unprocessable(f"no such ISO week: {week}", code="invalid_week") from exc
    return monday, monday + dt.timedelta(days=6)


@router.get("/{user_id}/days/{day}", response_model=DayReport)
def day(user_id: str, day: dt.date, principal: CurrentPrincipal, session: SessionDep,
        system: System = "kdri2020") -> DayReport:
    """One local day: meals, nutrient totals and each against the person's reference."""
    user = load_user(session, principal, user_id)
    return days_report(session, user, day, day, system)[0]


@router.get("/{user_id}/weeks/{week}", response_model=WeekReport)
def week(user_id: str, week: str, principal: CurrentPrincipal, session: SessionDep,
         system: System = "kdri2020") -> WeekReport:
    """An ISO week (e.g. 2026-W48): the seven days and the week's habits."""
    user = load_user(session, principal, user_id)
    start, end = week_bounds(week)
    days = days_report(session, user, start, end, system)
    refs, _ = user_references(user, system, start)
    return WeekReport(week=week, days=days, habits=habits(days, start, end, refs))


@router.get("/{user_id}/habits", response_model=Habits)
def user_habits(user_id: str, principal: CurrentPrincipal, session: SessionDep,
                start: dt.date | None = None, end: dt.date | None = None,
                system: System = "kdri2020") -> Habits:
    """Habits over a date range (default: the 28 days up to today, local time)."""
    user = load_user(session, principal, user_id)
    end = end or dt.datetime.now(canteen_zone(session, user.canteen_id)).date()
    start = start or end - dt.timedelta(days=27)
    if start > end or (end - start).days >= MAX_DAYS:
        raise unprocessable(f"need start <= end within {MAX_DAYS} days; got {start}..{end}",
                            code="invalid_range")
    days = days_report(session, user, start, end, system)
    refs, _ = user_references(user, system, start)
    return habits(days, start, end, refs)
