"""Canteens (tenants): Create and Public."""
from __future__ import annotations

from pydantic import Field

from serve.schemas.base import Input, Public, UtcDateTime


class CanteenCreate(Input):
    """A new tenant."""

    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field("UTC", min_length=1, max_length=64)


class CanteenPublic(Public):
    """A tenant as clients see it."""

    id: str
    name: str
    timezone: str
    created_at: UtcDateTime
