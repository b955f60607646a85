"""POST /v1/analyze and /v1/analyze/batch: the form's text fields and the batch answer."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from serve.schemas.analyses import AnalysisPublic


class AnalyzeFields(BaseModel):
    """The text fields of an analyze request."""

    model_config = ConfigDict(extra="forbid")
    menu_id: str | None = None
    kiosk_id: str | None = None
    user_id: str | None = None
    pair_id: str | None = None
    canteen_id: str | None = None
    meal_state: Literal["before", "after"] | None = None
    captured_at: datetime | None = None


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
