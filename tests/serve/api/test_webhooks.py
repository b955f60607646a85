"""Webhooks on SQLite and PostgreSQL against a local receiver (127.0.0.1 only): signatures,
retries with back-off under a fake clock, idempotent delivery ids, no redirects, timeouts,
two workers racing, pair_closed through the transactional outbox, and weekly reports."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from serve.db.session import transaction
from serve.db.tables.analyses import Analysis
from serve.db.tables.core import User
from serve.db.tables.pairs import MealPair
from serve.db.tables.webhooks import Webhook, WebhookDelivery
from serve.main import create_app
from serve.services.diary import FoodCount, Habits
from serve.services.model_registry import LoadedModel
from serve.services.pairing import close_pair, link_analysis
from serve.services.webhooks import claim_due, dispatch_due, enqueue
from serve.services.weekly_reports import due_week, enqueue_weekly_reports, summaries
from tests.serve.conftest import Service, make_settings
from tests.serve.services.test_diary import KIMCHI, RICE, SOUP, record_photo, stored_analysis

SECRET = "whsec_" + "s" * 26
T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)  # the fake clock (before the real one)
WINDOW = dt.timedelta(hours=3)
LUNCH = dt.datetime(2026, 11, 25, 3, 5, tzinfo=dt.UTC)  # Wednesday of ISO week 2026-W48


# --- a local receiver ----------------------------------------------------------------------


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A tiny HTTP server on 127.0.0.1 that answers from a script (default 200) and, like a
    careful receiver, handles each delivery id once."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: list[tuple[str, Any]] = field(default_factory=list)
    handled: list[str] = field(default_factory=list)  # delivery ids, each processed once

    def verify(self, req: Received, secret: str = SECRET) -> dict[str, Any]:
        """Check a request's signature as docs/API.md tells receivers to; its JSON."""
        ts = req.headers["X-TrayLens-Timestamp"]
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + req.body,
                            hashlib.sha256).hexdigest()
        assert hmac.compare_digest(req.headers["X-TrayLens-Signature"], f"sha256={expected}")
        body: dict[str, Any] = json.loads(req.body)
        assert body["delivery_id"] == req.headers["X-TrayLens-Delivery"]
        assert body["event"] == req.headers["X-TrayLens-Event"]
        return body


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.requests.append(Received(self.path, dict(self.headers), body))
            delivery = self.headers.get("X-TrayLens-Delivery", "")
            if delivery not in rec.handled:
                rec.handled.append(delivery)
            kind, arg = rec.script.pop(0) if rec.script else ("status", 200)
            if kind == "sleep":
                time.sleep(arg)
                kind, arg = "status", 200
            if kind == "redirect":
                self.send_response(302)
                self.send_header("Location", arg)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            reply = b"ok " + b"x" * 1000  # longer than the snippet the service keeps
            self.send_response(arg)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the service hung up on a slow answer (the timeout test): expected

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


# --- the app: no background worker, so the tests drive the clock -------------------------


@pytest.fixture(scope="module")
def service(database_url: str, loaded_model: LoadedModel,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = make_settings(database_url, tmp_path_factory.mktemp("data"), loaded_model,
                             webhook_dispatch_seconds=0, model_sync_seconds=0,
                             webhook_timeout_seconds=0.5, webhook_max_attempts=3,
                             webhook_retry_base_seconds=30)
    with TestClient(create_app(settings, model=loaded_model)) as client:
        yield Service(client, settings)


def _factory(service: Service) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = service.client.app.state.session_factory  # type: ignore[attr-defined]
    return factory


@dataclass
class Tenant:
    canteen: str
    kiosk: dict[str, str]
    app: dict[str, str]
    app2: dict[str, str]


@pytest.fixture
def tenant(service: Service) -> Tenant:
    c = service.canteen("hooks")
    return Tenant(c, service.key("kiosk", c), service.key("app", c), service.key("app", c))


def _hook(service: Service, headers: dict[str, str], url: str,
          events: tuple[str, ...] = ("pair_closed", "weekly_report")) -> str:
    body = {"url": url, "events": list(events), "secret": SECRET}
    return str(service.ok(service.client.post("/v1/webhooks", json=body, headers=headers),
                          201)["id"])


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None \
        else moment


def _deliveries(service: Service, hook_id: str) -> list[WebhookDelivery]:
    with _factory(service)() as s:
        return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
                              .order_by(WebhookDelivery.created_at)))


def _enqueue(service: Service, hook_id: str, now: dt.datetime = T0) -> str:
    with transaction(_factory(service)) as s:
        delivery = enqueue(s, s.get_one(Webhook, hook_id), "webhook.test", {"n": 1},
                           dedupe_key=None, now=now)
    assert delivery is not None
    return delivery


@pytest.fixture(autouse=True)
def _no_leftover_deliveries(service: Service) -> Iterator[None]:
    """Each test's webhooks (and so their pending deliveries) go when it ends, so the fake
    clock of one test never sends another's."""
    yield
    with transaction(_factory(service)) as s:
        for hook in s.scalars(select(Webhook)):
            s.delete(hook)


# --- the routes ----------------------------------------------------------------------------


def test_create_read_and_the_secret_stays_secret(service: Service, tenant: Tenant) -> None:
    hook_id = _hook(service, tenant.app, "https://example.org/traylens")
    got = service.ok(service.client.get(f"/v1/webhooks/{hook_id}", headers=tenant.app))
    assert got["url"] == "https://example.org/traylens" and got["canteen_id"] == tenant.canteen
    assert got["events"] == ["pair_closed", "weekly_report"] and got["app_key_id"]
    assert got["secret_fingerprint"] == hashlib.sha256(SECRET.encode()).hexdigest()[:12]
    listed = service.client.get("/v1/webhooks", headers=tenant.kiosk).text
    assert hook_id in listed and SECRET not in listed and SECRET not in json.dumps(got)
    # an app sees its own webhooks only; the canteen's kiosk key sees the canteen's
    assert hook_id not in service.client.get("/v1/webhooks", headers=tenant.app2).text
    assert service.client.get(f"/v1/webhooks/{hook_id}",
                              headers=tenant.app2).status_code == 404
    for bad in ({"url": "ftp://example.org/x"}, {"url": "example.org/x"},
                {"url": "http://user:pw@example.org/x"}, {"url": "http://h/" + "a" * 2000},
                {"secret": "short"}, {"events": []}, {"events": ["nope"]}):
        body = {"url": "http://example.org/x", "events": ["pair_closed"], "secret": SECRET,
                **bad}
        r = service.client.post("/v1/webhooks", json=body, headers=tenant.kiosk)
        assert r.status_code == 422, (bad, r.text)
    assert service.client.delete(f"/v1/webhooks/{hook_id}",
                                 headers=tenant.kiosk).status_code == 204
    assert service.client.get(f"/v1/webhooks/{hook_id}",
                              headers=tenant.app).status_code == 404


def test_the_test_route_sends_one_signed_delivery(service: Service, tenant: Tenant,
                                                  receiver: Receiver) -> None:
    hook_id = _hook(service, tenant.kiosk, receiver.url)
    sent = service.ok(service.client.post(f"/v1/webhooks/{hook_id}/test",
                                          headers=tenant.kiosk), 201)
    assert sent["status"] == "delivered" and sent["attempts"] == 1, sent
    assert sent["last_status_code"] == 200 and sent["event"] == "webhook.test"
    assert sent["last_response"].startswith("ok ") and len(sent["last_response"]) <= 256
    [req] = receiver.requests
    body = receiver.verify(req)
    assert body["delivery_id"] == sent["id"] and body["data"]["webhook_id"] == hook_id
    assert set(body) == {"delivery_id", "event", "created_at", "data"}
    assert req.headers["Content-Type"].startswith("application/json")
    with pytest.raises(AssertionError):  # another secret does not verify
        receiver.verify(req, secret="x" * 32)
    log = service.ok(service.client.get(f"/v1/webhooks/{hook_id}/deliveries",
                                        headers=tenant.kiosk))
    assert [d["id"] for d in log] == [sent["id"]] and log[0]["payload"] == body
    assert service.ok(service.client.get(f"/v1/webhooks/{hook_id}/deliveries",
                                         params={"status": "pending"},
                                         headers=tenant.kiosk)) == []


def test_retry_after_a_500_with_backoff_and_the_same_delivery_id(
        service: Service, tenant: Tenant, receiver: Receiver) -> None:
    hook_id = _hook(service, tenant.kiosk, receiver.url)
    delivery = _enqueue(service, hook_id)
    receiver.script = [("status", 500)]
    factory, settings = _factory(service), service.settings
    assert dispatch_due(factory, settings, now=T0, rng=random.Random(1)) == 1
    [row] = _deliveries(service, hook_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert row.last_error == "HTTP 500"
    retry_at = _utc(row.next_attempt_at)
    assert retry_at is not None
    # 30 s base, +0-25% jitter
    assert T0 + dt.timedelta(seconds=30) <= retry_at <= T0 + dt.timedelta(seconds=37.5)
    assert dispatch_due(factory, settings, now=retry_at - dt.timedelta(seconds=1)) == 0
    assert len(receiver.requests) == 1
    assert dispatch_due(factory, settings, now=retry_at) == 1
    [row] = _deliveries(service, hook_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 200)
    assert _utc(row.delivered_at) == retry_at and row.next_attempt_at is None
    first, second = receiver.requests
    assert first.body == second.body  # the same body, the same id on every try
    assert [receiver.verify(r)["delivery_id"] for r in (first, second)] == [delivery] * 2
    assert first.headers["X-TrayLens-Timestamp"] != second.headers["X-TrayLens-Timestamp"]
    assert receiver.handled == [delivery]  # a deduplicating receiver handles it once
    assert dispatch_due(factory, settings, now=retry_at + dt.timedelta(days=1)) == 0


def test_gives_up_after_max_attempts(service: Service, tenant: Tenant,
                                     receiver: Receiver) -> None:
    hook_id = _hook(service, tenant.kiosk, receiver.url)
    _enqueue(service, hook_id)
    receiver.script = [("status", 503)] * 3
    now = T0
    for _ in range(3):  # webhook_max_attempts=3 in this module
        assert dispatch_due(_factory(service), service.settings, now=now) == 1
        now += dt.timedelta(days=1)  # past any back-off
    [row] = _deliveries(service, hook_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
    assert dispatch_due(_factory(service), service.settings, now=now) == 0
    assert len(receiver.requests) == 3


def test_redirects_are_not_followed(service: Service, tenant: Tenant,
                                    receiver: Receiver) -> None:
    hook_id = _hook(service, tenant.kiosk, receiver.url)
    _enqueue(service, hook_id)
    receiver.script = [("redirect", receiver.url.replace("/hook", "/elsewhere"))]
    assert dispatch_due(_factory(service), service.settings, now=T0) == 1
    [row] = _deliveries(service, hook_id)
    assert (row.status, row.last_status_code, row.last_error) == ("pending", 302, "HTTP 302")
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_a_slow_receiver_times_out(service: Service, tenant: Tenant,
                                   receiver: Receiver) -> None:
    hook_id = _hook(service, tenant.kiosk, receiver.url)
    _enqueue(service, hook_id)
    receiver.script = [("sleep", 1.5)]  # the module's timeout is 0.5 s
    started = time.monotonic()
    assert dispatch_due(_factory(service), service.settings, now=T0) == 1
    assert time.monotonic() - started < 1.4
    [row] = _deliveries(service, hook_id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "timeout")
    assert row.last_status_code is None


def test_two_workers_never_send_one_delivery_twice(service: Service, tenant: Tenant,
                                                   receiver: Receiver) -> None:
    hook_id = _hook(service, tenant.kiosk, receiver.url)
    delivery = _enqueue(service, hook_id)
    factory = _factory(service)
    assert [d for d, _ in claim_due(factory, T0, 10)] == [delivery]
    assert claim_due(factory, T0, 10) == []  # leased: a second worker skips it
    # the lease expires (a worker died mid-send): another worker may take it over
    later = T0 + dt.timedelta(minutes=5)
    start = threading.Barrier(2)
    counts: list[int] = []

    def worker() -> None:
        start.wait()
        counts.append(dispatch_due(factory, service.settings, now=later))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(counts) == [0, 1]
    assert len(receiver.requests) == 1 and receiver.handled == [delivery]
    [row] = _deliveries(service, hook_id)
    assert (row.status, row.attempts) == ("delivered", 1)


# --- events: pair_closed (transactional outbox) and weekly_report -------------------------


def _people(service: Service, tenant: Tenant, fixtures_dir: Path) -> dict[str, str]:
    kiosk = service.ok(service.client.post("/v1/kiosks", json={"name": "line"},
                                           headers=tenant.kiosk), 201)["id"]
    user = service.user(tenant.app, sex="female", birth_year=1990, external_ref="p-1")
    return {"canteen": tenant.canteen, "kiosk": kiosk, "user": user,
            "sha": record_photo(_factory(service), fixtures_dir)}


def _count(service: Service, hook_id: str, event: str) -> int:
    with _factory(service)() as s:
        return int(s.scalar(select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.webhook_id == hook_id, WebhookDelivery.event == event)) or 0)


def test_pair_closed_is_written_with_the_close_exactly_once(
        service: Service, tenant: Tenant, receiver: Receiver, fixtures_dir: Path) -> None:
    ids = _people(service, tenant, fixtures_dir)
    app_hook = _hook(service, tenant.app, receiver.url, ("pair_closed",))
    canteen_hook = _hook(service, tenant.kiosk, receiver.url + "/canteen", ("pair_closed",))
    weekly_only = _hook(service, tenant.kiosk, receiver.url, ("weekly_report",))
    sibling_hook = _hook(service, tenant.app2, receiver.url, ("pair_closed",))
    factory = _factory(service)
    with transaction(factory) as s:
        before = stored_analysis(s, ids["sha"], ids, LUNCH, "before",
                                 [(RICE, 210), (SOUP, 300), (KIMCHI, 50)])
        pair = link_analysis(s, before, pair_id=None, window=WINDOW)
        after = stored_analysis(s, ids["sha"], {**ids, "user": None}, LUNCH
                                + dt.timedelta(minutes=25), "after",
                                [(RICE, 30), (SOUP, 120), (KIMCHI, 50)])
        assert pair is not None
        pair_id, after_id = pair.id, after.id
    assert _count(service, app_hook, "pair_closed") == 0  # opening a pair is no event
    # A request that fails after closing the pair leaves neither the close nor a delivery.
    with pytest.raises(RuntimeError), transaction(factory) as s:
        close_pair(s, s.get_one(MealPair, pair_id), s.get_one(Analysis, after_id))
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 2
        raise RuntimeError("the request failed later")
    assert _count(service, app_hook, "pair_closed") == 0
    with factory() as s:
        assert s.get_one(MealPair, pair_id).after_analysis_id is None
    # Closed for real (twice: the second PUT is an idempotent no-op).
    for _ in range(2):
        service.ok(service.client.put(f"/v1/pairs/{pair_id}/after", headers=tenant.kiosk,
                                      json={"after_analysis_id": after_id}))
    assert _count(service, app_hook, "pair_closed") == 1
    assert _count(service, canteen_hook, "pair_closed") == 1
    assert _count(service, weekly_only, "pair_closed") == 0  # not subscribed
    assert _count(service, sibling_hook, "pair_closed") == 0  # another app's user
    assert dispatch_due(factory, service.settings) == 2
    bodies = sorted((receiver.verify(r) for r in receiver.requests), key=lambda b: b["data"]
                    ["pair_id"] + b["delivery_id"])
    assert len(bodies) == 2 and {b["event"] for b in bodies} == {"pair_closed"}
    data = bodies[0]["data"]
    assert data["pair_id"] == pair_id and data["user_id"] == ids["user"]
    assert data["external_ref"] == "p-1" and data["after_analysis_id"] == after_id
    # hand-checked in tests/serve/services/test_diary.py: 560 g served, 200 g left
    assert (data["served_g"], data["leftover_g"], data["eaten_g"]) == (560.0, 200.0, 360.0)


def test_weekly_report_once_per_person_and_week(service: Service, tenant: Tenant,
                                                receiver: Receiver, fixtures_dir: Path) -> None:
    ids = _people(service, tenant, fixtures_dir)
    other = service.user(tenant.app2)  # another app's person, active the same week
    canteen_hook = _hook(service, tenant.kiosk, receiver.url, ("weekly_report",))
    app_hook = _hook(service, tenant.app, receiver.url, ("weekly_report",))
    sibling_hook = _hook(service, tenant.app2, receiver.url, ("pair_closed",))
    quiet = service.user(tenant.kiosk)
    factory = _factory(service)
    with transaction(factory) as s:
        before = stored_analysis(s, ids["sha"], ids, LUNCH, "before",
                                 [(RICE, 210), (SOUP, 300), (KIMCHI, 50)])
        link_analysis(s, before, pair_id=None, window=WINDOW)
        after = stored_analysis(s, ids["sha"], ids, LUNCH + dt.timedelta(minutes=25), "after",
                                [(RICE, 30), (SOUP, 120), (KIMCHI, 50)])
        link_analysis(s, after, pair_id=None, window=WINDOW)
        stored_analysis(s, ids["sha"], {**ids, "user": other}, LUNCH, None, [(RICE, 200)])
        # A person without diary consent is never reported on, even with a stored meal
        # (withdrawing consent erases meals; this one is set behind the API's back).
        stored_analysis(s, ids["sha"], {**ids, "user": quiet}, LUNCH, None, [(RICE, 150)])
        s.get_one(User, quiet).consent_diary = False
    settings = service.settings  # Monday 08:00 local (UTC here) of the week after
    monday = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    assert enqueue_weekly_reports(factory, settings, now=monday + dt.timedelta(hours=7)) == 0
    made = enqueue_weekly_reports(factory, settings, now=monday + dt.timedelta(hours=9))
    assert made == 3  # canteen hook: both people; the app's hook: its own person
    # run again (a restart, a second worker): nothing more
    assert enqueue_weekly_reports(factory, settings, now=monday + dt.timedelta(hours=10)) == 0
    assert _count(service, canteen_hook, "weekly_report") == 2
    assert _count(service, app_hook, "weekly_report") == 1
    assert _count(service, sibling_hook, "weekly_report") == 0
    assert dispatch_due(factory, settings, now=monday + dt.timedelta(hours=10)) == 3
    bodies = [receiver.verify(r) for r in receiver.requests]
    mine = [b["data"] for b in bodies if b["data"]["user_id"] == ids["user"]]
    assert len(mine) == 2 and mine[0]["week"] == "2026-W48"
    report = mine[0]
    # the diary's own week, as GET /v1/users/{id}/weeks/{week} answers it
    week = service.ok(service.client.get(f"/v1/users/{ids['user']}/weeks/2026-W48",
                                         headers=tenant.app))
    assert report["habits"] == week["habits"] and report["days"] == week["days"]
    assert report["habits"]["days_logged"] == 1 and report["habits"]["trays_paired"] == 1
    assert "1 of 7 days" in report["summary"]["en"] and "36% left" in report["summary"]["en"]
    assert "7일 중 1일" in report["summary"]["ko"] and "36%" in report["summary"]["ko"]
    # erasing a person erases the deliveries about them (their bodies hold the person's data)
    assert service.client.delete(f"/v1/users/{other}", headers=tenant.app2).status_code == 204
    assert _count(service, canteen_hook, "weekly_report") == 1


def test_due_week_follows_the_canteen_time_zone() -> None:
    seoul = ZoneInfo("Asia/Seoul")
    # Monday 2026-11-30 08:30 in Seoul is Sunday 23:30 UTC: W48 is due there, not in UTC
    now = dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.UTC)
    assert due_week(now, seoul, 1, 8) == "2026-W48"
    assert due_week(now, ZoneInfo("UTC"), 1, 8) == "2026-W47"
    assert due_week(now - dt.timedelta(hours=1), seoul, 1, 8) == "2026-W47"
    # Sunday evening sends the week before (the current week has not ended)
    assert due_week(dt.datetime(2026, 11, 29, 21, tzinfo=dt.UTC), ZoneInfo("UTC"), 7, 20) \
        == "2026-W47"
    assert due_week(dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC), ZoneInfo("UTC"), 1, 8) \
        == "2026-W53"


def test_an_unknown_id_is_404_for_every_route(service: Service, tenant: Tenant) -> None:
    missing = uuid.uuid4().hex
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/test"),
                         ("GET", "/deliveries")):
        r = service.client.request(method, f"/v1/webhooks/{missing}{path}",
                                   headers=tenant.kiosk)
        assert r.status_code == 404, (method, path, r.text)


def test_summaries_in_korean_and_english() -> None:
    start = dt.date(2026, 11, 23)
    week = Habits(start, start + dt.timedelta(days=6), 3, 1850.4, 92.5, 2, 2300.0,
                  (FoodCount(RICE, 3, 630.0, 90.0),), 2, 12.4)
    text = summaries("2026-W48", week)
    assert text["en"] == ("Week 2026-W48: meals logged on 3 of 7 days. Average energy 1850 kcal "
                          "a day (92% of your reference). Sodium was over 2300 mg on 2 day(s). "
                          "2 tray(s) photographed before and after: 12% left on average. "
                          "Most eaten: 쌀밥.")
    assert text["ko"] == ("2026-W48 주간: 7일 중 3일 식사를 기록했습니다. 하루 평균 에너지 섭취는 "
                          "1850 kcal(기준의 92%)입니다. 나트륨이 2300 mg을 넘은 날은 2일입니다. "
                          "식전·식후 사진을 찍은 식판 2개에서 평균 12%를 남겼습니다. "
                          "가장 많이 먹은 음식: 쌀밥.")
    empty = Habits(start, start + dt.timedelta(days=6), 0, None, None, 0, None, (), 0, None)
    assert summaries("2026-W48", empty) == {
        "en": "Week 2026-W48: meals logged on 0 of 7 days.",
        "ko": "2026-W48 주간: 7일 중 0일 식사를 기록했습니다."}


def test_the_app_lifespan_runs_the_webhook_thread(
        service: Service, tenant: Tenant, receiver: Receiver, database_url: str,
        loaded_model: LoadedModel, tmp_path: Path) -> None:
    """A second app on the same database, its worker ticking every 0.2 s, sends what the
    first one enqueued, and stops with the app."""
    hook_id = _hook(service, tenant.kiosk, receiver.url)
    delivery = _enqueue(service, hook_id, now=dt.datetime.now(dt.UTC))
    settings = make_settings(database_url, tmp_path, loaded_model, model_sync_seconds=0,
                             webhook_dispatch_seconds=0.2)

    def workers() -> int:
        return sum(t.name == "traylens-webhooks" for t in threading.enumerate())

    before = workers()
    with TestClient(create_app(settings, model=loaded_model)):
        assert workers() == before + 1
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
    assert workers() == before  # stopped with the app
    assert receiver.handled == [delivery]
    [row] = _deliveries(service, hook_id)
    assert (row.status, row.attempts) == ("delivered", 1)
