"""Users whose meals are logged: Create, Update and Public."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from serve.schemas.base import Input, Public, UtcDateTime


class ConsentUpdate(Input):
    """Consent a client collected from the person; a field left out keeps its value."""

    diary: bool | None = Field(None, description="keep a per-person meal record (diary, "
                               "habits, export); false erases the stored meals")
    canteen_statistics: bool | None = Field(None, description="count their trays in canteen "
                                            "statistics (waste reports)")


class Consent(BaseModel):
    """A user's current consent and when it last changed (null: never sent)."""

    diary: bool
    canteen_statistics: bool
    updated_at: UtcDateTime | None


class UserCreate(Input):
    """A person whose meals are logged; admins name the canteen, other keys use their own."""

    canteen_id: str | None = None
    external_ref: str | None = Field(None, max_length=200)
    display_name: str | None = Field(None, max_length=200)
    sex: Literal["female", "male"] | None = None
    birth_year: int | None = Field(None, ge=1900, le=2100)
    consent: ConsentUpdate | None = Field(None, description="both default to true")


class UserUpdate(Input):
    """Fields a client may change on a user."""

    external_ref: str | None = Field(None, max_length=200)
    display_name: str | None = Field(None, max_length=200)
    sex: Literal["female", "male"] | None = None
    birth_year: int | None = Field(None, ge=1900, le=2100)
    consent: ConsentUpdate | None = None


class UserPublic(Public):
    """A user as clients see it."""

    id: str
    canteen_id: str
    external_ref: str | None
    display_name: str | None
    sex: str | None
    birth_year: int | None
    created_at: UtcDateTime
    consent: Consent


class ConsentEvent(Public):
    """One consent given or changed: what, when, through which key."""

    diary: bool
    canteen_statistics: bool
    source: Literal["given", "default"]
    api_key_id: str | None
    created_at: UtcDateTime


class ConsentRecord(BaseModel):
    """A user's current consent and its history, oldest first."""

    user_id: str
    consent: Consent
    history: list[ConsentEvent]
