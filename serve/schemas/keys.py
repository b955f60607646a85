"""API keys: Create, Public and the one answer that shows the plaintext key."""
from __future__ import annotations

from pydantic import Field

from serve.db.tables.core import Role
from serve.schemas.base import Choice, Input, Public, UtcDateTime


class KeyCreate(Input):
    """A new API key: admin keys have no canteen; kiosk and app keys must have one."""

    name: str = Field(min_length=1, max_length=200)
    role: Choice[Role]
    canteen_id: str | None = None


class KeyPublic(Public):
    """A key without its secret."""

    id: str
    name: str
    role: Role
    canteen_id: str | None
    prefix: str
    created_at: UtcDateTime
    revoked_at: UtcDateTime | None


class KeyCreated(KeyPublic):
    """The answer to creating a key: the only time the plaintext key is shown."""

    key: str
