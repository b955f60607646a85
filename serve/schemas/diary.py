"""A person's week: seven day reports and the habits they show."""
from __future__ import annotations

from pydantic import BaseModel

from serve.services.diary import DayReport, Habits


class WeekReport(BaseModel):
    """Seven days (Monday first) and the habits they show."""

    week: str
    days: list[DayReport]
    habits: Habits
