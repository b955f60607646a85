"""The database stopping during traffic (issue 18): the service answers clear 503s with
Retry-After (never a 500, never a hang past the connect timeout), /readyz says not ready,
and once PostgreSQL is back, requests succeed again without restarting the service.

PostgreSQL is the test's own (initdb + pg_ctl in a temp dir, `pg_ctl stop -m fast`), never
the machine's shared server."""
from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from serve.core.settings import REPO_ROOT
from tests.serve.faults.live import live_server, own_postgres, tenant

pytestmark = pytest.mark.slow

PHOTO = (REPO_ROOT / "serve" / "samples" / "tray-fries.jpg").read_bytes()
BOUND_S = 12.0  # connect timeout 5 s (serve.db.session) + margin for a busy machine
RETRY_AFTER = "3"


class Traffic:
    """A client thread mixing reads and analyses until stopped: statuses and slowest answer."""

    def __init__(self, url: str, headers: dict[str, str], user: str) -> None:
        self.url, self.headers, self.user = url, headers, user
        self.statuses: Counter[int] = Counter()
        self.answers: list[tuple[float, int]] = []  # (when it came, status)
        self.wrong_retry_after = 0
        self.slowest = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                start = time.monotonic()
                if n % 3 == 0:
                    answer = client.post("/v1/analyze", data={"user_id": self.user},
                                         files={"image": ("t.jpg", PHOTO, "image/jpeg")})
                else:
                    answer = client.get("/v1/analyses", params={"limit": 5})
                self.slowest = max(self.slowest, time.monotonic() - start)
                self.statuses[answer.status_code] += 1
                self.answers.append((time.monotonic(), answer.status_code))
                if answer.status_code == 503 and answer.headers.get("Retry-After") != RETRY_AFTER:
                    self.wrong_retry_after += 1
                time.sleep(0.05)


def timed(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    start = time.monotonic()
    answer = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - start < BOUND_S, f"{method} {path} took too long"
    return answer


def test_database_outage_503_then_recovery(tmp_path: Path) -> None:
    with own_postgres() as pg, live_server(pg.url, tmp_path,
                                           TRAYLENS_DB_RETRY_AFTER_SECONDS=RETRY_AFTER) as server:
        pid = server.process.pid if server.process else None
        _, headers, users = tenant(server.url, 1)
        traffic = Traffic(server.url, headers, users[0])
        traffic.thread.start()
        time.sleep(2)
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            assert timed(client, "GET", "/v1/analyses").status_code == 200

            pg.stop()
            try:
                for method, path, kwargs in [
                    ("GET", "/v1/analyses", {}),
                    ("GET", "/v1/keys/me", {}),
                    ("POST", "/v1/analyze", {"files": {"image": ("t.jpg", PHOTO)}}),
                ]:
                    answer = timed(client, method, path, **kwargs)
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["error"] == "database_unavailable"
                    assert answer.headers["Retry-After"] == RETRY_AFTER
                ready = timed(client, "GET", "/readyz")
                assert ready.status_code == 503
                assert ready.json()["status"] == "not_ready"
                assert timed(client, "GET", "/healthz").status_code == 200  # alive, not ready
                time.sleep(3)  # traffic keeps meeting the outage
            finally:
                pg.start()

            # Back without a restart: the pool's pre-ping replaces the dead connections.
            deadline = time.monotonic() + 30
            while timed(client, "GET", "/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready 30 s after the database returned"
                time.sleep(0.5)
            recovered = time.monotonic()
            assert timed(client, "GET", "/v1/analyses").status_code == 200
            answer = timed(client, "POST", "/v1/analyze", files={"image": ("t.jpg", PHOTO)})
            assert answer.status_code == 201, answer.text
            time.sleep(1)
        traffic.stop.set()
        traffic.thread.join(timeout=60)
        assert server.process is not None and server.process.pid == pid
        assert server.process.poll() is None, "the service died during the outage"
        assert set(traffic.statuses) <= {200, 201, 503}, traffic.statuses
        assert traffic.statuses[503] > 0 and traffic.statuses[200] > 0, traffic.statuses
        assert traffic.slowest < BOUND_S, traffic.slowest
        assert traffic.wrong_retry_after == 0
        assert any(t > recovered and s < 300 for t, s in traffic.answers), \
            "the traffic did not succeed again after the database returned"
        print(f"\nbackground traffic: {dict(traffic.statuses)}, slowest {traffic.slowest:.2f} s")
