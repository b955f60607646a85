"""Kiosks: registration under a canteen and the camera calibration the analyze pipeline uses."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found, unprocessable
from serve.db.access import load_canteen
from serve.db.base import utcnow
from serve.db.tables.core import Role
from serve.db.tables.kiosks import Kiosk
from serve.schemas.kiosks import CalibrationIn, KioskCreate
from serve.services.common import unique_write


@dataclass(frozen=True)
class Calibration:
    """What a kiosk tells the pipeline about its camera (None = not calibrated)."""

    kiosk_id: str
    canteen_id: str
    px_per_cm: float | None
    tray_width_cm: float | None
    tray_height_cm: float | None
    tray_template: str | None
    camera_height_cm: float | None


def load_kiosk(session: Session, principal: Principal, kiosk_id: str) -> Kiosk:
    """A kiosk of the caller's canteen (admins: any); app keys have no kiosks to see."""
    principal.require_role(Role.KIOSK)
    row = session.get(Kiosk, kiosk_id)
    if row is None or not principal.can_see_canteen(row.canteen_id):
        raise not_found("kiosk", kiosk_id)
    return row


def kiosk_calibration(session: Session, canteen_id: str | None, kiosk_id: str) -> Calibration:
    """The calibration the pipeline applies to a photo from `kiosk_id` sent for `canteen_id`.

    404 when the kiosk is unknown or belongs to another canteen (both look alike).
    """
    row = session.get(Kiosk, kiosk_id)
    if row is None or (canteen_id is not None and row.canteen_id != canteen_id):
        raise not_found("kiosk", kiosk_id)
    return Calibration(row.id, row.canteen_id, row.px_per_cm, row.tray_width_cm,
                       row.tray_height_cm, row.tray_template, row.camera_height_cm)


def px_per_cm_from_tray(tray_box_px: Sequence[float], tray_width_cm: float,
                        tray_height_cm: float) -> float:
    """Scale from the tray's outline in a calibration photo: mean of both axes' px/cm.

    The two axes must agree within 5 %: more means the camera looks at the tray at an angle
    (or the sizes are swapped), and one number would mislead every gram estimate.
    """
    if len(tray_box_px) != 4:
        raise unprocessable("tray_box_px must be [x0, y0, x1, y1]", code="invalid_calibration")
    x0, y0, x1, y1 = (float(v) for v in tray_box_px)
    if x1 <= x0 or y1 <= y0 or min(x0, y0) < 0:
        raise unprocessable(f"tray_box_px {list(tray_box_px)} needs 0 <= x0 < x1 and "
                            "0 <= y0 < y1", code="invalid_calibration")
    if not (tray_width_cm > 0 and tray_height_cm > 0):
        raise unprocessable("tray_width_cm and tray_height_cm must be > 0",
                            code="invalid_calibration")
    sx, sy = (x1 - x0) / tray_width_cm, (y1 - y0) / tray_height_cm
    if abs(sx - sy) > 0.05 * max(sx, sy):
        raise unprocessable(f"the tray box gives {sx:.2f} px/cm across and {sy:.2f} px/cm down: "
                            "they should agree (is the camera square above the tray, are the "
                            "sizes in the right order?)", code="invalid_calibration")
    return round((sx + sy) / 2.0, 4)


def apply_calibration(row: Kiosk, cal: CalibrationIn) -> None:
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


def register_kiosk(session: Session, principal: Principal, body: KioskCreate) -> Kiosk:
    """A new kiosk (409 when its canteen already has one of that name)."""
    principal.require_role(Role.KIOSK)
    canteen_id = principal.tenant_for_write(body.canteen_id)

    def write(session: Session) -> Kiosk:
        """The kiosk row with its calibration, if given."""
        load_canteen(session, principal, canteen_id)
        row = Kiosk(canteen_id=canteen_id, name=body.name)
        if body.calibration is not None:
            apply_calibration(row, body.calibration)
        session.add(row)
        session.flush()
        return row

    return unique_write(session, write, ApiError(
        409, "duplicate_kiosk", f"canteen {canteen_id} already has a kiosk named {body.name!r}"))


def list_kiosks(session: Session, principal: Principal) -> list[Kiosk]:
    """The kiosks of the caller's canteen (admins: all)."""
    principal.require_role(Role.KIOSK)
    query = select(Kiosk).order_by(Kiosk.created_at, Kiosk.id)
    if not principal.is_admin:
        query = query.where(Kiosk.canteen_id == principal.canteen_id)
    return list(session.scalars(query))


def calibrate(session: Session, principal: Principal, kiosk_id: str,
              cal: CalibrationIn) -> Kiosk:
    """Replace a kiosk's calibration."""
    with session.begin():
        row = load_kiosk(session, principal, kiosk_id)
        apply_calibration(row, cal)
        session.flush()
        return row
