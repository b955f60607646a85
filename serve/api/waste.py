"""A canteen's food waste by dish over a date range, from its before/after pairs."""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter

from serve.deps import CurrentPrincipal, SessionDep
from serve.services.waste import WasteReport, waste_report

router = APIRouter(prefix="/v1/canteens", tags=["waste"])


@router.get("/{canteen_id}/waste", response_model=WasteReport)
def waste(canteen_id: str, start: dt.date, end: dt.date, principal: CurrentPrincipal,
          session: SessionDep) -> WasteReport:
    """Served, eaten and left grams per dish (most wasted first), local dates inclusive."""
    return waste_report(session, principal, canteen_id, start, end)
