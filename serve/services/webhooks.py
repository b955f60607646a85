"""Webhooks: who receives which events, the outbox rows that announce them, and the
dispatcher that sends those rows - signed, retried with back-off, logged, idempotent.

- Events are written as `webhook_deliveries` rows in the transaction that makes them happen
  (a pair closing, a week's report being due): the request never calls HTTP, and a request
  that fails leaves no delivery behind (transactional outbox).
- `dispatch_due` claims due rows with a compare-and-set UPDATE (a lease), so several workers
  never send one delivery at the same time, sends them outside any transaction, and records
  the outcome: 2xx delivered; anything else retried after an exponential back-off with
  jitter, until `webhook_max_attempts`, then failed.
- Every try of a delivery sends the same body and the same `X-TrayLens-Delivery` id, so a
  receiver that deduplicates on it handles each event once.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from sqlalchemy import ColumnElement, CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found
from serve.core.settings import Settings
from serve.db.access import load_canteen
from serve.db.base import new_id, utcnow
from serve.db.session import insert_or_ignore
from serve.db.tables.core import ApiKey, Role, User
from serve.db.tables.pairs import MealPair
from serve.db.tables.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from serve.schemas.base import utc_iso

log = logging.getLogger("traylens.webhooks")

EVENT_WEEKLY_REPORT = "weekly_report"
EVENT_PAIR_CLOSED = "pair_closed"
EVENT_ANALYSIS_REANALYZED = "analysis_reanalyzed"
EVENT_TEST = "webhook.test"
SUBSCRIBABLE = (EVENT_WEEKLY_REPORT, EVENT_PAIR_CLOSED, EVENT_ANALYSIS_REANALYZED)

MAX_WEBHOOKS_PER_CANTEEN = 20
RESPONSE_SNIPPET = 256  # characters of a receiver's answer kept in the log
LEASE = dt.timedelta(minutes=2)  # a claim outlives any one request (timeout <= 60 s)
USER_AGENT = "TrayLens-Webhooks/1"


# --- webhooks: create, read, delete --------------------------------------------------------


def fingerprint(secret: str) -> str:
    """What the API shows of a secret: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def can_see(principal: Principal, hook: Webhook) -> bool:
    """Admins all; an app key its own webhooks; a kiosk key its canteen's."""
    if principal.is_admin:
        return True
    if principal.role is Role.APP:
        return hook.app_key_id == principal.key_id
    return hook.canteen_id == principal.canteen_id


def load_webhook(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    """A webhook the caller may see (404 otherwise, as for an unknown id)."""
    hook = session.get(Webhook, webhook_id)
    if hook is None or not can_see(principal, hook):
        raise not_found("webhook", webhook_id)
    return hook


def create_webhook(session: Session, principal: Principal, *, url: str, events: list[str],
                   secret: str, canteen_id: str | None) -> Webhook:
    """A webhook of the caller's canteen (admins name one); an app key's receives only the
    events of its own users."""
    tenant = principal.tenant_for_write(canteen_id)
    with session.begin():
        load_canteen(session, principal, tenant)
        count = len(session.scalars(select(Webhook.id).where(Webhook.canteen_id == tenant)
                                    .limit(MAX_WEBHOOKS_PER_CANTEEN)).all())
        if count >= MAX_WEBHOOKS_PER_CANTEEN:
            raise ApiError(409, "too_many_webhooks",
                           f"a canteen may have at most {MAX_WEBHOOKS_PER_CANTEEN} webhooks")
        hook = Webhook(canteen_id=tenant, url=url, events=list(dict.fromkeys(events)),
                       secret=secret,
                       app_key_id=principal.key_id if principal.role is Role.APP else None)
        session.add(hook)
        session.flush()
        return hook


def list_webhooks(session: Session, principal: Principal,
                  canteen_id: str | None = None) -> list[Webhook]:
    """The webhooks the caller may see, oldest first."""
    query = select(Webhook).order_by(Webhook.created_at, Webhook.id)
    if principal.role is Role.APP:
        query = query.where(Webhook.app_key_id == principal.key_id)
    elif not principal.is_admin:
        query = query.where(Webhook.canteen_id == principal.canteen_id)
    if canteen_id is not None:
        query = query.where(Webhook.canteen_id == canteen_id)
    return list(session.scalars(query))


def delete_webhook(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    """Remove a webhook and its delivery log; pending deliveries are not sent."""
    with session.begin():
        hook = load_webhook(session, principal, webhook_id)
        session.delete(hook)
        return hook


def list_deliveries(session: Session, principal: Principal, webhook_id: str, *,
                    status: str | None, limit: int) -> list[WebhookDelivery]:
    """A webhook's deliveries, newest first."""
    load_webhook(session, principal, webhook_id)
    query = (select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
             .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit))
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query))


# --- the outbox: delivery rows written with the event --------------------------------------


def envelope(delivery_id: str, event: str, created_at: dt.datetime,
             data: dict[str, Any]) -> str:
    """The body of a delivery: {"delivery_id", "event", "created_at", "data"} as JSON."""
    return json.dumps({"delivery_id": delivery_id, "event": event,
                       "created_at": utc_iso(created_at), "data": data},
                      ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def enqueue(session: Session, hook: Webhook, event: str, data: dict[str, Any], *,
            dedupe_key: str | None, now: dt.datetime | None = None,
            lease_token: str | None = None, user_id: str | None = None) -> str | None:
    """Write one delivery in the caller's transaction; its id, or None when the same
    (webhook, dedupe_key) was enqueued before. With lease_token, the row is born claimed by
    the caller (who sends it at once)."""
    now = now or utcnow()
    delivery_id = new_id()
    values: dict[str, Any] = {
        "id": delivery_id, "webhook_id": hook.id, "event": event, "dedupe_key": dedupe_key,
        "user_id": user_id,
        "body": envelope(delivery_id, event, now, data),
        "status": DeliveryStatus.PENDING.value, "attempts": 0, "next_attempt_at": now,
        "created_at": now,
    }
    if lease_token is not None:
        values.update(lease_token=lease_token, lease_until=now + LEASE)
    return delivery_id if insert_or_ignore(session, WebhookDelivery, values) else None


def _live(hooks: Iterable[tuple[Webhook, dt.datetime | None]], event: str) -> list[Webhook]:
    """Webhooks subscribed to `event` whose app key (if any) is not revoked."""
    return [h for h, revoked in hooks if revoked is None and event in (h.events or [])]


def recipients(session: Session, canteen_id: str | None, user: User | None,
               event: str) -> list[Webhook]:
    """Webhooks that receive `event` about this person: the canteen's own webhooks, and the
    webhook of the app the person belongs to (never another app's)."""
    if canteen_id is None:
        return []
    apps: list[ColumnElement[bool]] = [Webhook.app_key_id.is_(None)]
    if user is not None and user.app_key_id is not None:
        apps.append(Webhook.app_key_id == user.app_key_id)
    rows = session.execute(
        select(Webhook, ApiKey.revoked_at).outerjoin(ApiKey, ApiKey.id == Webhook.app_key_id)
        .where(Webhook.canteen_id == canteen_id, or_(*apps)))
    return _live(((h, r) for h, r in rows), event)


class PairTotals(Protocol):
    """The tray totals of a closed pair, as services.pairing.PairResult has them."""

    @property
    def served_g(self) -> float: ...
    @property
    def eaten_g(self) -> float: ...
    @property
    def leftover_g(self) -> float: ...
    @property
    def leftover_pct(self) -> float | None: ...


def emit_pair_closed(session: Session, pair: MealPair,
                     totals: Callable[[], PairTotals]) -> list[str]:
    """Enqueue `pair_closed` for every subscribed webhook, in the closing transaction; the
    totals are computed only when someone listens. Once per pair and webhook."""
    user = session.get(User, pair.user_id) if pair.user_id else None
    hooks = recipients(session, pair.canteen_id, user, EVENT_PAIR_CLOSED)
    if not hooks:
        return []
    result = totals()
    data = {"pair_id": pair.id, "canteen_id": pair.canteen_id, "kiosk_id": pair.kiosk_id,
            "user_id": pair.user_id, "external_ref": user.external_ref if user else None,
            "before_analysis_id": pair.before_analysis_id,
            "after_analysis_id": pair.after_analysis_id,
            "before_at": utc_iso(pair.before_at), "after_at": utc_iso(pair.after_at),
            "served_g": result.served_g, "eaten_g": result.eaten_g,
            "leftover_g": result.leftover_g, "leftover_pct": result.leftover_pct}
    ids = [enqueue(session, h, EVENT_PAIR_CLOSED, data, dedupe_key=f"pair_closed:{pair.id}",
                   user_id=pair.user_id) for h in hooks]
    return [i for i in ids if i is not None]


# --- the dispatcher ------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 of "{timestamp}.{body}" keyed with the webhook's secret."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def backoff(attempts: int, settings: Settings, rng: random.Random) -> dt.timedelta:
    """Delay before try number attempts + 1: base x 2^(attempts - 1), capped, +0-25% jitter
    (so receivers coming back up are not hit by every worker's retries at once)."""
    delay = min(settings.webhook_retry_max_seconds,
                settings.webhook_retry_base_seconds * 2 ** max(attempts - 1, 0))
    return dt.timedelta(seconds=delay * (1 + 0.25 * rng.random()))


@dataclass(frozen=True)
class Outcome:
    """What one try of a delivery came to."""

    status_code: int | None
    error: str | None
    response: str | None

    @property
    def ok(self) -> bool:
        """A 2xx answer (redirects are not followed: a 3xx is a failed try)."""
        return self.status_code is not None and 200 <= self.status_code < 300


def send(client: httpx.Client, hook: Webhook, delivery: WebhookDelivery,
         now: dt.datetime) -> Outcome:
    """POST the delivery's body, signed; read at most a snippet of the answer."""
    body = delivery.body.encode("utf-8")
    timestamp = str(int(now.timestamp()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-TrayLens-Event": delivery.event,
        "X-TrayLens-Delivery": delivery.id,
        "X-TrayLens-Timestamp": timestamp,
        "X-TrayLens-Signature": signature(hook.secret, timestamp, body),
    }
    try:
        with client.stream("POST", hook.url, content=body, headers=headers) as response:
            snippet = b""
            for chunk in response.iter_bytes():
                snippet += chunk
                if len(snippet) >= RESPONSE_SNIPPET:
                    break
            text = snippet[:RESPONSE_SNIPPET].decode("utf-8", "replace")[:RESPONSE_SNIPPET]
            return Outcome(response.status_code, None, text or None)
    except httpx.TimeoutException:
        return Outcome(None, "timeout", None)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:500], None)
    except Exception as exc:  # a failed try, whatever broke: logged, retried, never fatal
        log.exception("webhook delivery %s: unexpected error", delivery.id)
        return Outcome(None, f"{type(exc).__name__}"[:500], None)


def _client(settings: Settings) -> httpx.Client:
    """One HTTP client per dispatch round: no redirects, the per-request timeout."""
    return httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False,
                        trust_env=False)


def _due(now: dt.datetime) -> Any:
    """Rows that are pending, due, and not claimed by a live lease."""
    return (WebhookDelivery.status == DeliveryStatus.PENDING.value,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now))


def claim_due(factory: sessionmaker[Session], now: dt.datetime, limit: int) -> list[tuple[str,
                                                                                            str]]:
    """Claim up to `limit` due deliveries: (id, lease token) of each row this caller won.

    Each claim is a compare-and-set UPDATE that re-checks the row is still due and unleased,
    so of two workers racing for a row exactly one updates it (PostgreSQL re-evaluates the
    WHERE after the other's commit; SQLite serialises writers).
    """
    with factory() as session, session.begin():
        ids = list(session.scalars(select(WebhookDelivery.id).where(*_due(now))
                                   .order_by(WebhookDelivery.next_attempt_at).limit(limit)))
        won = []
        for delivery_id in ids:
            token = new_id()
            res: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, *_due(now))
                .values(lease_until=now + LEASE, lease_token=token)
                .execution_options(synchronize_session=False))
            if res.rowcount == 1:
                won.append((delivery_id, token))
        return won


def _record(factory: sessionmaker[Session], delivery_id: str, token: str, outcome: Outcome,
            now: dt.datetime, settings: Settings, rng: random.Random) -> None:
    """Store a try's outcome, if the lease is still this caller's."""
    with factory() as session, session.begin():
        row = session.get(WebhookDelivery, delivery_id)
        if row is None or row.lease_token != token:
            return  # the webhook was deleted, or the lease expired and another worker took it
        row.attempts += 1
        row.last_attempt_at = now
        row.last_status_code = outcome.status_code
        row.last_error = outcome.error if not outcome.ok else None
        if outcome.error is None and not outcome.ok:
            row.last_error = f"HTTP {outcome.status_code}"
        row.last_response = outcome.response
        row.lease_until = None
        row.lease_token = None
        if outcome.ok:
            row.status = DeliveryStatus.DELIVERED.value
            row.delivered_at = now
            row.next_attempt_at = None
        elif row.attempts >= settings.webhook_max_attempts:
            row.status = DeliveryStatus.FAILED.value
            row.next_attempt_at = None
        else:
            row.next_attempt_at = now + backoff(row.attempts, settings, rng)


def _attempt(factory: sessionmaker[Session], client: httpx.Client, delivery_id: str,
             token: str, now: dt.datetime, settings: Settings, rng: random.Random) -> None:
    """One try of one claimed delivery: read it, send it (no transaction open), record it."""
    with factory() as session:
        row = session.get(WebhookDelivery, delivery_id)
        hook = session.get(Webhook, row.webhook_id) if row is not None else None
        if row is None or hook is None or row.lease_token != token:
            return
    outcome = send(client, hook, row, now)
    if not outcome.ok:
        log.info("webhook delivery %s to %s: %s", delivery_id, hook.id,
                 outcome.error or f"HTTP {outcome.status_code}")
    _record(factory, delivery_id, token, outcome, now, settings, rng)


def dispatch_due(factory: sessionmaker[Session], settings: Settings, *,
                 now: dt.datetime | None = None, limit: int = 50,
                 client: httpx.Client | None = None,
                 rng: random.Random | None = None) -> int:
    """Send the deliveries due at `now` (the clock is a parameter for tests); how many were
    tried."""
    now = now or utcnow()
    claimed = claim_due(factory, now, limit)
    if not claimed:
        return 0
    rng = rng or random.Random()
    own = client is None
    http = client or _client(settings)
    try:
        for delivery_id, token in claimed:
            _attempt(factory, http, delivery_id, token, now, settings, rng)
    finally:
        if own:
            http.close()
    return len(claimed)


def send_test(factory: sessionmaker[Session], principal: Principal, webhook_id: str,
              settings: Settings, *, now: dt.datetime | None = None) -> WebhookDelivery:
    """Enqueue a `webhook.test` delivery and try it at once (later tries as for any other)."""
    now = now or utcnow()
    token = new_id()
    with factory() as session, session.begin():
        hook = load_webhook(session, principal, webhook_id)
        delivery_id = enqueue(session, hook, EVENT_TEST,
                              {"webhook_id": hook.id, "canteen_id": hook.canteen_id,
                               "message": "TrayLens webhook test"},
                              dedupe_key=None, now=now, lease_token=token)
    assert delivery_id is not None  # no dedupe key: never a duplicate
    with _client(settings) as client:
        _attempt(factory, client, delivery_id, token, now, settings, random.Random())
    with factory() as session:
        return session.get_one(WebhookDelivery, delivery_id)
