"""Kiosks and their camera calibration: Create, the calibration in, Public."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve.schemas.base import Input, UtcDateTime

PositiveCm = Annotated[float, Field(gt=0, le=1000)]


class CalibrationIn(Input):
    """A kiosk's camera: px/cm directly, or a tray outline (pixels) of known size (cm)."""

    px_per_cm: float | None = Field(None, gt=0, le=10_000)
    tray_box_px: list[float] | None = Field(None, min_length=4, max_length=4)
    tray_width_cm: PositiveCm | None = None
    tray_height_cm: PositiveCm | None = None
    tray_template: str | None = Field(None, min_length=1, max_length=64)
    camera_height_cm: PositiveCm | None = None

    @model_validator(mode="after")
    def _one_scale(self) -> CalibrationIn:
        """px_per_cm and a tray outline are two ways to say the same thing: not both."""
        if self.px_per_cm is not None and self.tray_box_px is not None:
            raise ValueError("give px_per_cm or tray_box_px, not both")
        if self.tray_box_px is not None and (self.tray_width_cm is None
                                             or self.tray_height_cm is None):
            raise ValueError("tray_box_px needs tray_width_cm and tray_height_cm")
        return self


class KioskCreate(Input):
    """A new kiosk; admins name its canteen, kiosk keys register in their own."""

    name: str = Field(min_length=1, max_length=200)
    canteen_id: str | None = None
    calibration: CalibrationIn | None = None


class KioskPublic(BaseModel):
    """A kiosk and its calibration as clients see it."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    canteen_id: str
    name: str
    px_per_cm: float | None
    tray_width_cm: float | None
    tray_height_cm: float | None
    tray_template: str | None
    camera_height_cm: float | None
    calibrated_at: UtcDateTime | None
    created_at: UtcDateTime
