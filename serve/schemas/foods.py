"""Foods of the nutrient database as clients see them (GET /v1/foods, /v1/foods/{food_id})."""
from __future__ import annotations

from pydantic import BaseModel, Field


class NutrientAmount(BaseModel):
    """One nutrient per 100 g of the food, with its unit (nutrition_db.NUTRIENTS)."""

    key: str
    name_en: str
    name_ko: str
    unit: str
    per_100g: float | None = Field(description="null: the source does not give the value")


class FoodPublic(BaseModel):
    """A food: names, source, category, typical serving, density and nutrients per 100 g."""

    food_id: str
    name: str = Field(description="the Korean name when present, else the English one")
    name_ko: str | None
    name_en: str | None
    source: str = Field(description="mfds | kfct | fndds | sr28 | n5k")
    category: str | None
    trust: str = Field(description="analysed | recipe-calculated | company-supplied")
    serving_g: float | None = Field(description="a typical serving in grams, if known")
    density_g_per_ml: float | None
    nutrients: list[NutrientAmount] = Field(description="per 100 g, in NUTRIENTS order")
