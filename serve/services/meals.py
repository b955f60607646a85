"""A person's meals: logged from a photo (POST /v1/analyze) or by hand (food ids and grams).

A manual meal is stored as an analysis with source "manual" and no photo (image, model
version and boxes empty), whose items are user items (provenance user, nutrients from
nutrition_db). So the diary, habits, weekly reports and corrections read one kind of
record and sum nutrients in one place; nothing here adds a second path.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from serve.core.auth import Principal
from serve.core.errors import unprocessable
from serve.db.access import load_user
from serve.db.base import utcnow
from serve.db.tables.analyses import Analysis, MealSource, MealState
from serve.schemas.meals import MealCreate
from serve.services.analyses import (
    analysis_payload,
    insert_analysis,
    pair_id_of,
    retotal,
    user_item,
)
from serve.services.diary import canteen_zone, check_range, utc_range

# A meal logged more than this far ahead of the server's clock is a client's mistake.
FUTURE_SLACK = dt.timedelta(days=1)
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_LIMIT = 100


def eaten_at_utc(moment: dt.datetime) -> dt.datetime:
    """The time in UTC (a naive time is taken as UTC); 422 when far in the future or past."""
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    aware = aware.astimezone(dt.UTC)
    if aware > utcnow() + FUTURE_SLACK:
        raise unprocessable(f"eaten_at {aware.isoformat()} is in the future",
                            code="invalid_eaten_at")
    if aware < EARLIEST:
        raise unprocessable(f"eaten_at {aware.isoformat()} is before {EARLIEST.year}",
                            code="invalid_eaten_at")
    return aware


def log_meal(session: Session, principal: Principal, user_id: str,
             body: MealCreate) -> dict[str, Any]:
    """Store a meal without a photo for a user the caller may see; answer it as analyses are
    answered (source "manual")."""
    with session.begin():
        user = load_user(session, principal, user_id)
        eaten_at = eaten_at_utc(body.eaten_at)
        items = [user_item(i.food_id, i.grams, n) for n, i in enumerate(body.items)]
        meal = Analysis(source=MealSource.MANUAL.value, canteen_id=user.canteen_id,
                        api_key_id=principal.key_id, user_id=user.id, captured_at=eaten_at,
                        image_sha256=None, image_width=None, image_height=None,
                        model_version=None, layout=None, items=items)
        retotal(meal)
        insert_analysis(session, meal)
        return analysis_payload(meal)


def _cursor(analysis: Analysis) -> str:
    """An opaque position after this meal in the newest-first order."""
    moment = analysis.captured_at
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    raw = f"{aware.astimezone(dt.UTC).isoformat()}|{analysis.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """(captured_at, id) of the last meal of the previous page; 422 when not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, ident = raw.split("|")
        return dt.datetime.fromisoformat(moment), ident
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise unprocessable("cursor is not one this service gave", code="invalid_cursor") \
            from exc


def list_meals(session: Session, principal: Principal, user_id: str, *,
               start: dt.date | None, end: dt.date | None, limit: int,
               cursor: str | None) -> dict[str, Any]:
    """The user's photo and manual meals, newest first (after photos belong to their pair,
    not listed); start/end are local dates of the user's canteen, inclusive."""
    user = load_user(session, principal, user_id)
    query = select(Analysis).where(
        Analysis.user_id == user.id,
        or_(Analysis.meal_state.is_(None), Analysis.meal_state != MealState.AFTER.value))
    if start is not None or end is not None:
        zone = canteen_zone(session, user.canteen_id)
        lo_day, hi_day = start or dt.date(2000, 1, 1), end or dt.date(9998, 12, 30)
        if lo_day > hi_day:
            check_range(lo_day, hi_day)
        lo, hi = utc_range(lo_day, hi_day, zone)
        query = query.where(Analysis.captured_at >= lo, Analysis.captured_at < hi)
    if cursor is not None:
        moment, ident = _parse_cursor(cursor)
        query = query.where(or_(Analysis.captured_at < moment,
                                and_(Analysis.captured_at == moment, Analysis.id < ident)))
    rows = list(session.scalars(query.order_by(Analysis.captured_at.desc(),
                                               Analysis.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return {"meals": [analysis_payload(a, pair_id=pair_id_of(session, a.id)) for a in page],
            "next_cursor": _cursor(page[-1]) if len(rows) > limit else None}
