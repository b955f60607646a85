"""Health, readiness, metrics, settings validation, admin bootstrap, retention, torch-free."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from serve.core.settings import SettingsError, load_settings
from serve.core.storage import ImageStore, purge_expired
from serve.db.tables.core import StoredImage
from serve.main import create_app
from serve.services.model_registry import LoadedModel
from tests.serve.conftest import ADMIN_KEY, REPO_ROOT, Service, make_settings


def test_health_readiness_and_metrics(service: Service, photo_bytes: dict[str, bytes]) -> None:
    c = service.client
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["database"] == "ok"
    assert ready["checks"]["model"].startswith("ok: ")
    kiosk = service.key("kiosk", service.canteen("ops"))
    assert c.post("/v1/analyze", files={"image": ("t.jpg", photo_bytes["apple"])},
                  headers=kiosk).status_code == 201
    assert c.get("/v1/analyses/none", headers=kiosk).status_code == 404
    text = c.get("/metrics").text
    assert 'traylens_request_seconds_count{method="POST",route="/v1/analyze"}' in text
    assert 'traylens_responses_total{method="POST",route="/v1/analyze",status="201"}' in text
    assert ('traylens_responses_total{method="GET",route="/v1/analyses/{analysis_id}",'
            'status="404"}') in text
    assert 'traylens_inference_seconds_count{batch_size="1"}' in text


def test_settings_fail_fast_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, words in [
        ("TRAYLENS_MAX_UPLOAD_MB", "-1", "TRAYLENS_MAX_UPLOAD_MB"),
        ("TRAYLENS_MAX_UPLOAD_MB", "ten", "TRAYLENS_MAX_UPLOAD_MB"),
        ("TRAYLENS_DATABASE_URL", "mysql://x/y", "sqlite or postgresql"),
        ("TRAYLENS_BOOTSTRAP_ADMIN_KEY", "short", "at least 24"),
        ("TRAYLENS_IMAGE_RETENTION_DAYS", "-5", "TRAYLENS_IMAGE_RETENTION_DAYS"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(SettingsError, match=words):
                load_settings()


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TRAYLENS_DATABASE_URL", "TRAYLENS_DATA_DIR", "TRAYLENS_MODEL_PATH",
                 "TRAYLENS_MAX_UPLOAD_MB"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'data' / 'traylens.db'}"
    assert settings.model_path == REPO_ROOT / "model" / "artifacts" / "traylens.onnx"
    assert settings.max_upload_bytes == 10 * 1024 * 1024


def test_a_missing_model_stops_startup(tmp_path: Path, loaded_model: LoadedModel) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/x.db",
                             model_path=tmp_path / "absent.onnx")
    with pytest.raises(RuntimeError, match="cannot start: model file not found"), \
            TestClient(create_app(settings)):
        pass


def test_bootstrap_key_only_on_a_fresh_install(tmp_path: Path, loaded_model: LoadedModel) -> None:
    url = f"sqlite:///{tmp_path / 'boot.db'}"
    with TestClient(create_app(make_settings(url, tmp_path, loaded_model),
                               model=loaded_model)) as c:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert c.get("/v1/keys", headers=admin).status_code == 200
    other = "tl_another_bootstrap_key_" + "z" * 10
    second = load_settings(database_url=url, data_dir=tmp_path, model_path=loaded_model.path,
                           bootstrap_admin_key=other)
    with TestClient(create_app(second, model=loaded_model)) as c:
        assert c.get("/v1/keys", headers={"Authorization": f"Bearer {other}"}).status_code == 401


def test_retention_purges_old_photos(service: Service, photo_bytes: dict[str, bytes]) -> None:
    kiosk = service.key("kiosk", service.canteen("retention"))
    body = service.ok(service.client.post("/v1/analyze", files={
        "image": ("m.jpg", photo_bytes["mix"])}, headers=kiosk), 201)
    store = ImageStore(service.settings.image_dir)
    sha = body["image"]["sha256"]
    assert store.get(sha) == photo_bytes["mix"]
    factory = service.client.app.state.session_factory  # type: ignore[attr-defined]
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=service.settings.image_retention_days + 1)
    with factory() as session, session.begin():
        session.execute(update(StoredImage).where(StoredImage.sha256 == sha)
                        .values(created_at=old))
        purged = purge_expired(session, store, service.settings.image_retention_days)
    assert purged >= 1 and store.get(sha) is None
    gone = service.client.get(body["overlay_url"], headers=kiosk)
    assert gone.status_code == 410 and gone.json()["error"] == "image_purged"
    # The analysis itself (items, grams, nutrients) is kept.
    assert service.ok(service.client.get(f"/v1/analyses/{body['id']}", headers=kiosk)) == body
    # Sent again, the photo is stored again and its retention starts afresh.
    again = service.ok(service.client.post("/v1/analyze", files={
        "image": ("m.jpg", photo_bytes["mix"])}, headers=kiosk), 201)
    assert again["image"]["sha256"] == sha and store.get(sha) == photo_bytes["mix"]
    with factory() as session, session.begin():
        row = session.get_one(StoredImage, sha)
        assert row.purged_at is None and row.created_at.replace(tzinfo=dt.UTC) > old
        assert purge_expired(session, store, service.settings.image_retention_days) == 0
    assert service.client.get(again["overlay_url"], headers=kiosk).status_code == 200


def test_importing_the_service_leaves_torch_out() -> None:
    code = ("import sys, serve.main, serve.cli, serve.services.pipeline, serve.services.menus; "
            "serve.main.create_app; assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_migrations_match_the_models(database_url: str) -> None:
    """The Alembic revisions build exactly the schema the SQLAlchemy models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from serve.db.base import Base
    from serve.db.migrate import upgrade_database
    from serve.db.session import make_engine
    from serve.db.tables import analyses, core, kiosks, menus, pairs, webhooks  # noqa: F401

    engine = make_engine(database_url)
    upgrade_database(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    engine.dispose()
    assert diff == []


def test_readiness_fails_when_the_database_does_not_answer(
    tmp_path: Path, loaded_model: LoadedModel
) -> None:
    from serve.db.session import make_engine

    settings = make_settings(f"sqlite:///{tmp_path / 'r.db'}", tmp_path, loaded_model,
                             model_sync_seconds=0)
    with TestClient(create_app(settings, model=loaded_model)) as c:
        state = c.app.state  # type: ignore[attr-defined]
        working = state.engine
        state.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
        try:
            r = c.get("/readyz")
        finally:
            state.engine.dispose()
            state.engine = working
        assert r.status_code == 503 and r.json()["status"] == "not_ready"
        assert r.json()["checks"]["database"].startswith("error: ")
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_workers_starting_together_migrate_and_bootstrap_once(
    kind: str, tmp_path: Path, loaded_model: LoadedModel
) -> None:
    """Four apps start at once on an empty database, as uvicorn workers do."""
    import threading

    from sqlalchemy import func, select

    from serve.db.tables.core import ApiKey
    from tests.serve.conftest import _postgres_url

    urls = iter([f"sqlite:///{tmp_path / 'w.db'}"]) if kind == "sqlite" else _postgres_url()
    url = next(urls)
    try:
        settings = make_settings(url, tmp_path, loaded_model, model_sync_seconds=0)
        start, errors, counts = threading.Barrier(4), [], []

        def worker() -> None:
            try:
                app = create_app(settings, model=loaded_model)
                start.wait()
                with TestClient(app) as c:
                    assert c.get("/v1/keys", headers={
                        "Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
                    with app.state.session_factory() as s:
                        counts.append(s.scalar(select(func.count(ApiKey.id))))
            except Exception as exc:  # collected: a thread's assertion must fail the test
                errors.append(repr(exc))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "startup hung: migrations deadlocked"
        assert not errors, errors
        assert counts == [1, 1, 1, 1]
    finally:
        next(urls, None)
