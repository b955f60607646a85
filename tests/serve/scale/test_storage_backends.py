"""The ImageStore contract, run against both backends: the local directory and an S3 bucket
on a real S3-compatible HTTP server on loopback (moto)."""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from serve.core.settings import load_settings
from serve.core.storage import (
    ImageStore,
    LocalImageStore,
    S3ImageStore,
    make_image_store,
    purge_orphans,
    sha256_hex,
)
from serve.db.base import Base
from tests.serve.scale.conftest import S3Server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ImageStore:
    """Each backend, empty."""
    if request.param == "local":
        return LocalImageStore(tmp_path / "images")
    server: S3Server = request.getfixturevalue("s3_server")
    return S3ImageStore(server.client(), server.bucket, "images/")


def test_put_get_exists_delete_round_trip(store: ImageStore) -> None:
    assert isinstance(store, ImageStore)
    data = b"\xff\xd8 a photo's bytes \x00\x01" * 100
    sha = store.put(data)
    assert sha == sha256_hex(data)
    assert store.exists(sha) and store.get(sha) == data
    assert store.put(data) == sha  # the same bytes: the same blob, stored once
    assert [s for s, _ in store.blobs()] == [sha]
    store.delete(sha)
    assert not store.exists(sha) and store.get(sha) is None
    store.delete(sha)  # absent: not an error
    assert list(store.blobs()) == []


def test_unknown_and_malformed_keys(store: ImageStore) -> None:
    assert store.get("0" * 64) is None and not store.exists("0" * 64)
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63, ""):
        with pytest.raises(ValueError):
            store.get(bad)


def test_put_refreshes_the_write_time_and_the_orphan_purge_spares_fresh_blobs(
    store: ImageStore, tmp_path: Path
) -> None:
    """purge_orphans through the interface: a blob no row names goes once older than the
    grace period; storing the same bytes again makes it fresh."""
    engine = create_engine(f"sqlite:///{tmp_path / 'orphans.db'}")
    Base.metadata.create_all(engine)
    orphan = store.put(b"orphan")
    first = dict(store.blobs())[orphan]
    time.sleep(1.1)  # S3 LastModified has whole seconds
    store.put(b"orphan")
    assert dict(store.blobs())[orphan] > first
    with Session(engine) as session:
        assert purge_orphans(session, store, grace=dt.timedelta(hours=1)) == 0
        assert purge_orphans(session, store, grace=dt.timedelta(seconds=-60)) == 1
    assert not store.exists(orphan)
    engine.dispose()


def test_local_layout_on_disk_is_unchanged(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    sha = store.put(b"x")
    assert (tmp_path / sha[:2] / sha[2:4] / sha).read_bytes() == b"x"
    old = time.time() - 7200
    os.utime(store.path_for(sha), (old, old))
    assert dict(store.blobs())[sha] == pytest.approx(old)


def test_s3_keys_are_content_addressed_under_the_prefix(s3_server: S3Server) -> None:
    store = S3ImageStore(s3_server.client(), s3_server.bucket, "tl/")
    sha = store.put(b"y")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(
        Bucket=s3_server.bucket)["Contents"]]
    assert keys == [f"tl/{sha[:2]}/{sha[2:4]}/{sha}"]
    # other objects in the bucket are none of the store's business
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="tl/readme.txt", Body=b"hi")
    assert [s for s, _ in store.blobs()] == [sha]


def test_settings_pick_the_backend(tmp_path: Path, s3_server: S3Server) -> None:
    local = make_image_store(load_settings(data_dir=tmp_path))
    assert isinstance(local, LocalImageStore) and local.root == tmp_path / "images"
    s3 = make_image_store(load_settings(data_dir=tmp_path, **s3_server.settings()))
    assert isinstance(s3, S3ImageStore) and s3.bucket == s3_server.bucket
    sha = s3.put(b"through the settings")
    assert s3_server.client().get_object(
        Bucket=s3_server.bucket, Key=f"images/{sha[:2]}/{sha[2:4]}/{sha}")["Body"].read() \
        == b"through the settings"
