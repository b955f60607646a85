"""Menus, their dishes and enrolled examples: Create and Public."""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, computed_field

from nutrition_db.errors import UnknownFoodError
from nutrition_db.table import get_food
from serve.db.tables.menus import Meal
from serve.schemas.base import Choice, Input, IsoDate, UtcDateTime


class DishCreate(Input):
    """A dish: a food from the nutrient database and its standard serving."""

    food_id: str = Field(min_length=1, max_length=64)
    name: str | None = Field(None, min_length=1, max_length=300)
    serving_g: float | None = Field(None, gt=0, le=5000,
                                    description="default: the food's typical serving")
    tray_slot: str | None = Field(None, min_length=1, max_length=32)


class MenuCreate(Input):
    """A menu for one meal of one day; admins name the canteen."""

    canteen_id: str | None = None
    date: IsoDate
    meal: Choice[Meal]
    name: str | None = Field(None, min_length=1, max_length=200)
    dishes: list[DishCreate] = Field(default_factory=list, max_length=50)


class EnrolFromItem(Input):
    """An analysed item to enrol as a dish's example (JSON body of the enrolment route)."""

    analysis_id: str = Field(min_length=1, max_length=32)
    item_id: str = Field(min_length=1, max_length=32)


class EnrolmentPublic(BaseModel):
    """An enrolled example (the embedding itself stays on the server)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    dish_id: str
    image_sha256: str
    mask_sha256: str | None
    region: str
    box: list[float] | None
    area_px: float
    area_from: str
    # Enrolled from a layout-mode item: its fill (food / compartment area), which teaches the
    # dish's standard fill; None for a photo upload.
    fill: float | None = None
    model_version: str
    created_at: UtcDateTime


class DishPublic(BaseModel):
    """A dish as clients see it, with how many examples are enrolled."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    menu_id: str
    position: int
    food_id: str
    name: str | None
    serving_g: float
    tray_slot: str | None
    enrolments: list[EnrolmentPublic]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def names(self) -> dict[str, str | None]:
        """The food's Korean and English names from the nutrient table (pickers show both)."""
        try:
            food = get_food(self.food_id)
        except UnknownFoodError:
            return {"ko": None, "en": None}
        return {"ko": food.name_ko, "en": food.name_en}


class MenuPublic(BaseModel):
    """A menu and its dishes."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    canteen_id: str
    date: dt.date
    meal: str
    name: str | None
    dishes: list[DishPublic]
    created_at: UtcDateTime
