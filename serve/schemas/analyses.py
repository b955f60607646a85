"""Stored analyses as clients see them (services.analyses.analysis_payload builds the JSON)
and a user's correction of one item.

Times are the ISO 8601 strings the payload already holds, so the answer of POST, GET and
an idempotent replay stay byte for byte alike.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve.schemas.base import Input
from serve.schemas.menus import EnrolmentPublic


class ItemCorrection(Input):
    """A user's correction of one item: the right food (or menu dish), the right grams, or
    both. A menu dish also enrols the item as the dish's example unless `enrol` is false."""

    # _something's rule, in the document: at least one of the three, not both ids (null = absent)
    model_config = ConfigDict(json_schema_extra={
        "anyOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                  for name in ("food_id", "menu_dish_id", "grams")],
        "not": {"required": ["food_id", "menu_dish_id"], "properties": {
            "food_id": {"not": {"type": "null"}}, "menu_dish_id": {"not": {"type": "null"}}}},
    })
    food_id: str | None = Field(None, min_length=1, max_length=64)
    menu_dish_id: str | None = Field(None, min_length=1, max_length=32,
                                     description="a dish of the analysis's menu")
    grams: float | None = Field(None, ge=0, le=5000)
    enrol: bool | None = Field(None, description="with menu_dish_id: enrol the item as the "
                               "dish's example; default: when the key may write menus")

    @model_validator(mode="after")
    def _something(self) -> ItemCorrection:
        """An empty correction is a client bug; a food and a dish at once are ambiguous."""
        if self.food_id is None and self.grams is None and self.menu_dish_id is None:
            raise ValueError("send food_id or menu_dish_id, and/or grams")
        if self.food_id is not None and self.menu_dish_id is not None:
            raise ValueError("send food_id or menu_dish_id, not both")
        return self


class ItemAdd(Input):
    """An item the model missed: a food, its grams and (optionally) where it is on the photo."""

    food_id: str = Field(min_length=1, max_length=64)
    grams: float = Field(gt=0, le=5000)
    box: list[float] | None = Field(None, min_length=4, max_length=4,
                                    description="[x0, y0, x1, y1] in photo pixels")


class CorrectionRecord(BaseModel):
    """One user change to an item: what it was (null before an add) and became (null after
    a remove), by which API key and when (ISO 8601, UTC)."""

    id: str
    analysis_id: str
    item_id: str
    action: Literal["patch", "add", "remove"]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    api_key_id: str | None
    at: str


class Names(BaseModel):
    """A food's names from the nutrient database."""

    ko: str | None
    en: str | None


class AlternativePublic(BaseModel):
    """A runner-up identity: a model class or (menu mode) another dish of the menu."""

    label: str | None
    food_id: str | None
    score: float
    dish_id: str | None = None


class GramsPublic(BaseModel):
    """An amount, its range and the scale it came from."""

    value: float
    low: float | None
    high: float | None
    source: str | None


class ItemProvenance(BaseModel):
    """Where each number of an item comes from: model, database or user."""

    item: str
    food: str
    grams: str | None
    nutrients: str | None


class ItemPublic(BaseModel):
    """One food on the tray."""

    id: str | None
    position: int
    label: str
    food_id: str | None
    names: Names
    confidence: float = Field(description="probability of the reported label: detection "
                              "score x identity probability (see docs/API.md)")
    detection_score: float | None = Field(description="probability that the region is food")
    needs_review: bool = Field(description="unidentified, or confidence below the threshold")
    identified_by: str
    evidence: str | None = Field(None, description="what named the item: class_scores | "
                                 "embedding | none (unidentified) | user")
    menu_dish_id: str | None
    alternatives: list[AlternativePublic]
    box: list[float]
    polygon: list[list[float]]
    area_px: float | None
    area_cm2: float | None
    tray_slot: str | None = Field(description="layout mode: the compartment the item fills")
    fill: float | None = Field(description="layout mode: food area / compartment area")
    container: str | None = Field(None, description="what the item's box shows: food in a "
                                  "container, an empty container, or null (neither, or not "
                                  "recorded); pairing reads food before and empty after as "
                                  "eaten (container_emptied)")
    grams: GramsPublic | None
    nutrients: dict[str, float | None] | None
    provenance: ItemProvenance
    original: dict[str, Any] | None
    corrected_at: str | None


class ImageRef(BaseModel):
    """The stored photo: its hash and size."""

    sha256: str | None
    width: int
    height: int


class Scale(BaseModel):
    """The physical scale used for grams, if any."""

    source: str | None
    px_per_cm: float | None


class Totals(BaseModel):
    """Grams and nutrients summed over the items with a food and an amount."""

    grams: float
    nutrients: dict[str, float | None]
    incomplete_nutrients: list[str]
    items_counted: int
    items_without_nutrients: int


class AnalysisPublic(BaseModel):
    """One analysed photo: context, items, totals and where to see the overlay."""

    id: str | None
    created_at: str | None
    captured_at: str | None
    canteen_id: str | None
    user_id: str | None
    kiosk_id: str | None
    menu_id: str | None
    meal_state: str | None
    pair_id: str | None
    source: Literal["photo", "manual"] = Field(
        "photo", description="photo: an analysed photo; manual: food ids and grams logged "
        "by hand (answers stored before manual meals existed lack it: photo)")
    model_version: str | None = Field(description="null for a manual meal")
    previous_model_version: str | None = Field(
        None, description="re-analysed after a model change: the version that made the items "
        "before (null: never re-analysed)")
    reanalyzed_at: str | None = Field(None, description="when the items were replaced")
    image: ImageRef | None = Field(description="null for a manual meal")
    scale: Scale
    layout: str | None = Field(description="kiosk tray layout: registered | not_found | null")
    masks: Literal["model", "refined"] = Field(
        "model", description="which masks the items' area_px and polygon come from: the "
        "model's own, or refined to the food inside its container (TRAYLENS_REFINE_MASKS). "
        "A before/after pair compares areas only between photos with the same masks. "
        "Analyses made before the field existed, and manual meals, say model (an idempotent "
        "replay of an answer stored before it lacks it: model)")
    items: list[ItemPublic]
    totals: Totals
    no_food_found: bool = Field(
        False, description="true when the analysis holds no food item: the model found none "
        "(a coin is a scale reference, not food; in layout mode every compartment is empty "
        "and nothing else is on the tray), or a user removed every one. The totals are then "
        "0 because nothing was found, not because the meal has no nutrients. Derived from "
        "the current items on every read (an idempotent replay of an answer stored before the "
        "field existed lacks it)")
    message: str | None = Field(
        None, description="what the answer means, in words, when it needs saying: set when "
        "no_food_found (and then also whether it opened or closed a before/after pair); "
        "null otherwise")
    overlay_url: str | None


class CorrectionPublic(AnalysisPublic):
    """The corrected analysis, and the enrolment example the correction made (if any)."""

    enrolment: EnrolmentPublic | None = None
