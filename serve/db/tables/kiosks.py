"""Kiosk table: a tray scanner under a canteen and its camera calibration."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from serve.db.base import Base, new_id, utcnow


class Kiosk(Base):
    """A tray scanner registered under a canteen, with its camera calibration."""

    __tablename__ = "kiosks"
    __table_args__ = (
        CheckConstraint("px_per_cm IS NULL OR px_per_cm > 0", name="px_per_cm_positive"),
        CheckConstraint("camera_height_cm IS NULL OR camera_height_cm > 0",
                        name="camera_height_positive"),
        UniqueConstraint("canteen_id", "name", name="uq_kiosks_canteen_name"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    canteen_id: Mapped[str] = mapped_column(
        ForeignKey("canteens.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    px_per_cm: Mapped[float | None] = mapped_column(Float)
    tray_width_cm: Mapped[float | None] = mapped_column(Float)
    tray_height_cm: Mapped[float | None] = mapped_column(Float)
    tray_template: Mapped[str | None] = mapped_column(String(64))
    camera_height_cm: Mapped[float | None] = mapped_column(Float)
    calibrated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KioskLayout(Base):
    """A kiosk's tray layout: its camera's empty-tray photo and the compartments on it."""

    __tablename__ = "kiosk_layouts"
    __table_args__ = (
        CheckConstraint("tray_width_cm IS NULL OR tray_width_cm > 0", name="tray_width_positive"),
        CheckConstraint("tray_height_cm IS NULL OR tray_height_cm > 0",
                        name="tray_height_positive"),
    )

    kiosk_id: Mapped[str] = mapped_column(
        ForeignKey("kiosks.id", ondelete="CASCADE"), primary_key=True
    )
    reference_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)
    # [{"slot": "rice", "polygon": [[x, y], ...]}, ...] in the reference photo's pixels
    compartments: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    tray_width_cm: Mapped[float | None] = mapped_column(Float)
    tray_height_cm: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
