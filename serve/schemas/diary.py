"""A person's week: seven day reports and the habits they show."""
from __future__ import annotations

from pydantic import BaseModel, Field

from serve.services.diary import DayReport, Habits, NutrientStatus


class WeekReport(BaseModel):
    """Seven days (Monday first) and the habits they show."""

    week: str
    days: list[DayReport]
    habits: Habits
    # each referenced nutrient's mean per logged day against the person's reference
    daily_means: list[NutrientStatus] = Field(default_factory=list)
