"""kill -9 of the worker during uploads and meal writes (issue 18): no acknowledged meal is
lost, no analysis is stored without its items, image files and image rows match (orphan
files only of unacknowledged requests, removed by the orphan purge), and retries under the
same Idempotency-Key after the restart get the first answer, never a second meal.

The real service runs as one uvicorn process (the worker itself) on a free loopback port,
on a SQLite file, and on a PostgreSQL of the test's own (initdb + pg_ctl in a temp dir)."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from serve.core.settings import REPO_ROOT
from serve.core.storage import LocalImageStore, purge_orphans, sha256_hex
from serve.db.session import make_engine, make_session_factory
from serve.db.tables.analyses import Analysis, AnalysisItem
from serve.db.tables.core import IdempotencyRecord, StoredImage
from tests.serve.faults.live import live_server, own_postgres, tenant

pytestmark = pytest.mark.slow

REQUESTS = 40
CLIENTS = 4
KILL_AFTER_ACKS = 14
SAMPLES = [REPO_ROOT / "serve" / "samples" / name for name in
           ("tray-charcuterie.jpg", "tray-fries.jpg", "plate-apple-banana-coin.jpg")]


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    """A SQLite file, or an own PostgreSQL server for this test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'data' / 'traylens.db'}"
        return
    with own_postgres() as pg:
        yield pg.url


def photo(i: int) -> bytes:
    """A real photo made unique by bytes after its end (decoded alike): one file per meal."""
    return SAMPLES[i % len(SAMPLES)].read_bytes() + f"\0traylens-kill9-{i}".encode()


class Diners:
    """CLIENTS threads sending the REQUESTS meals (before/after per diner), recording which
    got 201 Created; they stop sending once the server is killed."""

    def __init__(self, url: str, headers: dict[str, str], users: list[str]) -> None:
        self.url, self.headers, self.users = url, headers, users
        self.todo: queue.Queue[int] = queue.Queue()
        for i in range(REQUESTS):
            self.todo.put(i)
        self.acked: dict[int, dict[str, Any]] = {}
        self.failed: dict[int, str] = {}
        self.killed = threading.Event()
        self.lock = threading.Lock()

    def form(self, i: int) -> dict[str, str]:
        return {"user_id": self.users[i // 2], "meal_state": "before" if i % 2 == 0 else "after"}

    def send(self, client: httpx.Client, i: int) -> httpx.Response:
        return client.post("/v1/analyze", data=self.form(i),
                           files={"image": (f"meal{i}.jpg", photo(i), "image/jpeg")},
                           headers={**self.headers, "Idempotency-Key": f"meal-{i}"})

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.killed.is_set():
                try:
                    i = self.todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    answer = self.send(client, i)
                except httpx.TransportError as exc:
                    with self.lock:
                        self.failed[i] = exc.__class__.__name__
                    continue
                with self.lock:
                    if answer.status_code == 201:
                        self.acked[i] = answer.json()
                    else:
                        self.failed[i] = f"{answer.status_code} {answer.text[:200]}"


def stored(url: str, canteen: str) -> dict[str, tuple[str, int, dict[str, Any] | None]]:
    """Each analysis of the canteen: (image sha256, stored item count, stored first answer)."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            counts: dict[str, int] = dict(session.execute(
                select(AnalysisItem.analysis_id, func.count()).group_by(
                    AnalysisItem.analysis_id)).all())
            answers = {r["id"]: r for r in session.scalars(select(IdempotencyRecord.response))}
            rows = session.execute(select(Analysis.id, Analysis.image_sha256).where(
                Analysis.canteen_id == canteen)).all()
            return {aid: (str(sha), counts.get(aid, 0), answers.get(aid)) for aid, sha in rows}
    finally:
        engine.dispose()


def image_rows(url: str) -> set[str]:
    """The sha256 of every image row whose file is not purged."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return set(session.scalars(select(StoredImage.sha256).where(
                StoredImage.purged_at.is_(None))))
    finally:
        engine.dispose()


def purge(url: str, store: LocalImageStore) -> int:
    """The orphan purge of `python -m serve purge-images`, without its 1-hour grace."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine).begin() as session:
            return purge_orphans(session, store, grace=timedelta(0))
    finally:
        engine.dispose()


def check_whole(analyses: dict[str, tuple[str, int, dict[str, Any] | None]]) -> None:
    """No half record: each analysis has its first answer (same transaction) and exactly the
    items that answer listed."""
    for aid, (sha, items, answer) in analyses.items():
        assert answer is not None, f"analysis {aid} stored without its idempotency record"
        assert items == len(answer["items"]), f"analysis {aid}: {items} of " \
                                              f"{len(answer['items'])} items stored"
        assert answer["image"]["sha256"] == sha


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill9_loses_no_acknowledged_meal(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as url, live_server(url, tmp_path) as server:
        canteen, headers, users = tenant(server.url, REQUESTS // 2)
        diners = Diners(server.url, headers, users)
        threads = [threading.Thread(target=diners.run, daemon=True) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 300
        while len(diners.acked) < KILL_AFTER_ACKS and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(diners.acked) >= KILL_AFTER_ACKS, (diners.failed, server.log_tail())
        server.kill9()  # mid-traffic: CLIENTS requests are in flight (decode, model, write)
        diners.killed.set()
        for t in threads:
            t.join(timeout=90)
        acked = dict(diners.acked)
        unacked = [i for i in range(REQUESTS) if i not in acked]
        assert unacked, "the kill came after every request was answered"

        # --- the state the crash left, read before any restart ---
        analyses = stored(url, canteen)
        by_id = {body["id"]: (i, body) for i, body in acked.items()}
        for aid, (i, body) in by_id.items():
            assert aid in analyses, f"acknowledged meal {i} ({aid}) lost"
            assert analyses[aid][1] == len(body["items"])
        check_whole(analyses)
        store = LocalImageStore(server.data_dir / "images")
        rows, files = image_rows(url), {p.name for p in store.files()}
        assert rows <= files, f"image rows without their file: {rows - files}"
        unacked_photos = {sha256_hex(photo(i)) for i in unacked}
        orphans = files - rows
        assert orphans <= unacked_photos, "a file of an acknowledged meal has no row"
        assert purge(url, store) == len(orphans)
        assert {p.name for p in store.files()} == rows
        partial = list(store.root.glob("??/??/.tmp-*"))  # a write cut by the kill

        # --- restart on the same data; every client retries with its Idempotency-Key ---
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for i in range(REQUESTS):
                answer = diners.send(client, i)
                assert answer.status_code == 201, answer.text
                if i in acked:
                    assert answer.headers.get("Idempotent-Replayed") == "true"
                    assert answer.json() == acked[i], f"retry of meal {i} differs"
        final = stored(url, canteen)
        assert len(final) == REQUESTS, "a retry stored a second meal, or one is missing"
        check_whole(final)
        assert {p.name for p in store.files()} == image_rows(url)
        print(f"\n[{backend}] acknowledged {len(acked)}/{REQUESTS} before kill -9; "
              f"{len(analyses) - len(acked)} committed but unacknowledged; "
              f"{len(orphans)} orphan file(s) purged; {len(partial)} partial .tmp file(s); "
              f"failures: {sorted(set(diners.failed.values()))}")
