"""Two service processes (two uvicorn servers on two loopback ports) sharing one PostgreSQL
schema, one image directory and one Prometheus multiprocess directory: an Idempotency-Key
raced through both logs one analysis; a before photo through one and the after photo
through the other close one pair; /metrics through either counts the requests of both.
Bounded: startup within STARTUP_S, processes stopped (then killed) in `finally`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from serve.core.settings import REPO_ROOT
from serve.db.session import make_engine
from serve.db.tables.analyses import Analysis
from serve.db.tables.core import IdempotencyRecord
from tests.serve.conftest import ADMIN_KEY, _postgres_url, model_path_for_tests
from tests.serve.scale.conftest import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
STARTUP_S = 120
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BEFORE_AT, AFTER_AT = "2026-11-23T03:05:00Z", "2026-11-23T03:40:00Z"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this module (skips without a server)."""
    yield from _postgres_url()


def _start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "serve.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def servers(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two servers' base URLs."""
    tmp = tmp_path_factory.mktemp("two-workers")
    (tmp / "prom").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRAYLENS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({
        "TRAYLENS_DATABASE_URL": pg_url, "TRAYLENS_DATA_DIR": str(tmp / "data"),
        "TRAYLENS_MODEL_PATH": str(model_path_for_tests()),
        "TRAYLENS_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "TRAYLENS_INTRA_OP_THREADS": "1",
        "TRAYLENS_WEBHOOK_DISPATCH_SECONDS": "0", "TRAYLENS_IMAGE_PURGE_HOURS": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"),
    })
    ports = [free_port(), free_port()]
    procs = [_start(p, env, tmp / f"server-{p}.log") for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        deadline = time.monotonic() + STARTUP_S
        for url, proc in zip(urls, procs, strict=True):
            while True:
                assert proc.poll() is None, (tmp / f"server-{url[-5:]}.log").read_text()[-3000:]
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{url} not ready in {STARTUP_S} s"
                time.sleep(0.5)
        yield urls
    finally:
        for proc in procs:
            _stop(proc)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _analyze(url: str, headers: dict[str, str], photo: bytes, key: str | None = None,
             **data: str) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key else {}
    return httpx.post(f"{url}/v1/analyze", files={"image": ("t.jpg", photo, "image/jpeg")},
                      data=data, headers=headers | extra, timeout=120)


@pytest.fixture(scope="module")
def tenant(servers: list[str]) -> tuple[dict[str, str], str]:
    """An app key and one of its users, made through the first server."""
    canteen = _ok(httpx.post(f"{servers[0]}/v1/canteens", headers=ADMIN,
                             json={"name": f"two-{uuid.uuid4().hex[:6]}"}), 201)["id"]
    key = _ok(httpx.post(f"{servers[0]}/v1/keys", headers=ADMIN, json={
        "name": "app", "role": "app", "canteen_id": canteen}), 201)["key"]
    app = {"Authorization": f"Bearer {key}"}
    user = _ok(httpx.post(f"{servers[1]}/v1/users", headers=app, json={}), 201)["id"]
    return app, user


def test_one_idempotency_key_raced_through_both_workers_logs_one_meal(
    servers: list[str], tenant: tuple[dict[str, str], str], pg_url: str,
    photo_bytes: dict[str, bytes],
) -> None:
    app, user = tenant
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(
            lambda n: _analyze(servers[n % 2], app, photo_bytes["tray2"], key="two-race",
                               user_id=user), range(10)))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Analysis)
                           .where(Analysis.user_id == user)) == 1
        assert conn.scalar(select(func.count()).select_from(IdempotencyRecord)
                           .where(IdempotencyRecord.key == "two-race")) == 1
    engine.dispose()


def test_before_through_one_worker_and_after_through_the_other_close_one_pair(
    servers: list[str], tenant: tuple[dict[str, str], str], photo_bytes: dict[str, bytes],
) -> None:
    app, _ = tenant
    user = _ok(httpx.post(f"{servers[0]}/v1/users", headers=app, json={}), 201)["id"]
    before = _ok(_analyze(servers[0], app, photo_bytes["tray"], user_id=user,
                          meal_state="before", captured_at=BEFORE_AT), 201)
    after = _ok(_analyze(servers[1], app, photo_bytes["tray3"], user_id=user,
                         meal_state="after", captured_at=AFTER_AT), 201)
    assert after["pair_id"] == before["pair_id"] is not None
    for url in servers:
        pair = _ok(httpx.get(f"{url}/v1/pairs/{before['pair_id']}", headers=app))
        assert (pair["before_analysis_id"], pair["after_analysis_id"]) == (
            before["id"], after["id"])
        assert pair["result"] is not None and pair["result"]["served_g"] > 0
    pairs = _ok(httpx.get(f"{servers[1]}/v1/pairs", headers=app, params={"user_id": user}))
    assert len(pairs if isinstance(pairs, list) else pairs["items"]) == 1


def _ready_count(text: str) -> float:
    """traylens_responses_total of GET /readyz 200 in an exposition."""
    prefix = 'traylens_responses_total{method="GET",route="/readyz",status="200"}'
    lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def test_metrics_through_either_worker_count_the_requests_of_both(servers: list[str]) -> None:
    start = [_ready_count(httpx.get(f"{u}/metrics").text) for u in servers]
    assert start[0] == start[1]  # one sum over both processes, whichever answers
    for _ in range(3):
        assert httpx.get(f"{servers[0]}/readyz").status_code == 200
    for _ in range(2):
        assert httpx.get(f"{servers[1]}/readyz").status_code == 200
    after = [_ready_count(httpx.get(f"{u}/metrics").text) for u in servers]
    assert after == [start[0] + 5, start[0] + 5]
    text = httpx.get(f"{servers[1]}/metrics").text
    assert 'traylens_model_info{' in text and "traylens_request_seconds_bucket" in text
