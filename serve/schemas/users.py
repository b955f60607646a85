"""Users whose meals are logged: Create, Update and Public."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve.schemas.base import Public, UtcDateTime


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
    created_at: UtcDateTime
