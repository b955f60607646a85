"""Stored analyses: read, list, correct an item (original kept), overlay image."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from serve.core.errors import documented
from serve.db.access import load_analysis
from serve.deps import CurrentPrincipal, ImageStoreDep, ModelDep, SessionDep, SettingsDep
from serve.schemas.analyses import (
    AnalysisPublic,
    CorrectionPublic,
    CorrectionRecord,
    ItemAdd,
    ItemCorrection,
)
from serve.services import analyses as service

router = APIRouter(prefix="/v1/analyses", tags=["analyses"])


@router.get("", response_model=list[AnalysisPublic])
def list_analyses(
    principal: CurrentPrincipal, session: SessionDep,
    user_id: str | None = None, since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Newest first; optionally one user's (whom the caller must be able to see)."""
    return service.list_analyses(session, principal, user_id=user_id, since=since, limit=limit)


@router.get("/{analysis_id}", response_model=AnalysisPublic)
def get_analysis(
    analysis_id: str, principal: CurrentPrincipal, session: SessionDep
) -> dict[str, Any]:
    """One analysis with its items and totals."""
    return service.get_analysis(session, principal, analysis_id)


@router.patch("/{analysis_id}/items/{item_id}", response_model=CorrectionPublic,
              response_model_exclude_unset=True)
def correct(
    analysis_id: str, item_id: str, body: ItemCorrection, principal: CurrentPrincipal,
    session: SessionDep, loaded: ModelDep, store: ImageStoreDep, settings: SettingsDep,
) -> dict[str, Any]:
    """Correct an item's food (or menu dish) and/or grams; the model's original estimate is
    kept. A menu dish also enrols the item as that dish's example (unless enrol is false)."""
    return service.correct(session, principal, analysis_id, item_id, food_id=body.food_id,
                           grams=body.grams, menu_dish_id=body.menu_dish_id, enrol=body.enrol,
                           enroller=service.Enroller(loaded, store, settings.max_pixels))


@router.post("/{analysis_id}/items", status_code=201, response_model=AnalysisPublic)
def add_item(
    analysis_id: str, body: ItemAdd, principal: CurrentPrincipal, session: SessionDep
) -> dict[str, Any]:
    """Add an item the model missed: a food, its grams, optionally its box on the photo;
    the totals follow and the history records who added it."""
    return service.add_item(session, principal, analysis_id, food_id=body.food_id,
                            grams=body.grams, box=body.box)


@router.delete("/{analysis_id}/items/{item_id}", response_model=AnalysisPublic)
def remove_item(
    analysis_id: str, item_id: str, principal: CurrentPrincipal, session: SessionDep
) -> dict[str, Any]:
    """Remove an item the model invented: it leaves the analysis, its totals and pairs;
    the correction history keeps what it was, who removed it and when."""
    return service.remove_item(session, principal, analysis_id, item_id)


@router.get("/{analysis_id}/corrections", response_model=list[CorrectionRecord])
def corrections(
    analysis_id: str, principal: CurrentPrincipal, session: SessionDep
) -> list[dict[str, Any]]:
    """Every change users made to the analysis's items (patch, add, remove), oldest first."""
    return service.corrections(session, principal, analysis_id)


@router.get("/{analysis_id}/overlay.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **documented(410)})
async def overlay(
    analysis_id: str, principal: CurrentPrincipal, session: SessionDep, store: ImageStoreDep,
    settings: SettingsDep,
) -> Response:
    """The photo with masks, boxes, labels and grams drawn over it."""
    analysis = await run_in_threadpool(load_analysis, session, principal, analysis_id)
    png = await run_in_threadpool(service.overlay_png, store, analysis, settings.max_pixels)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})
