"""A canteen's food waste by dish and by day over a date range, from its before/after pairs,
and its participation per day."""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter

from serve.deps import CurrentPrincipal, SessionDep
from serve.services.waste import DailyWasteReport, WasteReport, daily_waste_report, waste_report

router = APIRouter(prefix="/v1/canteens", tags=["waste"])


@router.get("/{canteen_id}/waste", response_model=WasteReport)
def waste(canteen_id: str, start: dt.date, end: dt.date, principal: CurrentPrincipal,
          session: SessionDep) -> WasteReport:
    """Served, eaten and left grams per dish (most wasted first), local dates inclusive."""
    return waste_report(session, principal, canteen_id, start, end)


@router.get("/{canteen_id}/waste/daily", response_model=DailyWasteReport)
def waste_daily(canteen_id: str, start: dt.date, end: dt.date, principal: CurrentPrincipal,
                session: SessionDep) -> DailyWasteReport:
    """Per local day: paired trays' served, eaten and left grams, and participation (distinct
    users with a before photo / the canteen's users). Every day of the range is listed."""
    return daily_waste_report(session, principal, canteen_id, start, end)
