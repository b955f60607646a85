"""What the response models share: the one datetime format, the one error body, the base
of models read from ORM rows.

Every time the service answers is UTC written with a Z ("2026-12-05T10:13:30.598655Z"),
whichever database stored it (SQLite hands back naive UTC values, PostgreSQL aware ones).
"""
from __future__ import annotations

from datetime import UTC, date, datetime
from enum import Enum
from typing import Annotated, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    WithJsonSchema,
)


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


class Input(BaseModel):
    """JSON request bodies: an unknown key is refused, and each value must have the JSON type
    the document gives it: a number is a JSON number (not true, not "1.5"), a boolean is true
    or false (not 1, not "yes"), text is a string. Dates, times and enumerations are strings,
    taken as IsoDate, IsoDateTime and Choice say (pydantic's lax mode took true as 1.0 cm)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _iso_text(value: object) -> object:
    """A date or time of a JSON body is ISO 8601 text; lax pydantic would take a number as a
    Unix time (a date value passes: a default, or a model built in Python)."""
    if isinstance(value, str | date):
        return value
    raise ValueError("expected an ISO 8601 string")


# Date and time fields of an Input: parsed from ISO 8601 strings, nothing else.
IsoDate = Annotated[date, Strict(False), BeforeValidator(_iso_text)]
IsoDateTime = Annotated[datetime, Strict(False), BeforeValidator(_iso_text)]
E = TypeVar("E", bound=Enum)
# An enumeration field of an Input: one of its values, given as JSON text.
Choice = Annotated[E, Strict(False)]


class Public(BaseModel):
    """Response models read straight from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class ErrorPublic(BaseModel):
    """Every error the service answers (4xx and 5xx), schema violations (422) included."""

    error: str = Field(description="stable machine-readable code, e.g. not_found, "
                                   "invalid_input, payload_too_large")
    detail: str = Field(description="what was wrong, for a person")
