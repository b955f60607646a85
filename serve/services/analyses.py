"""Analyses as rows and as JSON: built from pipeline results, listed, corrected by users,
drawn as an overlay.

The JSON shape is produced in one place (analysis_payload, described by
serve.schemas.analyses.AnalysisPublic) for POST /v1/analyze, GET, PATCH and the offline
CLI, so every client sees the same fields.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from model.infer.images import ImageError, load_image
from model.infer.refine import MODEL_MASKS
from serve.core.auth import Principal
from serve.core.errors import ApiError
from serve.core.overlay import OverlayItem, caption, display_name, render_overlay
from serve.core.storage import ImageStore
from serve.db.access import load_analysis, load_item, load_user
from serve.db.base import new_id, utcnow
from serve.db.session import insert_rows
from serve.db.tables.analyses import (
    Analysis,
    AnalysisItem,
    CorrectionAction,
    ItemCorrection,
    MealSource,
    MealState,
    Provenance,
)
from serve.db.tables.core import Role, User
from serve.db.tables.menus import Enrolment, Menu, MenuDish
from serve.db.tables.pairs import MealPair
from serve.schemas.base import utc_iso
from serve.schemas.menus import EnrolmentPublic
from serve.services.common import unique_write
from serve.services.enrolment import enrol_item
from serve.services.nutrients import find_food, item_nutrients, meal_totals, require_food
from serve.services.pipeline import MENU_SERVING, TYPICAL, ImageResult, ItemResult

if TYPE_CHECKING:
    from serve.services.model_registry import LoadedModel

USER = Provenance.USER.value
MODEL = Provenance.MODEL.value
DATABASE = Provenance.DATABASE.value
# Servings (the menu's or the database's) are stored values, not estimates from the photo.
STORED_SERVINGS = (MENU_SERVING, TYPICAL)


def _grams_provenance(source: str | None) -> str:
    """Which of model estimate / database value / user correction a grams figure is."""
    if source == USER:
        return USER
    return DATABASE if source in STORED_SERVINGS else MODEL


def item_row(result: ItemResult, position: int) -> AnalysisItem:
    """A (not yet added) row for one pipeline item."""
    grams = result.grams
    return AnalysisItem(
        position=position,
        label=result.label,
        food_id=result.food_id,
        name_ko=result.name_ko,
        name_en=result.name_en,
        confidence=result.confidence,
        detection_score=result.detection_score,
        needs_review=result.needs_review,
        identified_by=result.identified_by,
        evidence=result.evidence,
        menu_dish_id=result.menu_dish_id,
        alternatives=[a.to_dict() for a in result.alternatives],
        box=result.box,
        polygon=result.polygon,
        area_px=result.area_px,
        area_cm2=result.area_cm2,
        tray_slot=result.tray_slot,
        fill=result.fill,
        container=result.container,
        embedding=result.embedding,
        grams=grams.value if grams else None,
        grams_low=grams.low if grams else None,
        grams_high=grams.high if grams else None,
        grams_source=grams.source if grams else None,
        nutrients=result.nutrients or {},
        provenance=Provenance.MODEL.value,
    )


def analysis_row(result: ImageResult, **context: Any) -> Analysis:
    """A (not yet added) analysis with its items; context gives ids, image hash, times."""
    return Analysis(
        image_width=result.width,
        image_height=result.height,
        model_version=result.model_version,
        scale_source=result.scale_source,
        px_per_cm=result.px_per_cm,
        totals=result.totals,
        incomplete_nutrients=result.totals["incomplete_nutrients"],
        layout=result.layout,
        masks=result.masks,
        items=[item_row(item, i) for i, item in enumerate(result.items)],
        **context,
    )


def insert_analysis(session: Session, analysis: Analysis) -> None:
    """Store a new (transient) analysis and its items: two INSERTs, no ORM unit of work.

    Ids and the creation time are set here, as the column defaults would set them, so the
    object itself answers the request (analysis_payload) exactly as it was stored. It stays
    transient: load it with session.get to change it in the same transaction.
    """
    analysis.id = new_id()
    analysis.created_at = utcnow()
    for item in analysis.items:
        item.id = new_id()
        item.analysis_id = analysis.id
    insert_rows(session, [analysis])
    insert_rows(session, list(analysis.items))


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with Z, the service's one format (schemas.base.utc_iso)."""
    return utc_iso(moment)


def item_payload(item: AnalysisItem) -> dict[str, Any]:
    """One item as clients see it, with the provenance of each number."""
    grams = None
    if item.grams is not None:
        grams = {"value": item.grams, "low": item.grams_low, "high": item.grams_high,
                 "source": item.grams_source}
    return {
        "id": item.id,
        "position": item.position,
        "label": item.label,
        "food_id": item.food_id,
        "names": {"ko": item.name_ko, "en": item.name_en},
        "confidence": item.confidence,
        "detection_score": item.detection_score,
        "needs_review": bool(item.needs_review),
        "identified_by": item.identified_by,
        "evidence": item.evidence,
        "menu_dish_id": item.menu_dish_id,
        "alternatives": item.alternatives,
        "box": item.box,
        "polygon": item.polygon,
        "area_px": item.area_px,
        "area_cm2": item.area_cm2,
        "tray_slot": item.tray_slot,
        "fill": item.fill,
        "container": item.container,
        "grams": grams,
        "nutrients": item.nutrients or None,
        "provenance": {
            "item": item.provenance,
            "food": USER if item.identified_by == "user" else MODEL,
            "grams": None if item.grams is None else _grams_provenance(item.grams_source),
            "nutrients": DATABASE if item.nutrients else None,
        },
        "original": item.original,
        "corrected_at": _iso(item.corrected_at),
    }


# What an analysis without a food item says (docs/API.md#no-food-found): its zeros are the
# absence of food found, not a meal without nutrients.
NO_FOOD_FOUND = ("No food found on this photo{where}: 0 items, so every total is 0 because "
                 "nothing was found, not because the meal has no nutrients. If the photo "
                 "does show food, add it by hand.")
NO_FOOD_LAYOUT = {"registered": " (every compartment of the kiosk's tray is empty)",
                  "not_found": " (the kiosk's tray was not found on it either)"}
NO_FOOD_MANUAL = ("No food in this meal: every item was removed, so every total is 0 because "
                  "nothing is logged, not because the meal has no nutrients.")
NO_FOOD_BEFORE = " As a before photo it opens no before/after pair: nothing was served."
NO_FOOD_AFTER = " As the after photo of its pair it means everything served was eaten."


def no_food_found(analysis: Analysis) -> bool:
    """The analysis holds no food item (derived from its current items: a coin never is
    one, a user's removals and additions count)."""
    return not analysis.items


def no_food_message(analysis: Analysis, pair_id: str | None) -> str | None:
    """What an analysis without food means, in words; None when it has food."""
    if not no_food_found(analysis):
        return None
    if analysis.source == MealSource.MANUAL.value:
        return NO_FOOD_MANUAL
    text = NO_FOOD_FOUND.format(where=NO_FOOD_LAYOUT.get(analysis.layout or "", ""))
    if analysis.meal_state == MealState.BEFORE.value and pair_id is None:
        text += NO_FOOD_BEFORE
    elif analysis.meal_state == MealState.AFTER.value and pair_id is not None:
        text += NO_FOOD_AFTER
    return text


def analysis_payload(analysis: Analysis, *, pair_id: str | None = None) -> dict[str, Any]:
    """The whole analysis as clients see it (pair_id: its before/after pair, if any)."""
    return {
        "id": analysis.id,
        "created_at": _iso(analysis.created_at),
        "captured_at": _iso(analysis.captured_at),
        "canteen_id": analysis.canteen_id,
        "user_id": analysis.user_id,
        "kiosk_id": analysis.kiosk_id,
        "menu_id": analysis.menu_id,
        "meal_state": analysis.meal_state,
        "pair_id": pair_id,
        "source": analysis.source or MealSource.PHOTO.value,
        "model_version": analysis.model_version,
        "previous_model_version": analysis.previous_model_version,
        "reanalyzed_at": _iso(analysis.reanalyzed_at),
        "image": None if analysis.image_width is None else {
            "sha256": analysis.image_sha256, "width": analysis.image_width,
            "height": analysis.image_height},
        "scale": {"source": analysis.scale_source, "px_per_cm": analysis.px_per_cm},
        "layout": analysis.layout,
        "masks": analysis.masks or MODEL_MASKS,  # null: analysed before the column, the model's
        "items": [item_payload(i) for i in analysis.items],
        "totals": analysis.totals,
        "no_food_found": no_food_found(analysis),
        "message": no_food_message(analysis, pair_id),
        "overlay_url": (f"/v1/analyses/{analysis.id}/overlay.png"
                        if analysis.id and analysis.image_sha256 else None),
    }


def _original(item: AnalysisItem) -> dict[str, Any]:
    """The model's estimate, frozen before the first correction."""
    return {
        "food_id": item.food_id, "label": item.label, "name_ko": item.name_ko,
        "name_en": item.name_en, "confidence": item.confidence,
        "identified_by": item.identified_by, "grams": item.grams, "grams_low": item.grams_low,
        "grams_high": item.grams_high, "grams_source": item.grams_source,
        "nutrients": item.nutrients,
    }


def correct_item(
    analysis: Analysis, item: AnalysisItem, *, food_id: str | None, grams: float | None,
    dish: MenuDish | None = None,
) -> None:
    """Apply a user correction (food, or a menu dish, and/or grams), keep the original,
    update the totals. The user's word is certain: confidence 1, nothing left to review."""
    if item.original is None:
        item.original = _original(item)
    if dish is not None:
        food_id = dish.food_id
    if food_id is not None:
        food = require_food(food_id)
        item.food_id, item.name_ko, item.name_en = food.food_id, food.name_ko, food.name_en
        item.label = (dish.name if dish is not None else None) or food.name
        item.menu_dish_id = dish.id if dish is not None else None
        item.identified_by = item.evidence = "user"
        item.confidence = 1.0
        item.needs_review = False
    if grams is not None:
        item.grams = item.grams_low = item.grams_high = round(float(grams), 1)
        item.grams_source = USER
    elif item.grams is None:
        serving = find_food(item.food_id)
        if serving is not None and serving.serving_g:
            item.grams = item.grams_low = item.grams_high = float(serving.serving_g)
            item.grams_source = TYPICAL
    item.nutrients = item_nutrients(item.food_id, item.grams) or {}
    item.provenance = Provenance.USER.value
    item.corrected_at = utcnow()
    retotal(analysis)


def retotal(analysis: Analysis) -> None:
    """Recompute the stored totals from the analysis's current items."""
    totals = meal_totals((i.food_id, i.grams) for i in analysis.items).to_dict()
    analysis.totals = totals
    analysis.incomplete_nutrients = totals["incomplete_nutrients"]


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


def list_analyses(session: Session, principal: Principal, *, user_id: str | None,
                  since: datetime | None, limit: int) -> list[dict[str, Any]]:
    """Newest first; optionally one user's (whom the caller must be able to see)."""
    query = _scoped(select(Analysis), principal)
    if user_id is not None:
        load_user(session, principal, user_id)
        query = query.where(Analysis.user_id == user_id)
    if since is not None:
        query = query.where(Analysis.captured_at >= since)
    rows = session.scalars(query.order_by(Analysis.captured_at.desc()).limit(limit)).all()
    return [analysis_payload(a, pair_id=pair_id_of(session, a.id)) for a in rows]


def get_analysis(session: Session, principal: Principal, analysis_id: str) -> dict[str, Any]:
    """One analysis with its items and totals."""
    analysis = load_analysis(session, principal, analysis_id)
    return analysis_payload(analysis, pair_id=pair_id_of(session, analysis.id))


@dataclass(frozen=True)
class Enroller:
    """What enrolling a corrected item takes: the active model and the image store."""

    loaded: LoadedModel
    store: ImageStore
    max_pixels: int


def _dish_of_analysis(session: Session, analysis: Analysis, dish_id: str) -> MenuDish:
    """A dish of the menu the analysis was made with; 422 when there is none such."""
    menu = session.get(Menu, analysis.menu_id) if analysis.menu_id else None
    if menu is None or menu.canteen_id != analysis.canteen_id:
        raise ApiError(422, "no_menu", f"analysis {analysis.id} was not made with a menu (or "
                       "its menu was deleted): correct its food_id instead")
    dish = next((d for d in menu.dishes if d.id == dish_id), None)
    if dish is None:
        raise ApiError(422, "unknown_dish", f"menu {menu.id} has no dish {dish_id!r}; its "
                       f"dishes: {[d.id for d in menu.dishes]}")
    return dish


def _enrols(principal: Principal, enrol: bool | None) -> bool:
    """enrol: None enrols when the caller may write menus (kiosk, admin); True insists."""
    if enrol is None:
        return principal.is_admin or principal.role is Role.KIOSK
    if enrol:
        principal.require_role(Role.KIOSK)
    return enrol


def correct(session: Session, principal: Principal, analysis_id: str, item_id: str, *,
            food_id: str | None, grams: float | None, menu_dish_id: str | None = None,
            enrol: bool | None = None, enroller: Enroller | None = None) -> dict[str, Any]:
    """Correct an item in one transaction and answer the whole analysis; a menu dish given
    for the item also enrols it as that dish's example (see _enrols), answered as
    `enrolment` (null when not enrolled; absent without a dish)."""
    with session.begin():
        item = load_item(session, principal, analysis_id, item_id, for_update=True)
        before = item_snapshot(item)
        dish = (_dish_of_analysis(session, item.analysis, menu_dish_id) if menu_dish_id
                else None)
        enrolled: Enrolment | None = None
        if dish is not None and enroller is not None and _enrols(principal, enrol):
            enrolled, _ = enrol_item(session, dish=dish, analysis=item.analysis, item=item,
                                     loaded=enroller.loaded, store=enroller.store,
                                     max_pixels=enroller.max_pixels)
        correct_item(item.analysis, item, food_id=food_id, grams=grams, dish=dish)
        record_change(session, principal, item, CorrectionAction.PATCH, before,
                      item_snapshot(item))
        session.flush()
        payload = analysis_payload(item.analysis, pair_id=pair_id_of(session, analysis_id))
        if dish is not None:  # otherwise the answer is exactly GET's
            payload["enrolment"] = (None if enrolled is None else EnrolmentPublic
                                    .model_validate(enrolled).model_dump(mode="json"))
        return payload


# --- the history of user changes, items added and removed ----------------------------------


def item_snapshot(item: AnalysisItem) -> dict[str, Any]:
    """What a correction changes of an item, as the history keeps it."""
    return {
        "food_id": item.food_id, "label": item.label, "name_ko": item.name_ko,
        "name_en": item.name_en, "menu_dish_id": item.menu_dish_id,
        "identified_by": item.identified_by, "confidence": item.confidence,
        "grams": item.grams, "grams_source": item.grams_source, "box": item.box,
        "provenance": item.provenance, "nutrients": item.nutrients or None,
    }


def record_change(session: Session, principal: Principal, item: AnalysisItem,
                  action: CorrectionAction, before: dict[str, Any] | None,
                  after: dict[str, Any] | None) -> None:
    """One row of the correction history: what the item was and became, who and when."""
    session.add(ItemCorrection(analysis_id=item.analysis_id, item_id=item.id,
                               action=action.value, before=before, after=after,
                               api_key_id=principal.key_id, at=utcnow()))


def _check_box(analysis: Analysis, box: list[float] | None) -> list[float]:
    """A user-drawn box inside the photo ([] without one); 422 otherwise."""
    if box is None:
        return []
    if analysis.image_width is None or analysis.image_height is None:
        raise ApiError(422, "no_photo", f"analysis {analysis.id} has no photo to draw a box "
                       "on: leave box out")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= analysis.image_width and 0 <= y0 < y1 <= analysis.image_height):
        raise ApiError(422, "invalid_box", f"box must be [x0, y0, x1, y1] with x0 < x1, "
                       f"y0 < y1, inside the {analysis.image_width}x{analysis.image_height} "
                       "photo")
    return [round(float(v), 1) for v in box]


def user_item(food_id: str, grams: float, position: int,
              box: list[float] | None = None) -> AnalysisItem:
    """A (not yet added) item a user named: the food, its grams from the user, nutrients
    from nutrition_db; nothing of it is a model estimate (original stays null)."""
    food = require_food(food_id)
    value = round(float(grams), 1)
    box = box or []
    polygon = ([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]
               if box else [])
    return AnalysisItem(
        id=new_id(), position=position, label=food.name, food_id=food.food_id,
        name_ko=food.name_ko, name_en=food.name_en, confidence=1.0, detection_score=None,
        needs_review=False, identified_by="user", evidence="user", menu_dish_id=None,
        alternatives=[], box=box, polygon=polygon, area_px=None, area_cm2=None,
        tray_slot=None, fill=None, embedding=None, grams=value, grams_low=value,
        grams_high=value, grams_source=USER, nutrients=item_nutrients(food.food_id, value) or {},
        provenance=USER, original=None, corrected_at=utcnow(),
    )


def add_item(session: Session, principal: Principal, analysis_id: str, *, food_id: str,
             grams: float, box: list[float] | None) -> dict[str, Any]:
    """Add an item the model missed (or a manual meal lacks); answer the whole analysis."""

    def write(session: Session) -> dict[str, Any]:
        analysis = load_analysis(session, principal, analysis_id, for_update=True)
        last = session.scalar(select(func.max(AnalysisItem.position))
                              .where(AnalysisItem.analysis_id == analysis.id))
        # after every row, removed ones included: (analysis_id, position) is unique
        item = user_item(food_id, grams, 0 if last is None else last + 1,
                         _check_box(analysis, box))
        analysis.items.append(item)
        retotal(analysis)
        session.flush()
        record_change(session, principal, item, CorrectionAction.ADD, None,
                      item_snapshot(item))
        session.flush()
        return analysis_payload(analysis, pair_id=pair_id_of(session, analysis.id))

    return unique_write(session, write, ApiError(
        409, "concurrent_change", "another change to this analysis came first: retry"))


def remove_item(session: Session, principal: Principal, analysis_id: str,
                item_id: str) -> dict[str, Any]:
    """Remove an item the model invented: it leaves the analysis, its totals, the diary and
    pairs; the row stays (removed_at, by whom) and the history keeps what it was."""
    with session.begin():
        item = load_item(session, principal, analysis_id, item_id, for_update=True)
        analysis = item.analysis
        record_change(session, principal, item, CorrectionAction.REMOVE, item_snapshot(item),
                      None)
        item.removed_at = utcnow()
        item.removed_by_key_id = principal.key_id
        session.flush()
        session.expire(analysis, ["items"])  # reload the current items, without this one
        retotal(analysis)
        session.flush()
        return analysis_payload(analysis, pair_id=pair_id_of(session, analysis.id))


def corrections(session: Session, principal: Principal, analysis_id: str
                ) -> list[dict[str, Any]]:
    """Every user change to the analysis's items, oldest first."""
    analysis = load_analysis(session, principal, analysis_id)
    return correction_history(session, [analysis.id])


def correction_history(session: Session, analysis_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Every user change to these analyses' items, oldest first."""
    rows = session.scalars(select(ItemCorrection)
                           .where(ItemCorrection.analysis_id.in_(analysis_ids))
                           .order_by(ItemCorrection.at, ItemCorrection.id))
    return [{"id": r.id, "analysis_id": r.analysis_id, "item_id": r.item_id,
             "action": r.action, "before": r.before, "after": r.after,
             "api_key_id": r.api_key_id, "at": _iso(r.at)} for r in rows]


def overlay_png(store: ImageStore, analysis: Analysis, max_pixels: int) -> bytes:
    """Render the overlay from the stored photo (410 once retention purged it; 404 for a
    meal logged without a photo)."""
    if analysis.image_sha256 is None:
        raise ApiError(404, "no_photo", f"analysis {analysis.id} was logged without a photo")
    data = store.get(analysis.image_sha256)
    if data is None:
        raise ApiError(410, "image_purged", "the photo is no longer stored (retention)")
    try:
        photo = load_image(data, max_pixels=max_pixels)
    except ImageError as exc:  # stored bytes were validated on upload: this is disk damage
        raise ApiError(410, "image_unreadable", f"the stored photo is unreadable: {exc}") from exc
    items = [OverlayItem(i.box, i.polygon,
                         caption(display_name(i.label, i.menu_dish_id, i.name_en), i.label,
                                 i.grams))
             for i in analysis.items if len(i.box) == 4]
    return render_overlay(photo, items)
