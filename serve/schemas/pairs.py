"""Before/after pairs: Create, Close and Public with the eaten/left result."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve.schemas.base import Input, UtcDateTime
from serve.services.leftovers import LeftoverFlag, Measure
from serve.services.matching import MatchMethod


class PairCreate(Input):
    """Pair a before photo with (optionally) its after photo, by analysis id."""

    before_analysis_id: str = Field(min_length=1, max_length=32)
    after_analysis_id: str | None = Field(None, min_length=1, max_length=32)


class PairClose(Input):
    """The after photo that closes an open pair."""

    after_analysis_id: str = Field(min_length=1, max_length=32)


class PairItemPublic(BaseModel):
    """One served dish (or one after region nothing served explains) of a pair.

    Leftover grams = served grams x `leftover_fraction`, the share measured by comparing the
    two photos' regions the same way (`measure`): never an after-photo gram estimate.
    """

    model_config = ConfigDict(from_attributes=True)
    key: str = Field(description="the before item's dish: menu dish id, else food id, "
                                 "else 'label:<label>' (the after item's for unmatched_after)")
    dish_id: str | None = Field(description="the before item's menu dish")
    food_id: str | None = Field(description="the before item's (maybe corrected) food, "
                                            "whatever the after photo called it")
    name_en: str | None
    name_ko: str | None
    before_ref: str | int | None = Field(description="the before analysis's item id")
    after_ref: str | int | None = Field(description="the after analysis's item id")
    after_food_id: str | None = Field(description="the food the after photo named")
    before_g: float | None = Field(description="the before item's grams (null: no estimate)")
    served_g: float = Field(description="before_g (0 without one; 0 for unmatched_after)")
    eaten_g: float
    leftover_g: float
    leftover_fraction: float | None = Field(
        description="share left in [0, 1]; null when not measured (not_measurable, "
                    "unmatched_after)")
    leftover_pct: float | None = Field(description="100 x leftover_fraction, to 0.1")
    method: MatchMethod = Field(description="slot | appearance | position | none")
    match_score: float = Field(description="how sure the pairing is, in [0, 1] "
                                           "(1 - match cost; not a probability)")
    measure: Measure | None = Field(description="fill | area | volume: what was compared")
    flags: list[LeftoverFlag]


class PairResultPublic(BaseModel):
    """Per item and tray totals of served, eaten and left grams, and nutrients eaten
    (unmatched after regions are listed, not counted)."""

    items: list[PairItemPublic]
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
    before_at: UtcDateTime
    after_at: UtcDateTime | None
    result: PairResultPublic | None = None
