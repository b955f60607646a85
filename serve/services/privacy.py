"""A person's consent and the erasure of their data: every meal, item, derived row and photo.

Erasure runs in one transaction (rows), then removes the photo files once it committed: a
crash in between leaves only files that no row names, which `python -m serve purge-images`
sweeps (core.storage.purge_orphans). Files are never removed before the commit, so a rolled
back erasure cannot leave rows whose photo is gone.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Text, cast, delete, or_, select, update
from sqlalchemy.orm import Session

from serve.core.auth import Principal
from serve.core.errors import ApiError
from serve.core.storage import ImageStore
from serve.db.access import load_user
from serve.db.base import utcnow
from serve.db.tables.analyses import Analysis, AnalysisItem
from serve.db.tables.core import IdempotencyRecord, StoredImage, User, UserConsent
from serve.db.tables.kiosks import KioskLayout
from serve.db.tables.menus import Enrolment
from serve.db.tables.pairs import MealPair

CHUNK = 500  # ids per IN (...) list


def consent_withdrawn(user: User) -> ApiError:
    """409 for a per-person record the person did not (or no longer) consent to."""
    return ApiError(409, "consent_withdrawn",
                    f"user {user.id} has not consented to a diary: no meal record is kept")


def require_diary_consent(user: User) -> None:
    """Diary, weeks and habits exist only for a person who consents to a diary."""
    if not user.consent_diary:
        raise consent_withdrawn(user)


def record_consent(session: Session, principal: Principal, user: User, *,
                   diary: bool | None, canteen_statistics: bool | None, source: str) -> bool:
    """Set the sent consent fields and keep a history row; True when diary was withdrawn."""
    withdrawn = user.consent_diary and diary is False
    if diary is not None:
        user.consent_diary = diary
    if canteen_statistics is not None:
        user.consent_canteen_statistics = canteen_statistics
    now = utcnow()
    if source == "given":
        user.consent_updated_at = now
    session.add(UserConsent(user_id=user.id, diary=user.consent_diary,
                            canteen_statistics=user.consent_canteen_statistics, source=source,
                            api_key_id=principal.key_id, created_at=now))
    return withdrawn


def consent_history(session: Session, user: User) -> list[UserConsent]:
    """Every consent event of the user, oldest first."""
    return list(session.scalars(select(UserConsent).where(UserConsent.user_id == user.id)
                                .order_by(UserConsent.created_at, UserConsent.id)))


@dataclass
class Erased:
    """What an erasure removed: row counts and the photo files to remove after commit."""

    analyses: int = 0
    items: int = 0
    pairs: int = 0
    idempotency_records: int = 0
    enrolments: int = 0
    images: list[str] = field(default_factory=list)


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    """The values in lists of at most CHUNK."""
    for start in range(0, len(values), CHUNK):
        yield list(values[start:start + CHUNK])


def _strings(value: object) -> Iterable[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _idempotency_records(session: Session, key_ids: set[str], secrets: set[str]) -> list[str]:
    """Stored answers (of the keys that wrote the person's analyses) naming any secret id.

    The answers hold whole analyses; the ids are random 32-hex strings, so a text match
    narrows the rows in the database and a parse confirms each one.
    """
    if not key_ids or not secrets:
        return []
    found: list[str] = []
    text = cast(IdempotencyRecord.response, Text)
    for chunk in _chunks(sorted(secrets)):
        rows = session.execute(select(IdempotencyRecord.id, IdempotencyRecord.response).where(
            IdempotencyRecord.api_key_id.in_(key_ids),
            or_(*(text.contains(s) for s in chunk)))).all()
        for record_id, response in rows:
            body = json.loads(response) if isinstance(response, str) else response
            if secrets.intersection(_strings(body)):
                found.append(record_id)
    return sorted(set(found))


def _referenced(session: Session, shas: set[str]) -> set[str]:
    """The hashes among `shas` that a remaining row still names."""
    if not shas:
        return set()
    ids = list(shas)
    used: set[str] = set()
    for chunk in _chunks(ids):
        for column in (Analysis.image_sha256, Analysis.depth_sha256,
                       Enrolment.image_sha256, Enrolment.mask_sha256,
                       KioskLayout.reference_sha256):
            used.update(session.scalars(select(column).where(column.in_(chunk))))
    return used


def erase_meals(session: Session, user_id: str) -> Erased:
    """Delete (in the caller's transaction) everything recorded about the person's meals.

    - their analyses, and the after photos of their before/after pairs that name no other
      person; the items of all these;
    - their pairs; another pair closed by one of their after photos is reopened;
    - stored answers to Idempotency-Key retries that hold any of it;
    - enrolments made from one of their photos (and the enrolment masks then unused);
    - image rows no remaining row names (an image another row also uses stays).
    The files of the deleted image rows are left for `remove_files` after the commit.
    """
    out = Erased()
    mine = set(session.scalars(select(Analysis.id).where(Analysis.user_id == user_id)))
    pairs = list(session.scalars(select(MealPair).where(MealPair.user_id == user_id)))
    after_ids = {p.after_analysis_id for p in pairs if p.after_analysis_id}
    if after_ids:  # after photos without a person, closing this person's pairs
        mine.update(session.scalars(select(Analysis.id).where(
            Analysis.id.in_(after_ids),
            or_(Analysis.user_id.is_(None), Analysis.user_id == user_id))))
    ids = sorted(mine)
    rows = [row for chunk in _chunks(ids) for row in session.execute(
        select(Analysis.api_key_id, Analysis.image_sha256, Analysis.depth_sha256)
        .where(Analysis.id.in_(chunk))).all()]
    key_ids = {k for k, _, _ in rows if k}
    shas = {s for _, image, depth in rows for s in (image, depth) if s}
    pair_ids = {p.id for p in pairs}
    for chunk in _chunks(ids):  # pairs of others' before photos (no person) that ours closed
        session.execute(update(MealPair).where(MealPair.after_analysis_id.in_(chunk),
                                               MealPair.user_id.is_distinct_from(user_id))
                        .values(after_analysis_id=None, after_at=None))
        pair_ids.update(session.scalars(select(MealPair.id).where(
            MealPair.before_analysis_id.in_(chunk))))
    records = _idempotency_records(session, key_ids, set(ids) | pair_ids | {user_id})
    for chunk in _chunks(records):
        out.idempotency_records += _count(session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(chunk))))
    for chunk in _chunks(sorted(pair_ids)):
        out.pairs += _count(session.execute(delete(MealPair).where(MealPair.id.in_(chunk))))
    for chunk in _chunks(ids):
        out.items += _count(session.execute(
            delete(AnalysisItem).where(AnalysisItem.analysis_id.in_(chunk))))
        out.analyses += _count(session.execute(delete(Analysis).where(Analysis.id.in_(chunk))))
    out.enrolments, masks = _erase_enrolments(session, shas)
    shas |= masks
    gone = sorted(shas - _referenced(session, shas))
    for chunk in _chunks(gone):
        session.execute(delete(StoredImage).where(StoredImage.sha256.in_(chunk)))
    out.images = gone
    return out


def _erase_enrolments(session: Session, shas: set[str]) -> tuple[int, set[str]]:
    """Delete enrolments made from one of the person's photos that no one else's analysis
    uses; answer how many and the hashes of their masks."""
    if not shas:
        return 0, set()
    still_used: set[str] = set()
    for chunk in _chunks(sorted(shas)):
        still_used.update(session.scalars(select(Analysis.image_sha256).where(
            Analysis.image_sha256.in_(chunk))))
    theirs = sorted(shas - still_used)
    count, masks = 0, set[str]()
    for chunk in _chunks(theirs):
        rows = session.execute(select(Enrolment.id, Enrolment.mask_sha256)
                               .where(Enrolment.image_sha256.in_(chunk))).all()
        masks.update(m for _, m in rows if m)
        if rows:
            count += _count(session.execute(
                delete(Enrolment).where(Enrolment.id.in_([r for r, _ in rows]))))
    return count, masks


def _count(result: object) -> int:
    """Rows a DELETE removed."""
    return int(getattr(result, "rowcount", 0) or 0)


def remove_files(session: Session, store: ImageStore, shas: Iterable[str]) -> int:
    """After the commit: remove the erased photos' files, unless the same bytes were stored
    again meanwhile (a row names the hash again). Answers how many files were removed."""
    removed = 0
    for chunk in _chunks(sorted(set(shas))):
        again = set(session.scalars(select(StoredImage.sha256)
                                    .where(StoredImage.sha256.in_(chunk))))
        for sha in chunk:
            if sha not in again and store.path_for(sha).exists():
                store.delete(sha)
                removed += 1
    session.rollback()  # end the read transaction
    return removed


def delete_user(session: Session, store: ImageStore, principal: Principal, user_id: str
                ) -> Erased:
    """Delete a user the caller may see and everything about them, then their photo files."""
    with session.begin():
        user = load_user(session, principal, user_id)
        erased = erase_meals(session, user.id)
        session.execute(delete(UserConsent).where(UserConsent.user_id == user_id))
        session.execute(delete(User).where(User.id == user_id))
    remove_files(session, store, erased.images)
    return erased
