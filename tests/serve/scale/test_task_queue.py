"""Background tasks on the Dramatiq queue in the real Redis on 127.0.0.1:6379: a worker (its
Dramatiq threads and scheduler, in this process, bounded) sends a webhook delivery to a
local receiver and purges an orphan photo; the app itself runs no background thread. Each
test uses its own key prefix in Redis and deletes it afterwards."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve.core.storage import LocalImageStore
from serve.db.session import make_engine, make_session_factory, transaction
from serve.db.tables.webhooks import Webhook, WebhookDelivery
from serve.main import create_app
from serve.services.model_registry import LoadedModel
from serve.services.tasks import InProcessRunner, Periodic, TaskEnv
from serve.services.webhooks import enqueue
from tests.serve.conftest import Service, make_settings
from tests.serve.scale.conftest import wait_until

redis = pytest.importorskip("redis")
pytest.importorskip("dramatiq")
REDIS_URL = "redis://127.0.0.1:6379/0"  # the `namespace` fixture (conftest.py) skips without


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    """A webhook receiver on 127.0.0.1: its URL and the delivery ids it got."""
    got: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append(self.headers.get("X-TrayLens-Delivery", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()
        server.server_close()


def _old_orphan(store: LocalImageStore, data: bytes) -> str:
    """A blob no image row names, written two hours ago."""
    sha = store.put(data)
    old = time.time() - 7200
    os.utime(store.path_for(sha), (old, old))
    return sha


def test_a_worker_on_redis_delivers_webhooks_and_purges(
    namespace: str, receiver: tuple[str, list[str]], loaded_model: LoadedModel,
    tmp_path: Path,
) -> None:
    from serve.worker import run_worker

    url, got = receiver
    settings = make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data",
                             loaded_model, model_sync_seconds=0, task_queue="redis",
                             redis_url=REDIS_URL, queue_namespace=namespace,
                             webhook_dispatch_seconds=0.2, image_purge_hours=0.0002)
    with TestClient(create_app(settings, model=loaded_model)) as client:
        s = Service(client, settings)
        # the queue is configured: the service processes run no background thread
        assert not any(t.name == "traylens-tasks" for t in threading.enumerate())
        kiosk = s.key("kiosk", s.canteen("queue"))
        hook = s.ok(client.post("/v1/webhooks", headers=kiosk, json={
            "url": url, "events": ["pair_closed"], "secret": "whsec_" + "q" * 26}), 201)
    factory = make_session_factory(make_engine(settings.database_url))
    with transaction(factory) as session:
        delivery = enqueue(session, session.get_one(Webhook, hook["id"]), "webhook.test",
                           {"n": 1}, dedupe_key=None)
    store = LocalImageStore(settings.image_dir)
    orphan = _old_orphan(store, b"left by a crash")

    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(settings,),
                              kwargs={"threads": 2, "stop": stop}, daemon=True)
    worker.start()
    try:
        assert wait_until(lambda: got == [delivery] and not store.exists(orphan)), (got, orphan)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    with factory() as session:
        row = session.get_one(WebhookDelivery, delivery)
        assert (row.status, row.attempts) == ("delivered", 1)


def test_the_schedule_is_enqueued_once_per_interval_across_schedulers(namespace: str) -> None:
    """Three worker processes' schedulers: one enqueue per task and interval between them."""
    from serve.worker import Queue, Scheduler

    sent: list[str] = []

    class Actor:
        def __init__(self, name: str) -> None:
            self.name = name

        def send(self) -> None:
            sent.append(self.name)

    queue = Queue(broker=None, actors={n: Actor(n) for n in ("deliver_webhooks", "purge_images")})
    plan = [Periodic("deliver_webhooks", 1.0, 1.0), Periodic("purge_images", 3600, 3600)]
    client = redis.Redis.from_url(REDIS_URL)
    schedulers = [Scheduler(queue, client, plan, namespace) for _ in range(3)]
    for sched in schedulers:
        sched.due()
    assert sorted(sent) == ["deliver_webhooks", "purge_images"]
    time.sleep(1.1)
    for sched in schedulers:
        sched.due()
    assert sorted(sent) == ["deliver_webhooks", "deliver_webhooks", "purge_images"]
    client.close()


def test_the_in_process_runner_runs_the_same_tasks(tmp_path: Path) -> None:
    """task_queue = inprocess: the thread runs the purge on its schedule and stops."""
    from serve.core.settings import load_settings
    from serve.db.migrate import upgrade_database

    settings = load_settings(data_dir=tmp_path)
    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    store = LocalImageStore(settings.image_dir)
    orphan = _old_orphan(store, b"orphan of the in-process runner")
    runner = InProcessRunner(TaskEnv(make_session_factory(engine), settings, store),
                             plan=[Periodic("purge_images", 0.1, 0.0)])
    runner.start()
    try:
        assert wait_until(lambda: not store.exists(orphan), 10)
    finally:
        runner.stop()
    engine.dispose()


def test_python_m_serve_worker_runs_and_stops_on_sigterm(namespace: str, tmp_path: Path) -> None:
    """The worker command as deployed: a process that purges on its schedule and finishes
    its work and exits 0 on SIGTERM (bounded: killed after 30 s)."""
    import signal
    import subprocess
    import sys

    from serve.core.settings import REPO_ROOT

    store = LocalImageStore(tmp_path / "data" / "images")
    orphan = _old_orphan(store, b"orphan for the worker process")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYLENS_")}
    env.update({"TRAYLENS_DATA_DIR": str(tmp_path / "data"), "TRAYLENS_TASK_QUEUE": "redis",
                "TRAYLENS_REDIS_URL": REDIS_URL, "TRAYLENS_QUEUE_NAMESPACE": namespace,
                "TRAYLENS_IMAGE_PURGE_HOURS": "0.0002"})
    proc = subprocess.Popen([sys.executable, "-m", "serve", "worker", "--threads", "1"],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: not store.exists(orphan) or proc.poll() is not None, 30)
        assert proc.poll() is None and not store.exists(orphan)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert "worker: 1 thread(s)" in out, out


def test_the_worker_command_refuses_without_the_queue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from serve.cli import main

    monkeypatch.setenv("TRAYLENS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRAYLENS_TASK_QUEUE", raising=False)
    assert main(["worker"]) == 2
    assert "TRAYLENS_TASK_QUEUE" in capsys.readouterr().err
