"""A person's meals: one logged by hand (food ids and grams, no photo) and the list of their
photo and manual meals."""
from __future__ import annotations

from pydantic import BaseModel, Field

from serve.schemas.analyses import AnalysisPublic
from serve.schemas.base import Input, IsoDateTime


class MealItemCreate(Input):
    """One food of a manual meal and how much of it was eaten."""

    food_id: str = Field(min_length=1, max_length=64, description="see GET /v1/foods")
    grams: float = Field(gt=0, le=5000)


class MealCreate(Input):
    """A meal without a photo. eaten_at is ISO 8601; one without a zone is taken as UTC."""

    eaten_at: IsoDateTime
    items: list[MealItemCreate] = Field(min_length=1, max_length=50)


class MealPage(BaseModel):
    """A page of a person's meals, newest first; next_cursor fetches the following page."""

    meals: list[AnalysisPublic]
    next_cursor: str | None = Field(description="pass as cursor for older meals; null at "
                                    "the end")
