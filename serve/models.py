"""Core tables: tenants, API keys, users, stored images, analyses and their items, idempotency.

The canteen domain (menus, kiosks, pairs, diary) lives in serve/canteen_models.py on the same
Base. The schema changes only through Alembic migrations in serve/migrations.
"""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from serve.db import Base, new_id, utcnow


class Role(enum.StrEnum):
    """What a key may do: admin everything; kiosk one canteen; app its own users."""

    ADMIN = "admin"
    KIOSK = "kiosk"
    APP = "app"


class Provenance(enum.StrEnum):
    """Where an item's food and grams come from."""

    MODEL = "model_estimate"
    DATABASE = "database_value"
    USER = "user_correction"


class MealState(enum.StrEnum):
    """A tray photographed before or after eating."""

    BEFORE = "before"
    AFTER = "after"


def _enum_check(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    """A CHECK constraint limiting a string column to an enum's values."""
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class Canteen(Base):
    """A tenant: a canteen (or an app's own tenant) that owns keys, users and analyses."""

    __tablename__ = "canteens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """A bearer key, stored as its SHA-256 only (keys are 256-bit random, so no slow hash)."""

    __tablename__ = "api_keys"
    __table_args__ = (
        _enum_check("role", Role),
        CheckConstraint("role = 'admin' OR canteen_id IS NOT NULL", name="tenant_required"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    canteen_id: Mapped[str | None] = mapped_column(
        ForeignKey("canteens.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A person whose meals are logged; owned by a canteen and, for app users, by one app key."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("sex IS NULL OR sex IN ('female', 'male')", name="sex_valid"),
        UniqueConstraint("canteen_id", "external_ref", name="uq_users_canteen_ref"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    canteen_id: Mapped[str] = mapped_column(
        ForeignKey("canteens.id", ondelete="CASCADE"), index=True
    )
    # Set for users created by an app key: other apps of the same tenant cannot see them.
    app_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    external_ref: Mapped[str | None] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    sex: Mapped[str | None] = mapped_column(String(8))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StoredImage(Base):
    """A photo or depth map on local disk, addressed by the SHA-256 of its bytes."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="photo")  # photo | depth
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Analysis(Base):
    """One analysed photo: who sent it, the context, the scale used and the totals."""

    __tablename__ = "analyses"
    __table_args__ = (
        CheckConstraint("meal_state IS NULL OR meal_state IN ('before', 'after')",
                        name="meal_state_valid"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    canteen_id: Mapped[str | None] = mapped_column(
        ForeignKey("canteens.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Menus and kiosks are the canteen domain's tables; kept as plain ids here.
    menu_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kiosk_id: Mapped[str | None] = mapped_column(String(32), index=True)
    meal_state: Mapped[str | None] = mapped_column(String(8))
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)
    depth_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"))
    image_width: Mapped[int] = mapped_column(Integer)
    image_height: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(200))
    scale_source: Mapped[str | None] = mapped_column(String(32))
    px_per_cm: Mapped[float | None] = mapped_column(Float)
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    incomplete_nutrients: Mapped[list[str]] = mapped_column(JSON, default=list)

    items: Mapped[list[AnalysisItem]] = relationship(
        back_populates="analysis",
        order_by="AnalysisItem.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class AnalysisItem(Base):
    """One food on the tray; a user correction overwrites food/grams and keeps the original."""

    __tablename__ = "analysis_items"
    __table_args__ = (
        _enum_check("provenance", Provenance),
        UniqueConstraint("analysis_id", "position", name="uq_analysis_items_position"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200))
    food_id: Mapped[str | None] = mapped_column(String(64), index=True)
    name_ko: Mapped[str | None] = mapped_column(String(300))
    name_en: Mapped[str | None] = mapped_column(String(300))
    confidence: Mapped[float] = mapped_column(Float)
    identified_by: Mapped[str] = mapped_column(String(16), default="model")  # model | menu
    menu_dish_id: Mapped[str | None] = mapped_column(String(32))
    alternatives: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    box: Mapped[list[float]] = mapped_column(JSON)
    polygon: Mapped[list[list[float]]] = mapped_column(JSON, default=list)
    area_px: Mapped[float | None] = mapped_column(Float)
    area_cm2: Mapped[float | None] = mapped_column(Float)
    grams: Mapped[float | None] = mapped_column(Float)
    grams_low: Mapped[float | None] = mapped_column(Float)
    grams_high: Mapped[float | None] = mapped_column(Float)
    grams_source: Mapped[str | None] = mapped_column(String(32))
    nutrients: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provenance: Mapped[str] = mapped_column(String(24), default=Provenance.MODEL.value)
    # The model's estimate, kept when a user corrects the item.
    original: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    corrected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    analysis: Mapped[Analysis] = relationship(back_populates="items")


class IdempotencyRecord(Base):
    """The first answer to a request sent with an Idempotency-Key, per API key."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("api_key_id", "key", name="uq_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """ONNX files an admin loaded; the active one is served, older ones allow rollback."""

    __tablename__ = "model_versions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(200))
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    active: Mapped[bool] = mapped_column(default=False)
