"""POST /v1/exports: which corrected analyses go into a training data set."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExportCreate(BaseModel):
    """An export request; the answer is a zip archive (annotations.json + images/)."""

    model_config = ConfigDict(extra="forbid")
    canteen_id: str | None = Field(None, description="admins: one canteen (default all); "
                                                     "kiosk keys: their own only")
    start: datetime | None = Field(None, description="captured at or after (naive = UTC)")
    end: datetime | None = Field(None, description="captured before (naive = UTC)")
    format: Literal["coco"] = "coco"
    corrected_only: bool = Field(True, description="only analyses with a user-corrected item")
