"""Export of one person's data (GET /v1/users/{user_id}/export): the JSON form.

The CSV and FHIR forms are built from the same content (services.export)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from serve.schemas.analyses import AnalysisPublic, CorrectionRecord
from serve.schemas.base import UtcDateTime
from serve.schemas.users import ConsentEvent, UserPublic

ExportFormat = Literal["json", "csv", "fhir"]


class ExportFood(BaseModel):
    """Grams of one food in a meal, with its names from the nutrient database."""

    food_id: str
    name_ko: str | None
    name_en: str | None
    grams: float


class ExportMeal(BaseModel):
    """One meal as the diary counts it: eaten and left foods, eaten nutrients."""

    analysis_id: str = Field(description="the photo, or the before photo of a pair")
    pair_id: str | None
    after_analysis_id: str | None
    captured_at: UtcDateTime
    kind: Literal["photo", "before_after", "before_only", "manual"]  # diary.MealKind
    eaten: list[ExportFood]
    leftovers: list[ExportFood]
    served_g: float
    leftover_g: float
    unidentified_g: float = Field(description="eaten grams of items with no food id")
    no_food_found: bool = Field(False, description="its photo (a pair's before photo) holds "
                                "no food item: nothing counted from it")
    nutrients: dict[str, float | None] = Field(description="eaten, per nutrition_db.NUTRIENTS")
    incomplete_nutrients: list[str]


class UserExport(BaseModel):
    """Everything the service holds about one person."""

    format: Literal["traylens.user-export.v1"] = "traylens.user-export.v1"
    exported_at: UtcDateTime
    user: UserPublic
    consent_history: list[ConsentEvent]
    analyses: list[AnalysisPublic] = Field(description="every photo of theirs with its items: "
                                           "grams, nutrients, provenance, corrections")
    meals: list[ExportMeal]
    corrections: list[CorrectionRecord] = Field(description="every change a user made to "
                                                "their items: before, after, key, time")
