"""Analyses as rows and as JSON: built from pipeline results, corrected by users.

The JSON shape is produced in one place (analysis_payload) for POST /v1/analyze, GET, PATCH
and the offline CLI, so every client sees the same fields.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from serve.db.base import new_id, utcnow
from serve.db.session import insert_rows
from serve.db.tables.analyses import Analysis, AnalysisItem, Provenance
from serve.nutrients import find_food, item_nutrients, meal_totals, require_food
from serve.pipeline import MENU_SERVING, TYPICAL, ImageResult, ItemResult

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
        identified_by=result.identified_by,
        menu_dish_id=result.menu_dish_id,
        alternatives=[a.to_dict() for a in result.alternatives],
        box=result.box,
        polygon=result.polygon,
        area_px=result.area_px,
        area_cm2=result.area_cm2,
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
    """ISO 8601 (UTC when the database returned a naive value)."""
    if moment is None:
        return None
    return moment.isoformat() if moment.tzinfo else moment.isoformat() + "+00:00"


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
        "identified_by": item.identified_by,
        "menu_dish_id": item.menu_dish_id,
        "alternatives": item.alternatives,
        "box": item.box,
        "polygon": item.polygon,
        "area_px": item.area_px,
        "area_cm2": item.area_cm2,
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
        "model_version": analysis.model_version,
        "image": {"sha256": analysis.image_sha256, "width": analysis.image_width,
                  "height": analysis.image_height},
        "scale": {"source": analysis.scale_source, "px_per_cm": analysis.px_per_cm},
        "items": [item_payload(i) for i in analysis.items],
        "totals": analysis.totals,
        "overlay_url": f"/v1/analyses/{analysis.id}/overlay.png" if analysis.id else None,
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
    analysis: Analysis, item: AnalysisItem, *, food_id: str | None, grams: float | None
) -> None:
    """Apply a user correction (food and/or grams), keep the original, update the totals."""
    if item.original is None:
        item.original = _original(item)
    if food_id is not None:
        food = require_food(food_id)
        item.food_id, item.name_ko, item.name_en = food.food_id, food.name_ko, food.name_en
        item.identified_by = "user"
        item.confidence = 1.0
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
    totals = meal_totals((i.food_id, i.grams) for i in analysis.items).to_dict()
    analysis.totals = totals
    analysis.incomplete_nutrients = totals["incomplete_nutrients"]
