"""Before/after pairs: link two analyses of one tray and read what was eaten and left."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from nutrition_db import meal_nutrients
from serve.db.tables.pairs import MealPair
from serve.deps import CurrentPrincipal, SessionDep
from serve.schemas.pairs import (
    PairClose,
    PairCreate,
    PairItemPublic,
    PairPublic,
    PairResultPublic,
)
from serve.services import pairing as service

router = APIRouter(prefix="/v1/pairs", tags=["pairs"])


def public(session: Session, pair: MealPair) -> PairPublic:
    """The pair with its result computed from the current (maybe corrected) items."""
    out = PairPublic.model_validate(pair)
    if pair.after_analysis_id is not None:
        res = service.pair_of(session, pair)
        nutr = meal_nutrients(res.eaten())
        items = [PairItemPublic.model_validate(i) for i in res.items]
        out.result = PairResultPublic(items=items, served_g=res.served_g,
                                      eaten_g=res.eaten_g, leftover_g=res.leftover_g,
                                      leftover_pct=res.leftover_pct,
                                      eaten_nutrients=nutr.totals,
                                      incomplete_nutrients=nutr.incomplete)
    return out


@router.post("", status_code=201, response_model=PairPublic)
def create(body: PairCreate, principal: CurrentPrincipal, session: SessionDep) -> PairPublic:
    """Open a pair from a before analysis (idempotent), closing it when an after is given."""
    with session.begin():
        pair = service.create_pair(session, principal, body.before_analysis_id,
                                   body.after_analysis_id)
        return public(session, pair)


@router.put("/{pair_id}/after", response_model=PairPublic)
def close(pair_id: str, body: PairClose, principal: CurrentPrincipal,
          session: SessionDep) -> PairPublic:
    """Close an open pair with its after analysis (409 if it has another one)."""
    with session.begin():
        pair = service.close_by_id(session, principal, pair_id, body.after_analysis_id)
        return public(session, pair)


@router.get("/{pair_id}", response_model=PairPublic)
def get(pair_id: str, principal: CurrentPrincipal, session: SessionDep) -> PairPublic:
    """One pair and its result."""
    return public(session, service.load_pair(session, principal, pair_id))


@router.get("", response_model=list[PairPublic])
def list_pairs(principal: CurrentPrincipal, session: SessionDep, kiosk_id: str | None = None,
               user_id: str | None = None, open_only: bool = False,
               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[PairPublic]:
    """Recent pairs the caller may see, newest first (open ones only with open_only)."""
    pairs = service.list_pairs(session, principal, kiosk_id=kiosk_id, user_id=user_id,
                               open_only=open_only, limit=limit)
    return [public(session, p) for p in pairs]
