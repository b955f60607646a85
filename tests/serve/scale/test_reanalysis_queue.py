"""The re-analysis after a model change on the Dramatiq queue in the real Redis on
127.0.0.1:6379: an admin's activation in the app (which runs no background thread) enqueues
`reanalyze_photos`; a worker (Dramatiq threads, in this process) loads the activated model
from its file and re-analyses the stored photos in runs of one photo, each run enqueuing
the next through Redis. Own key prefix in Redis, deleted afterwards."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve.main import create_app
from serve.services.model_registry import LoadedModel
from tests.serve.api.test_reanalysis import second_model
from tests.serve.conftest import Service, make_settings
from tests.serve.scale.conftest import REDIS_URL, wait_until

pytest.importorskip("redis")
pytest.importorskip("dramatiq")
pytest.importorskip("onnx", reason="writing the second model file needs the onnx package")


def test_a_worker_reanalyses_after_an_activation_in_bounded_runs(
    namespace: str, loaded_model: LoadedModel, photo_bytes: dict[str, bytes], tmp_path: Path,
) -> None:
    from serve.worker import run_worker

    second = second_model(loaded_model, tmp_path)
    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data", loaded_model,
        model_sync_seconds=0, task_queue="redis", redis_url=f"{REDIS_URL}/0",
        queue_namespace=namespace, webhook_dispatch_seconds=0, image_purge_hours=0,
        reanalysis_interval_minutes=0, reanalysis_max_per_run=1, reanalysis_batch=1)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(settings,),
                              kwargs={"threads": 2, "stop": stop}, daemon=True)
    with TestClient(create_app(settings, model=loaded_model)) as client:
        s = Service(client, settings)
        assert not {t.name for t in threading.enumerate()} & {"traylens-tasks",
                                                              "traylens-reanalysis"}
        kiosk = s.key("kiosk", s.canteen("requeue"))
        ids = [s.ok(client.post("/v1/analyze", files={"image": ("p.jpg", photo_bytes[name])},
                                headers=kiosk), 201)["id"] for name in ("apple", "tray", "mix")]
        worker.start()
        try:
            s.ok(client.post("/v1/model", params={"force": "true"}, headers=s.admin, files={
                "model": ("m.onnx", second.path.read_bytes())}), 201)

            def versions() -> list[str]:
                return [s.ok(client.get(f"/v1/analyses/{i}", headers=kiosk))["model_version"]
                        for i in ids]

            assert wait_until(lambda: versions() == [second.version] * 3, 120), versions()
            progress = s.ok(client.get("/v1/model/reanalysis", headers=s.admin))
            audit = {s.ok(client.get(f"/v1/analyses/{i}", headers=kiosk))[
                "previous_model_version"] for i in ids}
        finally:
            stop.set()
            worker.join(timeout=60)
    assert not worker.is_alive()
    assert (progress["reanalyzed"], progress["remaining"], progress["in_progress"]) == (3, 0, 0)
    assert audit == {loaded_model.version}
