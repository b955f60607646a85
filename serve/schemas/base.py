"""What the response models share."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Public(BaseModel):
    """Response models read straight from ORM rows."""

    model_config = ConfigDict(from_attributes=True)
