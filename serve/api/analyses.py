"""Stored analyses: read, list, correct an item (original kept), overlay image."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from model.infer.runtime import ImageError, load_image
from serve.analyses import analysis_payload, correct_item
from serve.core.auth import Principal
from serve.core.errors import ApiError
from serve.core.overlay import OverlayItem, caption, render_overlay
from serve.core.settings import Settings
from serve.core.storage import ImageStore
from serve.db.access import load_analysis, load_item, load_user
from serve.db.tables.analyses import Analysis
from serve.db.tables.core import Role, User
from serve.db.tables.pairs import MealPair
from serve.deps import CurrentPrincipal, SessionDep

router = APIRouter(prefix="/v1/analyses", tags=["analyses"])


class ItemCorrection(BaseModel):
    """A user's correction of one item: the right food, the right grams, or both."""

    model_config = ConfigDict(extra="forbid")
    food_id: str | None = Field(None, min_length=1, max_length=64)
    grams: float | None = Field(None, ge=0, le=5000)

    @model_validator(mode="after")
    def _something(self) -> ItemCorrection:
        """An empty correction is a client bug."""
        if self.food_id is None and self.grams is None:
            raise ValueError("send food_id and/or grams")
        return self


def pair_id_of(session: Session, analysis_id: str) -> str | None:
    """The before/after pair this analysis belongs to, if any."""
    return session.scalar(select(MealPair.id).where(or_(
        MealPair.before_analysis_id == analysis_id, MealPair.after_analysis_id == analysis_id
    )).limit(1))


def _scoped(query: Any, principal: Principal) -> Any:
    """Only analyses the caller may see (same rules as Principal.can_see_analysis)."""
    if principal.role is Role.APP:
        own_users = select(User.id).where(User.app_key_id == principal.key_id)
        return query.where(or_(Analysis.api_key_id == principal.key_id,
                               Analysis.user_id.in_(own_users)))
    if not principal.is_admin:
        return query.where(Analysis.canteen_id == principal.canteen_id)
    return query


@router.get("")
def list_analyses(
    principal: CurrentPrincipal, session: SessionDep,
    user_id: str | None = None, since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Newest first; optionally one user's (whom the caller must be able to see)."""
    query = _scoped(select(Analysis), principal)
    if user_id is not None:
        load_user(session, principal, user_id)
        query = query.where(Analysis.user_id == user_id)
    if since is not None:
        query = query.where(Analysis.captured_at >= since)
    rows = session.scalars(query.order_by(Analysis.captured_at.desc()).limit(limit)).all()
    return [analysis_payload(a, pair_id=pair_id_of(session, a.id)) for a in rows]


@router.get("/{analysis_id}")
def get_analysis(
    analysis_id: str, principal: CurrentPrincipal, session: SessionDep
) -> dict[str, Any]:
    """One analysis with its items and totals."""
    analysis = load_analysis(session, principal, analysis_id)
    return analysis_payload(analysis, pair_id=pair_id_of(session, analysis.id))


@router.patch("/{analysis_id}/items/{item_id}")
def correct(
    analysis_id: str, item_id: str, body: ItemCorrection, principal: CurrentPrincipal,
    session: SessionDep,
) -> dict[str, Any]:
    """Correct an item's food and/or grams; the model's original estimate is kept."""
    with session.begin():
        item = load_item(session, principal, analysis_id, item_id)
        correct_item(item.analysis, item, food_id=body.food_id, grams=body.grams)
        session.flush()
        return analysis_payload(item.analysis, pair_id=pair_id_of(session, analysis_id))


def _overlay_png(settings: Settings, analysis: Analysis) -> bytes:
    """Render the overlay from the stored photo (410 once retention purged it)."""
    data = ImageStore(settings.image_dir).get(analysis.image_sha256)
    if data is None:
        raise ApiError(410, "image_purged", "the photo is no longer stored (retention)")
    try:
        photo = load_image(data, max_pixels=settings.max_pixels)
    except ImageError as exc:  # stored bytes were validated on upload: this is disk damage
        raise ApiError(410, "image_unreadable", f"the stored photo is unreadable: {exc}") from exc
    items = [OverlayItem(i.box, i.polygon, caption(i.name_en, i.label, i.grams))
             for i in analysis.items]
    return render_overlay(photo, items)


@router.get("/{analysis_id}/overlay.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
async def overlay(
    analysis_id: str, request: Request, principal: CurrentPrincipal, session: SessionDep
) -> Response:
    """The photo with masks, boxes, labels and grams drawn over it."""
    analysis = await run_in_threadpool(load_analysis, session, principal, analysis_id)
    png = await run_in_threadpool(_overlay_png, request.app.state.settings, analysis)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})
