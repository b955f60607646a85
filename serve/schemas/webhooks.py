"""Webhooks and their deliveries: Create and Public (the secret is write-only)."""
from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, computed_field, field_validator

from serve.schemas.base import Input, Public, UtcDateTime
from serve.services.webhooks import fingerprint

Event = Literal["weekly_report", "pair_closed", "analysis_reanalyzed"]
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
# What _http_url accepts, for the document: http(s), a host without credentials, an optional
# port, no whitespace (the validator also takes bracketed IPv6 hosts).
URL_PATTERN = rf"^https?://[^\s/?#@:\[\]]+(:{_PORT})?([/?#]\S*)?$"


class WebhookCreate(Input):
    """A receiver: an http(s) URL, the events it wants, and the secret that signs them."""

    url: str = Field(min_length=1, max_length=2000,
                     json_schema_extra={"format": "uri", "pattern": URL_PATTERN})
    events: list[Event] = Field(min_length=1, max_length=10)
    secret: str = Field(min_length=16, max_length=200,
                        description="HMAC-SHA256 key of X-TrayLens-Signature; never returned")
    canteen_id: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """An absolute http or https URL with a host (no credentials in it)."""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("url must not carry credentials; the signature authenticates")
        if any(c.isspace() for c in value):
            raise ValueError("url must not contain whitespace")
        return value


class WebhookPublic(Public):
    """A webhook as clients see it: its secret only as a fingerprint."""

    id: str
    canteen_id: str
    app_key_id: str | None = Field(description="set for an app key's webhook: it receives "
                                               "that app's users' events only")
    url: str
    events: list[str]
    created_at: UtcDateTime
    secret: str = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def secret_fingerprint(self) -> str:
        """The first 12 hex digits of the secret's SHA-256."""
        return fingerprint(self.secret)


class DeliveryPublic(Public):
    """One delivery: its body and how its tries went."""

    id: str = Field(description="the delivery id (X-TrayLens-Delivery): receivers dedupe on it")
    webhook_id: str
    event: str
    user_id: str | None = Field(description="the person the event is about, if any")
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: UtcDateTime | None
    last_attempt_at: UtcDateTime | None
    last_status_code: int | None
    last_error: str | None
    last_response: str | None = Field(description="the start of the receiver's answer")
    delivered_at: UtcDateTime | None
    created_at: UtcDateTime
    body: str = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def payload(self) -> dict[str, Any]:
        """The JSON body sent on every try."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed
