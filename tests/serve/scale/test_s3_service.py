"""The whole photo path against an S3 bucket on a real S3-compatible server on loopback:
analyze stores the photo as an object, the overlay reads it back, the retention purge and a
person's erasure delete it; nothing is written under the data directory's images/."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from serve.core.storage import S3ImageStore, make_image_store, purge_expired, sha256_hex
from serve.db.base import utcnow
from serve.db.session import make_engine, make_session_factory, transaction
from serve.db.tables.core import StoredImage
from serve.main import create_app
from serve.services.model_registry import LoadedModel
from tests.serve.conftest import Service, make_settings
from tests.serve.scale.conftest import S3Server


def _analyze(s: Service, headers: dict[str, str], photo: bytes, **data: str) -> Any:
    return s.ok(s.client.post("/v1/analyze", files={"image": ("t.jpg", photo, "image/jpeg")},
                              data=data, headers=headers), 201)


def test_analyze_overlay_purge_and_erasure_through_s3(
    s3_server: S3Server, loaded_model: LoadedModel, tmp_path: Path,
    photo_bytes: dict[str, bytes],
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data",
                             loaded_model, webhook_dispatch_seconds=0, model_sync_seconds=0,
                             **s3_server.settings())
    bucket = s3_server.client()

    def key(sha: str) -> str:
        return f"images/{sha[:2]}/{sha[2:4]}/{sha}"

    def stored(sha: str) -> bool:
        listed = bucket.list_objects_v2(Bucket=s3_server.bucket, Prefix=key(sha))
        return bool(listed.get("KeyCount"))

    with TestClient(create_app(settings, model=loaded_model)) as client:
        s = Service(client, settings)
        assert isinstance(client.app.state.image_store, S3ImageStore)  # type: ignore[attr-defined]
        canteen = s.canteen("s3")
        app = s.key("app", canteen)
        user = s.user(app)
        meal = _analyze(s, app, photo_bytes["tray"], user_id=user)
        old = _analyze(s, app, photo_bytes["apple"], canteen_id=canteen)
        sha, old_sha = meal["image"]["sha256"], old["image"]["sha256"]
        assert sha == sha256_hex(photo_bytes["tray"])
        assert bucket.get_object(Bucket=s3_server.bucket, Key=key(sha))["Body"].read() \
            == photo_bytes["tray"]

        r = client.get(f"/v1/analyses/{meal['id']}/overlay.png", headers=app)
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n", r.text

        # the retention purge deletes an old photo's object; its analysis stays
        factory = make_session_factory(make_engine(settings.database_url))
        with transaction(factory) as session:
            session.execute(update(StoredImage).where(StoredImage.sha256 == old_sha)
                            .values(created_at=utcnow() - dt.timedelta(days=400)))
        with transaction(factory) as session:
            assert purge_expired(session, make_image_store(settings), 365) == 1
        assert not stored(old_sha) and stored(sha)
        assert client.get(f"/v1/analyses/{old['id']}", headers=app).status_code == 200

        # erasing the person deletes their photo's object
        assert client.delete(f"/v1/users/{user}", headers=app).status_code == 204
        assert not stored(sha)
        assert client.get(f"/v1/analyses/{meal['id']}/overlay.png",
                          headers=app).status_code == 404
    assert not (settings.image_dir).exists() or not any(settings.image_dir.rglob("*"))


def test_s3_without_a_bucket_fails_at_startup(tmp_path: Path) -> None:
    from serve.core.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="S3_BUCKET"):
        load_settings(data_dir=tmp_path, image_store="s3")
