"""Idempotency-Key: the first answer to a request is stored with what it describes, and a
retry under the same key gets that answer again instead of a second analysis."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from serve.core.auth import Principal
from serve.core.errors import ApiError
from serve.core.uploads import UploadedFile
from serve.db.session import insert_rows, transaction
from serve.db.tables.core import IdempotencyRecord


@dataclass(frozen=True)
class Answer:
    """A status and JSON body to send; `replayed` when it is the stored first answer."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


def check_idempotency_key(key: str | None) -> str | None:
    """Keys are opaque strings of 1-200 printable characters."""
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise ApiError(422, "invalid_idempotency_key",
                       "Idempotency-Key must be 1-200 printable characters")
    return key


def request_hash(files: list[UploadedFile], fields: dict[str, str], route: str) -> str:
    """Fingerprint of a request, to tell a retry from a different request under the same key."""
    digest = hashlib.sha256(route.encode())
    for f in files:
        digest.update(f.field.encode() + b"\0" + hashlib.sha256(f.data).digest())
    digest.update(json.dumps(fields, sort_keys=True).encode())
    return digest.hexdigest()


def replay(
    factory: sessionmaker[Session], principal: Principal, key: str | None, fingerprint: str
) -> Answer | None:
    """The first answer for a reused Idempotency-Key; 422 when the request differs."""
    if key is None:
        return None
    with factory() as session:
        record = session.scalar(select(IdempotencyRecord).where(
            IdempotencyRecord.api_key_id == principal.key_id, IdempotencyRecord.key == key))
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used for a different request")
    return Answer(record.status_code, record.response, replayed=True)


def save_idempotency(
    session: Session, principal: Principal, key: str | None, fingerprint: str, answer: Answer
) -> None:
    """Remember the answer under the key, in the same transaction as what it describes."""
    if key is not None:  # a concurrent twin fails here on the unique key (IntegrityError)
        insert_rows(session, [IdempotencyRecord(  # id and created_at: column defaults
            api_key_id=principal.key_id, key=key, request_hash=fingerprint,
            status_code=answer.status, response=answer.body)])


def stored_or_replayed(
    factory: sessionmaker[Session], principal: Principal, key: str | None, fingerprint: str,
    write: Callable[[Session], Answer],
) -> Answer:
    """Run the write transaction; a concurrent retry that lost the race gets the first answer."""
    try:
        with transaction(factory) as session:
            answer = write(session)
            save_idempotency(session, principal, key, fingerprint, answer)
    except IntegrityError:
        replayed = replay(factory, principal, key, fingerprint) if key else None
        if replayed is None:
            raise
        return replayed
    return answer
