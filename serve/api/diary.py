"""A person's days, ISO weeks and habits: intake against reference intakes (KDRI 2020 or
US DRI), from their logged photos and before/after pairs (corrections applied)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from serve.core.errors import documented
from serve.db.access import load_user
from serve.deps import CurrentPrincipal, SessionDep
from serve.schemas.diary import WeekReport
from serve.services import diary as service
from serve.services.diary import DayReport, Habits
from serve.services.trends import Trends, user_trends

# Every route is a per-person report: 409 consent_withdrawn without consent to a diary.
router = APIRouter(prefix="/v1/users", tags=["diary"], responses=documented(409))

System = Annotated[Literal["kdri2020", "us_dri"],
                   Query(description="reference intakes: Korean KDRI 2020 or US DRIs")]


@router.get("/{user_id}/days/{day}", response_model=DayReport)
def day(user_id: str, day: dt.date, principal: CurrentPrincipal, session: SessionDep,
        system: System = "kdri2020") -> DayReport:
    """One local day: meals, nutrient totals and each against the person's reference."""
    user = load_user(session, principal, user_id)
    return service.days_report(session, user, day, day, system)[0]


@router.get("/{user_id}/weeks/{week}", response_model=WeekReport)
def week(user_id: str, week: str, principal: CurrentPrincipal, session: SessionDep,
         system: System = "kdri2020") -> WeekReport:
    """An ISO week (e.g. 2026-W48): the seven days and the week's habits."""
    user = load_user(session, principal, user_id)
    days, habits = service.week_report(session, user, week, system)
    refs, _ = service.user_references(user, system, days[0].date)
    return WeekReport(week=week, days=days, habits=habits,
                      daily_means=list(service.reference_means(days, refs)))


@router.get("/{user_id}/habits", response_model=Habits)
def user_habits(user_id: str, principal: CurrentPrincipal, session: SessionDep,
                start: dt.date | None = None, end: dt.date | None = None,
                system: System = "kdri2020") -> Habits:
    """Habits over a date range (default: the 28 days up to today, local time)."""
    user = load_user(session, principal, user_id)
    return service.user_habits(session, user, start, end, system)


@router.get("/{user_id}/trends", response_model=Trends)
def trends(user_id: str, principal: CurrentPrincipal, session: SessionDep,
           weeks: Annotated[int, Query(description="ISO weeks in the span: 4 or 12",
                                       json_schema_extra={"enum": [4, 12]})] = 4,
           end: Annotated[dt.date | None, Query(
               description="a day of the last week (default: today, local time)")] = None,
           system: System = "kdri2020") -> Trends:
    """Per ISO week: energy, protein/fat/carbohydrate shares of energy, sodium, sugars and
    fibre per logged day; each series' least-squares slope and direction (docs/API.md)."""
    user = load_user(session, principal, user_id)
    return user_trends(session, user, weeks, end, system)
