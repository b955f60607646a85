"""A canteen's food waste by dish over a date range, from its before/after pairs."""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter

from serve.core.errors import unprocessable
from serve.db.access import load_canteen
from serve.db.tables.core import Role
from serve.deps import CurrentPrincipal, SessionDep
from serve.diary import WasteReport, canteen_waste

router = APIRouter(prefix="/v1/canteens", tags=["waste"])
MAX_DAYS = 366


@router.get("/{canteen_id}/waste", response_model=WasteReport)
def waste(canteen_id: str, start: dt.date, end: dt.date, principal: CurrentPrincipal,
          session: SessionDep) -> WasteReport:
    """Served, eaten and left grams per dish (most wasted first), local dates inclusive."""
    principal.require_role(Role.KIOSK)  # canteen-wide figures are not an app's business
    canteen = load_canteen(session, principal, canteen_id)
    if start > end or (end - start).days >= MAX_DAYS:
        raise unprocessable(f"need start <= end within {MAX_DAYS} days; got {start}..{end}",
                            code="invalid_range")
    return canteen_waste(session, canteen.id, start, end)
