"""Request and response schemas of the core routes (Create / Update / Public per resource)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve.db.tables.core import Role


class Public(BaseModel):
    """Response models read straight from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class CanteenCreate(BaseModel):
    """A new tenant."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field("UTC", min_length=1, max_length=64)


class CanteenPublic(Public):
    """A tenant as clients see it."""

    id: str
    name: str
    timezone: str
    created_at: datetime


class KeyCreate(BaseModel):
    """A new API key: admin keys have no canteen; kiosk and app keys must have one."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Role
    canteen_id: str | None = None


class KeyPublic(Public):
    """A key without its secret."""

    id: str
    name: str
    role: Role
    canteen_id: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    """The answer to creating a key: the only time the plaintext key is shown."""

    key: str


class UserCreate(BaseModel):
    """A person whose meals are logged; admins name the canteen, other keys use their own."""

    model_config = ConfigDict(extra="forbid")
    canteen_id: str | None = None
    external_ref: str | None = Field(None, max_length=200)
    display_name: str | None = Field(None, max_length=200)
    sex: Literal["female", "male"] | None = None
    birth_year: int | None = Field(None, ge=1900, le=2100)


class UserUpdate(BaseModel):
    """Fields a client may change on a user."""

    model_config = ConfigDict(extra="forbid")
    external_ref: str | None = Field(None, max_length=200)
    display_name: str | None = Field(None, max_length=200)
    sex: Literal["female", "male"] | None = None
    birth_year: int | None = Field(None, ge=1900, le=2100)


class UserPublic(Public):
    """A user as clients see it."""

    id: str
    canteen_id: str
    external_ref: str | None
    display_name: str | None
    sex: str | None
    birth_year: int | None
    created_at: datetime
