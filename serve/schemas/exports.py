"""POST /v1/exports: which corrected analyses go into a training data set."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from serve.schemas.base import Input, IsoDateTime


class ExportCreate(Input):
    """An export request; the answer is a zip archive (annotations.json + images/)."""

    canteen_id: str | None = Field(None, description="admins: one canteen (default all); "
                                                     "kiosk keys: their own only")
    start: IsoDateTime | None = Field(None, description="captured at or after (naive = UTC)")
    end: IsoDateTime | None = Field(None, description="captured before (naive = UTC)")
    format: Literal["coco"] = "coco"
    corrected_only: bool = Field(True, description="only analyses with a user-corrected item")
