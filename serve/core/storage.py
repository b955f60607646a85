"""Content-addressed image stores (sha256 keys) and the retention and orphan purges.

`ImageStore` is the interface every service takes; two backends implement it:

- `LocalImageStore`: files under root/ab/cd/<sha256> (the default; one machine, or a shared
  volume).
- `S3ImageStore`: objects <prefix>ab/cd/<sha256> in a bucket of any S3-compatible object store
  (AWS S3, MinIO, Ceph RGW, ...) through boto3, so several machines share the photos.

`make_image_store(settings)` is the one place that picks and builds the backend.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from serve.db.base import utcnow
from serve.db.tables.core import StoredImage
from serve.db.tables.kiosks import KioskLayout
from serve.db.tables.menus import Enrolment

if TYPE_CHECKING:
    from serve.core.settings import Settings

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MISSING = ("404", "NoSuchKey", "NotFound")  # S3 error codes of an absent object


def sha256_hex(data: bytes) -> str:
    """SHA-256 of bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(sha256: str) -> str:
    """The digest itself, or ValueError when it is not 64 lower-case hex digits (a key never
    comes from anything but sha256_hex, but a path must never be built from anything else)."""
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def _shard(sha256: str) -> str:
    """ab/cd/<sha256>: the relative location of a blob in either backend."""
    check_sha256(sha256)
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


@runtime_checkable
class ImageStore(Protocol):
    """Content-addressed bytes: the same bytes are stored once, under their SHA-256.

    put() must leave the blob's modification time fresh even when the bytes were there
    already: purge_orphans spares blobs written within its grace period, which may belong to
    a transaction not yet committed.
    """

    def put(self, data: bytes) -> str:
        """Store bytes; their hash."""
        ...

    def get(self, sha256: str) -> bytes | None:
        """The stored bytes, or None when purged or never stored."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under this hash."""
        ...

    def delete(self, sha256: str) -> None:
        """Remove a blob if present (absent is not an error)."""
        ...

    def blobs(self) -> Iterator[tuple[str, float]]:
        """Every stored blob: (sha256, last write as a POSIX time)."""
        ...


@dataclass(frozen=True)
class LocalImageStore:
    """Files under root/ab/cd/<sha256>."""

    root: Path

    def path_for(self, sha256: str) -> Path:
        """Where a blob with this hash lives."""
        return self.root / _shard(sha256)

    def put(self, data: bytes) -> str:
        """Store bytes (atomically: temp file + rename) and return their hash."""
        digest = sha256_hex(data)
        path = self.path_for(digest)
        if path.exists():
            # fresh mtime: purge_orphans leaves it be until the caller's row is committed
            path.touch(exist_ok=True)
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)  # concurrent writers of the same hash write the same bytes
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes | None:
        """The stored bytes, or None when purged or never stored."""
        path = self.path_for(sha256)
        return path.read_bytes() if path.is_file() else None

    def exists(self, sha256: str) -> bool:
        """Whether the file is there."""
        return self.path_for(sha256).is_file()

    def delete(self, sha256: str) -> None:
        """Remove a blob if present."""
        self.path_for(sha256).unlink(missing_ok=True)

    def files(self) -> Iterator[Path]:
        """Every stored blob's path (temporary files of unfinished writes left out)."""
        for path in self.root.glob("??/??/*"):
            if _SHA256.fullmatch(path.name) and path.is_file():
                yield path

    def blobs(self) -> Iterator[tuple[str, float]]:
        """Every stored blob with its modification time."""
        for path in self.files():
            try:
                yield path.name, path.stat().st_mtime
            except FileNotFoundError:  # removed meanwhile (an erasure, another purge)
                continue


@dataclass
class S3ImageStore:
    """Objects <prefix>ab/cd/<sha256> in an S3 bucket (or any S3-compatible store).

    `client` is a boto3 S3 client (thread-safe; one per process). put() always uploads,
    even when the object exists: the same key gets the same bytes, and the upload is what
    refreshes LastModified for the orphan purge's grace period (a HEAD first would save the
    upload of a repeated photo but leave its time stale). Objects are written with the
    CRC32 checksum that botocore computes and the store verifies on receipt.
    """

    client: Any
    bucket: str
    prefix: str = ""
    content_type: str = "application/octet-stream"

    def key_for(self, sha256: str) -> str:
        """The object key of a blob."""
        return f"{self.prefix}{_shard(sha256)}"

    def _is_missing(self, exc: Exception) -> bool:
        """A ClientError that says the object is not there."""
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in _MISSING

    def put(self, data: bytes) -> str:
        """Upload the bytes under their hash (boto3 adds a CRC32 checksum the store checks)."""
        digest = sha256_hex(data)
        self.client.put_object(Bucket=self.bucket, Key=self.key_for(digest), Body=data,
                               ContentType=self.content_type)
        return digest

    def get(self, sha256: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if self._is_missing(exc):
                return None
            raise
        body: bytes = response["Body"].read()
        return body

    def exists(self, sha256: str) -> bool:
        """A HEAD of the object."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if self._is_missing(exc):
                return False
            raise
        return True

    def delete(self, sha256: str) -> None:
        """DELETE the object (S3 answers 204 for an absent key too)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))

    def blobs(self) -> Iterator[tuple[str, float]]:
        """Every object under the prefix that is named by a hash, with its LastModified."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for obj in page.get("Contents", ()):
                name = str(obj["Key"]).rsplit("/", 1)[-1]
                if _SHA256.fullmatch(name) and obj["Key"] == self.key_for(name):
                    yield name, obj["LastModified"].timestamp()


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client from the settings; credentials and region not set there come from
    boto3's usual chain (AWS_* environment variables, shared config, instance role)."""
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region or None,
        aws_access_key_id=settings.s3_access_key_id or None,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=Config(
            s3={"addressing_style": settings.s3_addressing_style},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5, read_timeout=30,
            max_pool_connections=32,
        ),
    )


def make_image_store(settings: Settings) -> ImageStore:
    """The store the settings name: the local directory, or the S3 bucket."""
    if settings.image_store == "s3":
        return S3ImageStore(s3_client(settings), settings.s3_bucket, settings.s3_prefix)
    return LocalImageStore(settings.image_dir)


def record_image(
    session: Session, *, sha256: str, kind: str, content_type: str, size_bytes: int,
    width: int | None, height: int | None,
) -> None:
    """Insert the image row, or revive it when the same bytes were purged and come again.

    One upsert, safe when two requests store the same photo at once. A revived photo counts
    its retention from now, or the next purge would delete it straight away.
    """
    now = utcnow()
    values = dict(
        sha256=sha256, kind=kind, content_type=content_type, size_bytes=size_bytes,
        width=width, height=height, created_at=now,
    )
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(StoredImage).values(**values).on_conflict_do_update(
        index_elements=["sha256"],
        set_={"purged_at": None, "created_at": now},
        where=StoredImage.purged_at.is_not(None),
    )
    session.connection().execute(stmt)


def purge_expired(session: Session, store: ImageStore, retention_days: int) -> int:
    """Delete stored files older than the retention period; analyses keep their results.

    Enrolment photos are kept: they are the canteen's reference examples, re-embedded
    whenever the model changes, not meal records; so are kiosks' empty-tray layout references.
    """
    if retention_days <= 0:
        return 0
    cutoff = utcnow() - timedelta(days=retention_days)
    kept = select(Enrolment.image_sha256).union(
        select(Enrolment.mask_sha256).where(Enrolment.mask_sha256.is_not(None)),
        select(KioskLayout.reference_sha256))
    rows = session.scalars(
        select(StoredImage).where(
            StoredImage.created_at < cutoff, StoredImage.purged_at.is_(None),
            StoredImage.sha256.not_in(kept),
        )
    ).all()
    for row in rows:
        store.delete(row.sha256)
        row.purged_at = utcnow()
    return len(rows)


ORPHAN_GRACE = timedelta(hours=1)


def purge_orphans(session: Session, store: ImageStore, grace: timedelta = ORPHAN_GRACE) -> int:
    """Delete blobs that no image row names, last written more than `grace` ago.

    Such blobs are left when a process stops between an erasure's commit and its blob
    removal (services.privacy), or between storing an upload's blob and a commit that then
    failed. A blob written within the grace period may belong to a transaction not yet
    committed, so it stays (ImageStore.put refreshes the time of a blob stored again).
    """
    cutoff = time.time() - grace.total_seconds()
    removed = 0
    batch: list[str] = []

    def sweep(shas: list[str]) -> int:
        """Remove the blobs of the batch whose hash has no row."""
        known = set(session.scalars(select(StoredImage.sha256).where(
            StoredImage.sha256.in_(shas))))
        gone = [s for s in shas if s not in known]
        for sha in gone:
            store.delete(sha)
        return len(gone)

    for sha, written in store.blobs():
        if written < cutoff:
            batch.append(sha)
        if len(batch) >= 500:
            removed += sweep(batch)
            batch = []
    if batch:
        removed += sweep(batch)
    return removed
