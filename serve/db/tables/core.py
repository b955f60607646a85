"""Core tables: tenants, API keys, users, stored images, idempotency records, model versions.

The schema changes only through Alembic migrations in serve/db/migrations.
"""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from serve.db.base import Base, enum_check, new_id, utcnow


class Role(enum.StrEnum):
    """What a key may do: admin everything; kiosk one canteen; app its own users."""

    ADMIN = "admin"
    KIOSK = "kiosk"
    APP = "app"


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
        enum_check("role", Role),
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
    # Consent (docs/API.md#consent): diary = a per-person meal record is kept;
    # canteen_statistics = their trays count in canteen reports. History: UserConsent.
    consent_diary: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    consent_canteen_statistics: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true())
    consent_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def consent(self) -> dict[str, Any]:
        """The current consent as clients see it (schemas.users.Consent)."""
        return {"diary": self.consent_diary,
                "canteen_statistics": self.consent_canteen_statistics,
                "updated_at": self.consent_updated_at}


class UserConsent(Base):
    """One consent a user gave or changed: what, when and through which key."""

    __tablename__ = "user_consents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    diary: Mapped[bool] = mapped_column(Boolean)
    canteen_statistics: Mapped[bool] = mapped_column(Boolean)
    # "given" (sent by the client) or "default" (a user created without consent fields)
    source: Mapped[str] = mapped_column(String(16))
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"))
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
