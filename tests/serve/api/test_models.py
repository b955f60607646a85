"""GET /v1/model and the admin's live model swap and rollback under concurrent requests."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve.core.responses import rounded
from serve.main import create_app
from serve.services.model_admin import sync_once
from serve.services.model_registry import LoadedModel, load_model
from tests.serve.conftest import ADMIN_KEY, Service, make_settings, model_variant

pytest.importorskip("onnx", reason="writing a second model file needs the onnx package")


def _renamed(model: LoadedModel, suffix: str, folder: Path) -> Path:
    """The same network under a new version string: a distinct, valid model file."""

    def rename(meta: dict[str, Any]) -> None:
        meta["version"] = f"{meta['version']}{suffix}"

    return model_variant(model, folder / f"model{suffix}.onnx", rename)


@pytest.fixture(scope="module")
def second_model(loaded_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A second model file's bytes (version '<v>+swap-test')."""
    return _renamed(loaded_model, "+swap-test", tmp_path_factory.mktemp("models")).read_bytes()


def test_model_info_comes_from_the_onnx_metadata(
    service: Service, loaded_model: LoadedModel
) -> None:
    kiosk = service.key("kiosk", service.canteen("model"))
    info = service.ok(service.client.get("/v1/model", headers=kiosk))
    meta = loaded_model.model.meta
    assert info["version"] == meta.version and info["sha256"] == loaded_model.sha256
    assert [entry["label"] for entry in info["labels"]] == list(meta.labels)
    assert [entry["food_id"] for entry in info["labels"]] == list(meta.food_ids)
    assert info["metrics"] == rounded(meta.metrics) and info["previous"] == []
    assert info["flip_test"] is meta.flip_test


def test_bad_uploads_leave_the_model_alone(service: Service) -> None:
    before = service.ok(service.client.get("/v1/model", headers=service.admin))
    bad = service.client.post("/v1/model", files={"model": ("x.onnx", b"\x08\x07 junk")},
                              headers=service.admin)
    assert bad.status_code == 422 and bad.json()["error"] == "model_invalid"
    misnamed = service.client.post("/v1/model", files={"other": ("x.onnx", b"x")},
                                   headers=service.admin)
    assert misnamed.status_code == 422 and misnamed.json()["error"] == "invalid_input"
    assert "['other']" in misnamed.json()["detail"]
    missing = service.client.post("/v1/model", files={"model": ("x.onnx", b"")},
                                  headers=service.admin)
    assert missing.status_code == 422 and missing.json()["error"] == "model_required"
    roll = service.client.post("/v1/model/rollback", headers=service.admin)
    assert roll.status_code == 409 and roll.json()["error"] == "no_previous_model"
    assert service.ok(service.client.get("/v1/model", headers=service.admin)) == before


def _hammer(service: Service, headers: dict[str, str], photo: bytes, stop: threading.Event,
            seen: list[Any]) -> None:
    """Analyse photos until told to stop, recording status and model version."""
    while not stop.is_set():
        r = service.client.post("/v1/analyze", files={"image": ("t.jpg", photo, "image/jpeg")},
                                headers=headers)
        seen.append((r.status_code, r.json().get("model_version")))


def test_swap_and_rollback_while_requests_flow(
    service: Service, second_model: bytes, loaded_model: LoadedModel,
    photo_bytes: dict[str, bytes],
) -> None:
    kiosk = service.key("kiosk", service.canteen("swap"))
    old = loaded_model.version
    stop, seen = threading.Event(), []  # type: ignore[var-annotated]
    workers = [threading.Thread(target=_hammer, args=(service, kiosk, photo_bytes["apple"],
                                                      stop, seen)) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        new = service.ok(service.client.post("/v1/model", files={
            "model": ("second.onnx", second_model)}, headers=service.admin), 201)["version"]
        after_swap = service.client.post("/v1/analyze", files={"image": (
            "t.jpg", photo_bytes["apple"], "image/jpeg")}, headers=kiosk).json()
        rolled = service.ok(service.client.post("/v1/model/rollback", headers=service.admin))
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert new == f"{old}+swap-test" and after_swap["model_version"] == new
    assert rolled["version"] == old
    assert seen and all(status == 201 for status, _ in seen), seen
    assert {version for _, version in seen} <= {old, new}
    info = service.ok(service.client.get("/v1/model", headers=kiosk))
    assert info["version"] == old
    metrics = service.client.get("/metrics").text
    assert f'traylens_model_info{{sha256="{loaded_model.sha256[:12]}",version="{old}"}} 1.0' \
        in metrics


def _version(client: TestClient) -> str:
    response = client.get("/v1/model", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def test_every_worker_follows_the_admin_and_restarts_keep_it(
    service: Service, second_model: bytes, loaded_model: LoadedModel, database_url: str
) -> None:
    """Two apps on one database stand for two worker processes."""
    settings = make_settings(database_url, service.settings.data_dir, loaded_model,
                             model_sync_seconds=0)
    old = loaded_model.version
    with TestClient(create_app(settings, model=loaded_model)) as worker2:
        assert _version(worker2) == old
        new = service.ok(service.client.post("/v1/model", files={
            "model": ("second.onnx", second_model)}, headers=service.admin), 201)["version"]
        state = worker2.app.state  # type: ignore[attr-defined]
        assert sync_once(state.session_factory, state.models, state.metrics)
        assert _version(worker2) == new
        assert not sync_once(state.session_factory, state.models, state.metrics)
    with TestClient(create_app(settings, model=loaded_model)) as restarted:
        assert _version(restarted) == new  # the admin's choice survives a restart
        service.ok(service.client.post("/v1/model/rollback", headers=service.admin))
        state = restarted.app.state  # type: ignore[attr-defined]
        assert sync_once(state.session_factory, state.models, state.metrics)
        assert _version(restarted) == old


def test_a_newly_deployed_model_file_takes_over(
    service: Service, loaded_model: LoadedModel, database_url: str, tmp_path: Path
) -> None:
    deployed = load_model(_renamed(loaded_model, "+deployed", tmp_path))
    settings = make_settings(database_url, service.settings.data_dir, deployed,
                             model_sync_seconds=0)
    with TestClient(create_app(settings, model=deployed)) as worker:
        assert _version(worker) == deployed.version
    state = service.client.app.state  # type: ignore[attr-defined]
    sync_once(state.session_factory, state.models, state.metrics)  # the old worker follows
    assert _version(service.client) == deployed.version


def test_the_model_sync_never_undoes_a_swap_being_recorded(
    service: Service, second_model: bytes, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's model sync runs while an upload is between its swap and its record in the
    database: it waits for the record, instead of swapping back to the model still recorded
    (which a rollback would then have undone the wrong way)."""
    from serve.services import model_admin

    state = service.client.app.state  # type: ignore[attr-defined]
    old = _version(service.client)
    record, synced, syncs = model_admin._record, [], []

    def record_while_syncing(*args: Any, **kwargs: Any) -> None:
        sync = threading.Thread(target=lambda: synced.append(
            sync_once(state.session_factory, state.models, state.metrics)))
        sync.start()
        sync.join(timeout=0.5)  # it waits for this record
        syncs.append(sync)
        record(*args, **kwargs)

    monkeypatch.setattr(model_admin, "_record", record_while_syncing)
    new = service.ok(service.client.post("/v1/model", files={
        "model": ("second.onnx", second_model)}, headers=service.admin), 201)["version"]
    for sync in syncs:
        sync.join(timeout=10)
    assert synced == [False] and _version(service.client) == new
    monkeypatch.undo()
    rolled = service.ok(service.client.post("/v1/model/rollback", headers=service.admin))
    assert rolled["version"] == old == _version(service.client)
