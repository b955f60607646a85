"""POST /v1/analyze and /v1/analyze/batch: the form's text fields and the batch answer."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from serve.schemas.analyses import AnalysisPublic

# captured_at must lie in [CAPTURED_AT_MIN, now + CAPTURED_AT_AHEAD]: no kiosk photo predates
# 2000, and a day ahead allows any clock skew or time zone mistake a device makes.
CAPTURED_AT_MIN = datetime(2000, 1, 1, tzinfo=UTC)
CAPTURED_AT_AHEAD = timedelta(days=1)


class AnalyzeFields(BaseModel):
    """The text fields of an analyze request."""

    model_config = ConfigDict(extra="forbid")
    menu_id: str | None = None
    kiosk_id: str | None = None
    user_id: str | None = None
    pair_id: str | None = None
    canteen_id: str | None = None
    meal_state: Literal["before", "after"] | None = None
    captured_at: datetime | None = Field(
        None, description="when the photo was taken; without an offset: UTC. "
        "From 2000-01-01T00:00:00Z to now + 1 day")

    @field_validator("captured_at")
    @classmethod
    def _sensible_time(cls, value: datetime | None) -> datetime | None:
        """In UTC and in range; a year-1 or year-9999 time is a client bug (and year 1 in
        +14:00 cannot even be converted to UTC)."""
        if value is None:
            return None
        out_of_range = PydanticCustomError(CAPTURED_AT_RANGE, _RANGE_MESSAGE)
        if not 2000 <= value.year <= 9998:  # checked before converting: no overflow
            raise out_of_range
        at = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if not CAPTURED_AT_MIN <= at <= datetime.now(UTC) + CAPTURED_AT_AHEAD:
            raise out_of_range
        return at


# The error type of a captured_at out of range: a time the document cannot bound (it moves
# with now), answered as 422 invalid_captured_at like a meal's invalid_eaten_at.
CAPTURED_AT_RANGE = "captured_at_range"
_RANGE_MESSAGE = "must lie between 2000-01-01T00:00:00Z and now + 1 day"


class BatchAnalysed(BaseModel):
    """A photo of the batch that was analysed and stored."""

    index: int
    filename: str | None
    analysis: AnalysisPublic


class BatchFailed(BaseModel):
    """A photo of the batch that could not be used, with the error a single upload gets."""

    index: int
    filename: str | None
    status: int
    error: str
    detail: str


class BatchPublic(BaseModel):
    """Every photo's outcome in the order sent, and how many succeeded and failed."""

    results: list[BatchAnalysed | BatchFailed]
    analysed: int
    failed: int
