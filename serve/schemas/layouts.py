"""Kiosk tray layouts: compartments on the empty-tray reference photo (Public, proposal)."""
from __future__ import annotations

from pydantic import BaseModel

from serve.schemas.base import UtcDateTime


class CompartmentPublic(BaseModel):
    """One compartment: its slot name and polygon [[x, y], ...] in reference-photo pixels."""

    slot: str
    polygon: list[list[float]]


class ReferencePublic(BaseModel):
    """The stored empty-tray reference photo."""

    sha256: str
    width: int | None
    height: int | None


class LayoutPublic(BaseModel):
    """A kiosk's tray layout."""

    kiosk_id: str
    compartments: list[CompartmentPublic]
    tray_width_cm: float | None
    tray_height_cm: float | None
    reference: ReferencePublic
    reference_url: str
    created_at: UtcDateTime
    updated_at: UtcDateTime


class ProposalPublic(BaseModel):
    """Suggested compartments for a reference photo of (width, height) px; not stored."""

    width: int
    height: int
    compartments: list[CompartmentPublic]
