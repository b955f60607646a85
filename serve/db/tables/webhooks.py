"""Webhooks and their deliveries (the transactional outbox and the delivery log).

A delivery row is written in the same transaction as the event it announces (a closed pair,
a week's report); the dispatcher (serve.services.webhooks) sends it afterwards, retries it,
and keeps its outcome here. Its id is the delivery id receivers deduplicate on.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from serve.db.base import Base, enum_check, new_id, utcnow


class DeliveryStatus(enum.StrEnum):
    """pending: to be sent (again); delivered: a 2xx answer; failed: out of attempts."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Webhook(Base):
    """A receiver URL of one canteen (kiosk or admin keys) or of one app key of it."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    canteen_id: Mapped[str] = mapped_column(
        ForeignKey("canteens.id", ondelete="CASCADE"), index=True
    )
    # Set for an app's webhook: it receives the events of that app's users only. CASCADE, not
    # SET NULL: a webhook losing its app would widen to the whole canteen.
    app_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(200))  # HMAC key: write-only over the API
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook: the exact body sent on every try, and how the tries went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        enum_check("status", DeliveryStatus),
        # One delivery per (webhook, event subject): a pair's close, a person's week.
        UniqueConstraint("webhook_id", "dedupe_key", name="uq_webhook_deliveries_dedupe"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(32))
    # The person the event is about: erasing them erases their deliveries (bodies included).
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # the JSON sent, byte for byte, on every try
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A worker's claim: others skip the row until lease_until passes.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[str | None] = mapped_column(String(32))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_response: Mapped[str | None] = mapped_column(String(256))  # a bounded snippet
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
