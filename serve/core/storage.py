"""Content-addressed image store on local disk (sha256 paths) with a retention purge."""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from serve.db.base import utcnow
from serve.db.tables.core import StoredImage
from serve.db.tables.kiosks import KioskLayout
from serve.db.tables.menus import Enrolment


def sha256_hex(data: bytes) -> str:
    """SHA-256 of bytes, hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ImageStore:
    """Files under root/ab/cd/<sha256>: the same bytes are stored once."""

    root: Path

    def path_for(self, sha256: str) -> Path:
        """Where a blob with this hash lives."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

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

    def delete(self, sha256: str) -> None:
        """Remove a blob if present."""
        self.path_for(sha256).unlink(missing_ok=True)

    def files(self) -> Iterator[Path]:
        """Every stored blob (temporary files of unfinished writes left out)."""
        for path in self.root.glob("??/??/*"):
            if len(path.name) == 64 and not path.name.startswith(".") and path.is_file():
                yield path


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
    """Delete files that no image row names, last written more than `grace` ago.

    Such files are left when a process stops between an erasure's commit and its file
    removal (services.privacy), or between storing an upload's file and a commit that then
    failed. A file written within the grace period may belong to a transaction not yet
    committed, so it stays (ImageStore.put refreshes the time of a file stored again).
    """
    cutoff = time.time() - grace.total_seconds()
    removed = 0
    batch: list[Path] = []

    def sweep(paths: list[Path]) -> int:
        """Remove the paths of the batch whose hash has no row."""
        known = set(session.scalars(select(StoredImage.sha256).where(
            StoredImage.sha256.in_([p.name for p in paths]))))
        gone = [p for p in paths if p.name not in known]
        for path in gone:
            path.unlink(missing_ok=True)
        return len(gone)

    for path in store.files():
        if path.stat().st_mtime < cutoff:
            batch.append(path)
        if len(batch) >= 500:
            removed += sweep(batch)
            batch = []
    if batch:
        removed += sweep(batch)
    return removed
