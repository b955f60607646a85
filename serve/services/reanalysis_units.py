"""Which analyses a re-analysis takes, grouped into units (a photo, or both photos of its
pair), and the claims that let one worker run each (serve.services.reanalysis has the task).
"""
from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, CursorResult, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from serve.db.base import as_utc, new_id
from serve.db.session import insert_or_ignore, transaction
from serve.db.tables.analyses import (
    Analysis,
    AnalysisItem,
    ItemCorrection,
    MealSource,
    Provenance,
    Reanalysis,
    ReanalysisStatus,
)
from serve.db.tables.core import StoredImage
from serve.db.tables.pairs import MealPair
from serve.services.model_admin import active_record
from serve.services.pipeline import KIOSK, ImageRequest, ImageResult

if TYPE_CHECKING:
    pass


log = logging.getLogger("traylens.reanalysis")

# A round (16 photos) takes seconds; the claims of a worker that died are taken over after.
CLAIM_LEASE = dt.timedelta(minutes=15)


CLAIMED, DONE, SKIPPED = (ReanalysisStatus.CLAIMED.value, ReanalysisStatus.DONE.value,
                          ReanalysisStatus.SKIPPED.value)


class Skip(enum.StrEnum):
    """Why a qualifying analysis was left as it was (reanalyses.reason)."""

    PHOTO_MISSING = "photo_missing"  # the store has no bytes for it (or its depth map)
    PHOTO_UNREADABLE = "photo_unreadable"
    CHANGED = "changed"  # corrected, re-analysed by another worker or deleted meanwhile
    PAIR_PARTNER = "pair_partner"  # the other photo of its pair does not qualify
    FAILED = "failed"  # the model failed on it


@dataclass(frozen=True)
class Target:
    """The active model's activation (a model_versions row): what analyses are moved to."""

    activation_id: str
    version: str
    sha256: str
    path: Path
    activated_at: dt.datetime


def current_target(session: Session) -> Target | None:
    """The activation of the model every worker serves now."""
    row = active_record(session)
    if row is None:
        return None
    return Target(row.id, row.version, row.sha256, Path(row.path), as_utc(row.loaded_at))


# --- which analyses ------------------------------------------------------------------------


def user_changed() -> ColumnElement[bool]:
    """Some item of the analysis was corrected, added or removed by a user."""
    history = exists().where(ItemCorrection.analysis_id == Analysis.id)
    touched = exists().where(AnalysisItem.analysis_id == Analysis.id, or_(
        AnalysisItem.provenance != Provenance.MODEL.value,
        AnalysisItem.corrected_at.is_not(None), AnalysisItem.removed_at.is_not(None)))
    return or_(history, touched)


def photo_kept() -> ColumnElement[bool]:
    """The analysis's photo has not been purged."""
    return exists().where(StoredImage.sha256 == Analysis.image_sha256,
                          StoredImage.purged_at.is_(None))


def made_with_another(version: str) -> list[ColumnElement[bool]]:
    """An analysed photo made with another model version than `version`."""
    return [Analysis.source == MealSource.PHOTO.value, Analysis.image_sha256.is_not(None),
            Analysis.model_version.is_not(None), Analysis.model_version != version]


def rerunnable() -> list[ColumnElement[bool]]:
    """No menu, no tray layout, the photo kept, no user change (module docstring)."""
    return [Analysis.menu_id.is_(None), Analysis.layout.is_(None), photo_kept(),
            ~user_changed()]


def qualifies(version: str) -> list[ColumnElement[bool]]:
    """Conditions of an analysis that is re-analysed with model `version`."""
    return [*made_with_another(version), *rerunnable()]


def settled(target: Target, now: dt.datetime) -> ColumnElement[bool]:
    """This activation already has the analysis: done, skipped, or claimed by a live lease."""
    return exists().where(Reanalysis.analysis_id == Analysis.id,
                          Reanalysis.model_version_id == target.activation_id,
                          or_(Reanalysis.status != CLAIMED, Reanalysis.lease_until >= now))


def candidates(session: Session, target: Target, since: dt.datetime, now: dt.datetime,
               limit: int) -> list[str]:
    """Ids of qualifying analyses captured since `since` that no worker has (newest first:
    the diaries people read now follow first)."""
    return list(session.scalars(
        select(Analysis.id).where(*qualifies(target.version), Analysis.captured_at >= since,
                                  ~settled(target, now))
        .order_by(Analysis.captured_at.desc(), Analysis.id).limit(limit)))


# --- units: an analysis, or the two photos of its pair ---------------------------------------


@dataclass(frozen=True)
class Member:
    """What re-analysing one analysis needs of it."""

    id: str
    version: str  # the model version it was made with
    image_sha256: str
    depth_sha256: str | None
    px_per_cm: float | None  # the kiosk calibration it was made with, else None
    canteen_id: str | None
    kiosk_id: str | None
    user_id: str | None


@dataclass
class Unit:
    """Analyses re-analysed together (one, or both photos of a pair) and their claim."""

    members: list[Member]
    pair_id: str | None = None
    token: str = field(default_factory=new_id)
    photos: list[ImageRequest] = field(default_factory=list)
    results: list[ImageResult] = field(default_factory=list)
    skip: Skip | None = None


MEMBER_COLUMNS = (Analysis.id, Analysis.model_version, Analysis.image_sha256,
                  Analysis.depth_sha256, Analysis.scale_source, Analysis.px_per_cm,
                  Analysis.canteen_id, Analysis.kiosk_id, Analysis.user_id)


def _member(row: Any) -> Member:
    """A MEMBER_COLUMNS row as a Member."""
    return Member(row.id, row.model_version, row.image_sha256, row.depth_sha256,
                  row.px_per_cm if row.scale_source == KIOSK else None, row.canteen_id,
                  row.kiosk_id, row.user_id)


def _skipped(target: Target) -> ColumnElement[bool]:
    """The analysis was left as it was in this activation's re-analysis."""
    return exists().where(Reanalysis.analysis_id == Analysis.id,
                          Reanalysis.model_version_id == target.activation_id,
                          Reanalysis.status == SKIPPED)


def units_of(session: Session, target: Target, ids: Sequence[str]
           ) -> tuple[list[Unit], list[str]]:
    """The units of these candidates, and the candidates whose pair partner does not
    qualify (left as they are). A partner already at the target version is not re-run."""
    pairs = session.execute(select(MealPair.id, MealPair.before_analysis_id,
                                   MealPair.after_analysis_id).where(or_(
        MealPair.before_analysis_id.in_(ids), MealPair.after_analysis_id.in_(ids)))).all()
    partner: dict[str, tuple[str | None, str | None]] = {}
    for pair_id, before, after in pairs:
        partner[before] = (pair_id, after)
        if after is not None:
            partner[after] = (pair_id, before)
    others = {p for _, p in partner.values() if p is not None}
    wanted = set(ids) | others
    qualifying = {row.id: _member(row) for row in session.execute(
        select(*MEMBER_COLUMNS).where(Analysis.id.in_(wanted), *qualifies(target.version),
                                      ~_skipped(target)))}
    at_target = set(session.scalars(select(Analysis.id).where(
        Analysis.id.in_(others), Analysis.model_version == target.version)))
    units, lone = [], []
    seen: set[str] = set()
    for analysis_id in ids:
        if analysis_id in seen or analysis_id not in qualifying:
            continue  # in an earlier unit, or changed since it was selected
        pair, other = partner.get(analysis_id, (None, None))
        members = [qualifying[analysis_id]]
        if other is not None and other not in at_target:
            if other not in qualifying:
                lone.append(analysis_id)
                continue
            members.append(qualifying[other])
        members.sort(key=lambda m: m.id)  # one lock order for every worker
        seen.update(m.id for m in members)
        units.append(Unit(members, pair))
    return units, lone


# --- claims --------------------------------------------------------------------------------


class LostClaim(Exception):
    """Another worker holds (or finished) part of a unit, or an analysis changed: undo."""


def rowcount(result: Any) -> int:
    """Rows an UPDATE matched."""
    done: CursorResult[Any] = result
    return int(done.rowcount)


def _claim_one(session: Session, target: Target, member: Member, token: str,
               now: dt.datetime) -> bool:
    """Claim one analysis for this activation: a new row, or a claim whose lease ran out."""
    lease = now + CLAIM_LEASE
    if insert_or_ignore(session, Reanalysis, {
            "id": new_id(), "model_version_id": target.activation_id,
            "analysis_id": member.id, "status": CLAIMED, "from_version": member.version,
            "lease_until": lease, "lease_token": token, "created_at": now}):
        return True
    return rowcount(session.execute(
        update(Reanalysis).where(Reanalysis.model_version_id == target.activation_id,
                                 Reanalysis.analysis_id == member.id,
                                 Reanalysis.status == CLAIMED, Reanalysis.lease_until < now)
        .values(lease_until=lease, lease_token=token, from_version=member.version)
        .execution_options(synchronize_session=False))) == 1


def claim(factory: sessionmaker[Session], target: Target, unit: Unit,
          now: dt.datetime) -> bool:
    """Claim every analysis of the unit in one transaction, or none."""
    try:
        with transaction(factory) as session:
            for member in unit.members:
                if not _claim_one(session, target, member, unit.token, now):
                    raise LostClaim
    except LostClaim:
        return False
    return True


def close_claims(session: Session, target: Target, unit: Unit, status: str,
                  reason: str | None, now: dt.datetime) -> None:
    """Mark the unit's claims done or skipped; LostClaim when one is no longer this worker's."""
    for member in unit.members:
        if rowcount(session.execute(
                update(Reanalysis).where(Reanalysis.model_version_id == target.activation_id,
                                         Reanalysis.analysis_id == member.id,
                                         Reanalysis.status == CLAIMED,
                                         Reanalysis.lease_token == unit.token)
                .values(status=status, reason=reason, finished_at=now, lease_until=None,
                        lease_token=None)
                .execution_options(synchronize_session=False))) != 1:
            raise LostClaim


def skip(factory: sessionmaker[Session], target: Target, unit: Unit, reason: Skip,
         now: dt.datetime) -> None:
    """Leave the unit's analyses as they are, saying why (if the claims are still ours)."""
    try:
        with transaction(factory) as session:
            close_claims(session, target, unit, SKIPPED, reason.value, now)
    except LostClaim:
        return
    log.info("re-analysis to %s: skipped %s (%s)", target.version,
             ", ".join(m.id for m in unit.members), reason.value)


def skip_lone(factory: sessionmaker[Session], target: Target, ids: Sequence[str],
              now: dt.datetime) -> None:
    """Record analyses whose pair partner does not qualify (once per activation)."""
    with transaction(factory) as session:
        for analysis_id in ids:
            insert_or_ignore(session, Reanalysis, {
                "id": new_id(), "model_version_id": target.activation_id,
                "analysis_id": analysis_id, "status": SKIPPED,
                "reason": Skip.PAIR_PARTNER.value, "created_at": now, "finished_at": now})
