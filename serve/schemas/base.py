"""What the response models share: the one datetime format, the one error body, the base
of models read from ORM rows.

Every time the service answers is UTC written with a Z ("2026-12-05T10:13:30.598655Z"),
whichever database stored it (SQLite hands back naive UTC values, PostgreSQL aware ones).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema


def utc_iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z; a naive value is taken as UTC (as the database stores it)."""
    if moment is None:
        return None
    at = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return at.replace(tzinfo=None).isoformat() + "Z"


def _utc_iso(moment: datetime) -> str:
    """utc_iso for a value that is there."""
    return utc_iso(moment) or ""


# A datetime field of a response model: answered as utc_iso writes it.
UtcDateTime = Annotated[
    datetime,
    PlainSerializer(_utc_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time",
                    "description": "UTC, ISO 8601 with Z"}, mode="serialization"),
]


class Public(BaseModel):
    """Response models read straight from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class ErrorPublic(BaseModel):
    """Every error the service answers (4xx and 5xx), schema violations (422) included."""

    error: str = Field(description="stable machine-readable code, e.g. not_found, "
                                   "invalid_input, payload_too_large")
    detail: str = Field(description="what was wrong, for a person")
