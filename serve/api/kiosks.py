"""Kiosks: admins and a canteen's kiosk keys register kiosks and set their calibration."""
from __future__ import annotations

from fastapi import APIRouter

from serve.db.tables.kiosks import Kiosk
from serve.deps import CurrentPrincipal, SessionDep
from serve.schemas.kiosks import CalibrationIn, KioskCreate, KioskPublic
from serve.services import kiosks as service

router = APIRouter(prefix="/v1/kiosks", tags=["kiosks"])


@router.post("", status_code=201, response_model=KioskPublic)
def register(body: KioskCreate, principal: CurrentPrincipal, session: SessionDep) -> Kiosk:
    """Register a kiosk (409 when its canteen already has one of that name)."""
    return service.register_kiosk(session, principal, body)


@router.get("", response_model=list[KioskPublic])
def list_kiosks(principal: CurrentPrincipal, session: SessionDep) -> list[Kiosk]:
    """The kiosks of the caller's canteen (admins: all)."""
    return service.list_kiosks(session, principal)


@router.get("/{kiosk_id}", response_model=KioskPublic)
def get(kiosk_id: str, principal: CurrentPrincipal, session: SessionDep) -> Kiosk:
    """One kiosk."""
    return service.load_kiosk(session, principal, kiosk_id)


@router.put("/{kiosk_id}/calibration", response_model=KioskPublic)
def calibrate(kiosk_id: str, body: CalibrationIn, principal: CurrentPrincipal,
              session: SessionDep) -> Kiosk:
    """Replace a kiosk's calibration."""
    return service.calibrate(session, principal, kiosk_id, body)
