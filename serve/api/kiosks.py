"""Kiosks: admins and a canteen's kiosk keys register kiosks and set their calibration."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from serve.core.errors import ApiError
from serve.db.access import load_canteen
from serve.db.base import utcnow
from serve.db.tables.core import Role
from serve.db.tables.kiosks import Kiosk
from serve.deps import CurrentPrincipal, SessionDep
from serve.kiosks import load_kiosk, px_per_cm_from_tray

router = APIRouter(prefix="/v1/kiosks", tags=["kiosks"])

PositiveCm = Annotated[float, Field(gt=0, le=1000)]


class CalibrationIn(BaseModel):
    """A kiosk's camera: px/cm directly, or a tray outline (pixels) of known size (cm)."""

    model_config = ConfigDict(extra="forbid")
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


class KioskCreate(BaseModel):
    """A new kiosk; admins name its canteen, kiosk keys register in their own."""

    model_config = ConfigDict(extra="forbid")
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
    calibrated_at: datetime | None
    created_at: datetime


def _apply(row: Kiosk, cal: CalibrationIn) -> None:
    """Write a calibration onto a kiosk (fields not given are cleared: a new calibration
    replaces the old one as a whole, so stale numbers never mix with new ones)."""
    row.px_per_cm = cal.px_per_cm
    if cal.tray_box_px is not None:
        assert cal.tray_width_cm is not None and cal.tray_height_cm is not None
        row.px_per_cm = px_per_cm_from_tray(cal.tray_box_px, cal.tray_width_cm,
                                            cal.tray_height_cm)
    row.tray_width_cm, row.tray_height_cm = cal.tray_width_cm, cal.tray_height_cm
    row.tray_template, row.camera_height_cm = cal.tray_template, cal.camera_height_cm
    row.calibrated_at = utcnow()


@router.post("", status_code=201, response_model=KioskPublic)
def register(body: KioskCreate, principal: CurrentPrincipal, session: SessionDep) -> Kiosk:
    """Register a kiosk (409 when its canteen already has one of that name)."""
    principal.require_role(Role.KIOSK)
    canteen_id = principal.tenant_for_write(body.canteen_id)
    try:
        with session.begin():
            load_canteen(session, principal, canteen_id)
            row = Kiosk(canteen_id=canteen_id, name=body.name)
            if body.calibration is not None:
                _apply(row, body.calibration)
            session.add(row)
            session.flush()
            return row
    except IntegrityError as exc:
        raise ApiError(409, "duplicate_kiosk",
                       f"canteen {canteen_id} already has a kiosk named {body.name!r}") from exc


@router.get("", response_model=list[KioskPublic])
def list_kiosks(principal: CurrentPrincipal, session: SessionDep) -> list[Kiosk]:
    """The kiosks of the caller's canteen (admins: all)."""
    principal.require_role(Role.KIOSK)
    query = select(Kiosk).order_by(Kiosk.created_at, Kiosk.id)
    if not principal.is_admin:
        query = query.where(Kiosk.canteen_id == principal.canteen_id)
    return list(session.scalars(query))


@router.get("/{kiosk_id}", response_model=KioskPublic)
def get(kiosk_id: str, principal: CurrentPrincipal, session: SessionDep) -> Kiosk:
    """One kiosk."""
    return load_kiosk(session, principal, kiosk_id)


@router.put("/{kiosk_id}/calibration", response_model=KioskPublic)
def calibrate(kiosk_id: str, body: CalibrationIn, principal: CurrentPrincipal,
              session: SessionDep) -> Kiosk:
    """Replace a kiosk's calibration."""
    with session.begin():
        row = load_kiosk(session, principal, kiosk_id)
        _apply(row, body)
        session.flush()
        return row
