"""Before/after pairs: link two analyses of one tray and read what was eaten and left."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from nutrition_db import meal_nutrients
from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found
from serve.db.access import load_analysis
from serve.db.tables.core import Role, User
from serve.db.tables.pairs import MealPair
from serve.deps import CurrentPrincipal, SessionDep
from serve.pairing import PairedItem, close_pair, open_pair, pair_of

router = APIRouter(prefix="/v1/pairs", tags=["pairs"])


class PairCreate(BaseModel):
    """Pair a before photo with (optionally) its after photo, by analysis id."""

    model_config = ConfigDict(extra="forbid")
    before_analysis_id: str = Field(min_length=1, max_length=32)
    after_analysis_id: str | None = Field(None, min_length=1, max_length=32)


class PairClose(BaseModel):
    """The after photo that closes an open pair."""

    model_config = ConfigDict(extra="forbid")
    after_analysis_id: str = Field(min_length=1, max_length=32)


class PairResultPublic(BaseModel):
    """Per item and tray totals of served, eaten and left grams, and nutrients eaten."""

    items: list[PairedItem]
    served_g: float
    eaten_g: float
    leftover_g: float
    leftover_pct: float | None
    eaten_nutrients: dict[str, float | None]
    incomplete_nutrients: list[str]


class PairPublic(BaseModel):
    """A pair; `result` is null until the after photo is in."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    canteen_id: str | None
    kiosk_id: str | None
    user_id: str | None
    before_analysis_id: str
    after_analysis_id: str | None
    before_at: dt.datetime
    after_at: dt.datetime | None
    result: PairResultPublic | None = None


def load_pair(session: SessionDep, principal: Principal, pair_id: str) -> MealPair:
    """A pair whose before photo the caller may see (404 otherwise)."""
    pair = session.get(MealPair, pair_id)
    if pair is None:
        raise not_found("meal pair", pair_id)
    try:
        load_analysis(session, principal, pair.before_analysis_id)
    except ApiError as exc:  # another tenant's pair looks exactly like an unknown one
        raise not_found("meal pair", pair_id) from exc
    return pair


def public(session: SessionDep, pair: MealPair) -> PairPublic:
    """The pair with its result computed from the current (maybe corrected) items."""
    out = PairPublic.model_validate(pair)
    if pair.after_analysis_id is not None:
        res = pair_of(session, pair)
        nutr = meal_nutrients(res.eaten())
        out.result = PairResultPublic(items=list(res.items), served_g=res.served_g,
                                      eaten_g=res.eaten_g, leftover_g=res.leftover_g,
                                      leftover_pct=res.leftover_pct,
                                      eaten_nutrients=nutr.totals,
                                      incomplete_nutrients=nutr.incomplete)
    return out


@router.post("", status_code=201, response_model=PairPublic)
def create(body: PairCreate, principal: CurrentPrincipal, session: SessionDep) -> PairPublic:
    """Open a pair from a before analysis (idempotent), closing it when an after is given."""
    with session.begin():
        before = load_analysis(session, principal, body.before_analysis_id)
        pair = open_pair(session, before)
        if body.after_analysis_id is not None:
            close_pair(session, pair, load_analysis(session, principal, body.after_analysis_id))
        return public(session, pair)


@router.put("/{pair_id}/after", response_model=PairPublic)
def close(pair_id: str, body: PairClose, principal: CurrentPrincipal,
          session: SessionDep) -> PairPublic:
    """Close an open pair with its after analysis (409 if it has another one)."""
    with session.begin():
        pair = load_pair(session, principal, pair_id)
        close_pair(session, pair, load_analysis(session, principal, body.after_analysis_id))
        return public(session, pair)


@router.get("/{pair_id}", response_model=PairPublic)
def get(pair_id: str, principal: CurrentPrincipal, session: SessionDep) -> PairPublic:
    """One pair and its result."""
    return public(session, load_pair(session, principal, pair_id))


@router.get("", response_model=list[PairPublic])
def list_pairs(principal: CurrentPrincipal, session: SessionDep, kiosk_id: str | None = None,
               user_id: str | None = None, open_only: bool = False,
               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[PairPublic]:
    """Recent pairs the caller may see, newest first (open ones only with open_only)."""
    query = select(MealPair).order_by(MealPair.before_at.desc()).limit(limit)
    if principal.role is Role.APP:
        query = query.join(User, User.id == MealPair.user_id).where(
            User.app_key_id == principal.key_id)
    elif not principal.is_admin:
        query = query.where(MealPair.canteen_id == principal.canteen_id)
    if kiosk_id is not None:
        query = query.where(MealPair.kiosk_id == kiosk_id)
    if user_id is not None:
        query = query.where(MealPair.user_id == user_id)
    if open_only:
        query = query.where(MealPair.after_analysis_id.is_(None))
    return [public(session, p) for p in session.scalars(query)]
