"""A person's meals: log one without a photo, list photo and manual meals (access as the
diary's: kiosk keys their canteen's users, app keys their own)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from serve.deps import CurrentPrincipal, SessionDep
from serve.schemas.analyses import AnalysisPublic
from serve.schemas.meals import MealCreate, MealPage
from serve.services import meals as service

router = APIRouter(prefix="/v1/users", tags=["meals"])


@router.post("/{user_id}/meals", status_code=201, response_model=AnalysisPublic)
def log_meal(
    user_id: str, body: MealCreate, principal: CurrentPrincipal, session: SessionDep
) -> dict[str, Any]:
    """Log a meal without a photo: when it was eaten and each food's grams. It counts in
    the diary like a photo, and its items can be corrected, added and removed alike."""
    return service.log_meal(session, principal, user_id, body)


@router.get("/{user_id}/meals", response_model=MealPage)
def list_meals(
    user_id: str, principal: CurrentPrincipal, session: SessionDep,
    start: dt.date | None = None, end: dt.date | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Photo and manual meals, newest first; start/end: local dates of the user's canteen
    (inclusive); next_cursor pages on."""
    return service.list_meals(session, principal, user_id, start=start, end=end, limit=limit,
                              cursor=cursor)
