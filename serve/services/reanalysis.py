"""Re-analysis of stored photos after a model change: the `reanalyze_photos` task.

When another model becomes active (an admin's upload or rollback, a deployment's new file),
the analyses of the last `reanalysis_lookback_days` days that qualify are run again through
it and their items replaced in place. An analysis qualifies (`reanalysis_units.qualifies`)
when it is

- an analysed photo (not a manual meal) whose photo is still stored (not purged);
- made with another model version than the active one (the version string analyses keep);
- made without a menu and without a kiosk tray layout: the menu's dishes and enrolments, or
  the kiosk's compartments, may have changed since, so running it again would ask another
  question than the one first answered;
- untouched by its user: no item corrected, added or removed (the user's word outranks any
  model).

The analysis keeps its id and context (canteen, user, kiosk, time, meal state, pair), the
kiosk calibration it was made with (`px_per_cm` when its scale was the kiosk's) and its depth
map; items, totals, scale, `masks` (as `refine_masks` says now) and `model_version` are the
new model's. `previous_model_version` and `reanalyzed_at` keep the version the items came
from and when they were replaced.

Before/after pairs: a pair compares the appearance of its two photos' items only when one
model made both (and their areas only when made on the same masks), so the two photos of
a pair are re-analysed together, in one transaction, or not at all (a partner that does not
qualify leaves both as they were: `pair_partner`). Pair results, diaries, habits, trends
and waste reports are computed from the items on read
(services.pairing, diary, waste), and the analysis's stored totals are rewritten with its
items: everything read afterwards follows.

Item ids: a new item takes the id of the old item whose box it overlaps most (IoU >= 0.5,
one to one, best first): an item id names a region of the tray, whose food and grams may
change. Old ids without such a region go, new regions get new ids. Each replacement writes
an `analysis_reanalyzed` webhook event (in the same transaction) that lists the kept, removed
and added ids.

Safe to run twice and in several workers at once, and resumable: each analysis is claimed
in `reanalyses` under a unique (activation, analysis) key with a lease before the model
runs, so one worker runs it; the replacement itself is a compare-and-set on the version the
analysis had, and re-checks under row locks that no user changed an item meanwhile. A run
does at most `reanalysis_max_per_run` analyses, `reanalysis_batch` at a time; what is left
is picked up by the next run (enqueued at once when a run stops at its bound; a worker that
died leaves claims whose lease runs out).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from model.infer.geometry import pair_iou
from model.infer.images import full_size
from serve.core.errors import ApiError
from serve.core.memory import release_memory
from serve.core.settings import Settings
from serve.core.storage import ImageStore
from serve.core.uploads import decode_depth, decode_photo
from serve.db.base import new_id, utcnow
from serve.db.session import insert_rows, transaction
from serve.db.tables.analyses import (
    Analysis,
    AnalysisItem,
    ItemCorrection,
    Provenance,
    Reanalysis,
)
from serve.db.tables.core import User
from serve.schemas.base import utc_iso
from serve.services import webhooks
from serve.services.analyses import item_row
from serve.services.pipeline import ImageRequest, ImageResult, analyze
from serve.services.reanalysis_units import (
    CLAIMED,
    DONE,
    LostClaim,
    Member,
    Skip,
    Target,
    Unit,
    candidates,
    claim,
    close_claims,
    current_target,
    made_with_another,
    photo_kept,
    rerunnable,
    rowcount,
    settled,
    skip,
    skip_lone,
    units_of,
    user_changed,
)

if TYPE_CHECKING:
    from serve.services.model_registry import LoadedModel, ModelRegistry


TASK = "reanalyze_photos"  # its name in serve.services.tasks.TASKS
KEEP_ID_IOU = 0.5  # an old item id goes to the new item whose box overlaps it at least this

# How a task gets the model an activation names: (sha256, path) -> the loaded model, or None
# when this process cannot have it now (a service process that has not adopted it yet).
ModelSource = Callable[[str, Path], "LoadedModel | None"]

log = logging.getLogger("traylens.reanalysis")

# --- the photos and the model --------------------------------------------------------------


def load_photos(unit: Unit, store: ImageStore, settings: Settings,
                fit: tuple[int, int]) -> None:
    """Decode the unit's stored photos (and depth maps) as an upload is decoded; sets
    unit.skip when one is missing or unreadable."""
    for member in unit.members:
        data = store.get(member.image_sha256)
        depth_data = store.get(member.depth_sha256) if member.depth_sha256 else None
        if data is None or (member.depth_sha256 and depth_data is None):
            unit.skip = Skip.PHOTO_MISSING
            return
        try:
            image, _ = decode_photo(data, settings.max_pixels, fit=fit)
            depth = decode_depth(depth_data, full_size(image)) if depth_data else None
        except ApiError:
            unit.skip = Skip.PHOTO_UNREADABLE
            return
        unit.photos.append(ImageRequest(image, px_per_cm=member.px_per_cm, depth_mm=depth))


def run_model(units: list[Unit], loaded: LoadedModel, settings: Settings,
              slots: threading.BoundedSemaphore | None) -> None:
    """The pipeline over every photo of these units (batched); a unit the model fails on
    alone is skipped (`failed`), the others keep their results."""

    def run(requests: list[ImageRequest]) -> list[ImageResult]:
        with slots or nullcontext():  # in a service process: queued with the requests' runs
            results, _ = analyze(loaded.model, requests, batch_size=settings.batch_size,
                                 top_k=settings.top_k, review_below=settings.review_below,
                                 refine_masks=settings.refine_masks)
        return results

    try:
        results = iter(run([p for u in units for p in u.photos]))
        for unit in units:
            unit.results = [next(results) for _ in unit.photos]
        return
    except Exception:  # a photo the model cannot take: find it, keep the rest
        log.exception("re-analysis batch failed; running its photos one unit at a time")
    for unit in units:
        try:
            unit.results = run(unit.photos)
        except Exception:
            log.exception("re-analysis of %s failed", [m.id for m in unit.members])
            unit.skip = Skip.FAILED


# --- the replacement -----------------------------------------------------------------------


def keep_ids(old: Sequence[tuple[str, Sequence[float]]], new: Sequence[Sequence[float]]
             ) -> list[str | None]:
    """For each new box, the id of the old item it clearly is (IoU >= KEEP_ID_IOU, one to
    one, the best overlaps first), else None."""
    overlaps = sorted(((pair_iou(ob, nb), i, j) for i, (_, ob) in enumerate(old)
                       for j, nb in enumerate(new) if len(ob) == 4 and len(nb) == 4),
                      key=lambda t: (-t[0], t[1], t[2]))
    kept: list[str | None] = [None] * len(new)
    used: set[int] = set()
    for iou, i, j in overlaps:
        if iou < KEEP_ID_IOU:
            break
        if i not in used and kept[j] is None:
            used.add(i)
            kept[j] = old[i][0]
    return kept


@dataclass(frozen=True)
class Replaced:
    """Item ids of one replaced analysis."""

    kept: list[str]
    removed: list[str]
    added: list[str]


def _replace_items(session: Session, member: Member, result: ImageResult) -> Replaced:
    """Swap one analysis's items for the new result's, under row locks; LostClaim when a user
    changed an item since the run was claimed."""
    old = session.execute(select(AnalysisItem.id, AnalysisItem.box, AnalysisItem.provenance,
                                 AnalysisItem.corrected_at, AnalysisItem.removed_at)
                          .where(AnalysisItem.analysis_id == member.id)
                          .order_by(AnalysisItem.position).with_for_update()).all()
    if any(r.provenance != Provenance.MODEL.value or r.corrected_at is not None
           or r.removed_at is not None for r in old) or session.scalar(
            select(func.count()).select_from(ItemCorrection)
            .where(ItemCorrection.analysis_id == member.id)):
        raise LostClaim
    ids = keep_ids([(r.id, r.box or []) for r in old], [i.box for i in result.items])
    rows = [item_row(item, n) for n, item in enumerate(result.items)]
    for row, kept in zip(rows, ids, strict=True):
        row.id, row.analysis_id = kept or new_id(), member.id
    session.execute(delete(AnalysisItem).where(AnalysisItem.analysis_id == member.id)
                    .execution_options(synchronize_session=False))
    insert_rows(session, rows)
    kept_ids = [k for k in ids if k is not None]
    return Replaced(kept_ids, [r.id for r in old if r.id not in set(kept_ids)],
                    [row.id for row, k in zip(rows, ids, strict=True) if k is None])


def _event(session: Session, unit: Unit, member: Member, target: Target, done: Replaced,
           claim_id: str, now: dt.datetime) -> None:
    """The `analysis_reanalyzed` webhook deliveries, in the replacing transaction."""
    user = session.get(User, member.user_id) if member.user_id else None
    hooks = webhooks.recipients(session, member.canteen_id, user,
                                webhooks.EVENT_ANALYSIS_REANALYZED)
    data = {"analysis_id": member.id, "canteen_id": member.canteen_id,
            "kiosk_id": member.kiosk_id, "user_id": member.user_id,
            "external_ref": user.external_ref if user else None, "pair_id": unit.pair_id,
            "model_version": target.version, "previous_model_version": member.version,
            "reanalyzed_at": utc_iso(now),
            "items": {"kept": done.kept, "removed": done.removed, "added": done.added}}
    for hook in hooks:
        webhooks.enqueue(session, hook, webhooks.EVENT_ANALYSIS_REANALYZED, data,
                         dedupe_key=f"analysis_reanalyzed:{claim_id}", now=now,
                         user_id=member.user_id)


def replace(factory: sessionmaker[Session], target: Target, unit: Unit,
            now: dt.datetime) -> bool:
    """Write the unit's new items in one transaction; False (nothing written) when another
    worker took the claim over or an analysis changed since it was claimed."""
    try:
        with transaction(factory) as session:
            # First the claims (this worker's still?), then each analysis by compare-and-set
            # on the version it had: both lock their rows (PostgreSQL) or take SQLite's one
            # write lock, so the checks below see every change committed before them.
            close_claims(session, target, unit, DONE, None, now)
            for member, result in zip(unit.members, unit.results, strict=True):
                moved = session.execute(
                    update(Analysis).where(Analysis.id == member.id,
                                           Analysis.model_version == member.version,
                                           Analysis.menu_id.is_(None),
                                           Analysis.layout.is_(None))
                    .values(model_version=result.model_version,
                            previous_model_version=member.version, reanalyzed_at=now,
                            scale_source=result.scale_source, px_per_cm=result.px_per_cm,
                            masks=result.masks, totals=result.totals,
                            incomplete_nutrients=result.totals["incomplete_nutrients"])
                    .execution_options(synchronize_session=False))
                if rowcount(moved) != 1:
                    raise LostClaim
                done = _replace_items(session, member, result)
                claim_id = session.scalar(select(Reanalysis.id).where(
                    Reanalysis.model_version_id == target.activation_id,
                    Reanalysis.analysis_id == member.id))
                _event(session, unit, member, target, done, str(claim_id), now)
    except LostClaim:
        return False
    return True


# --- one run -------------------------------------------------------------------------------


def _round(factory: sessionmaker[Session], store: ImageStore, settings: Settings,
           target: Target, loaded: LoadedModel, ids: Sequence[str],
           slots: threading.BoundedSemaphore | None) -> int:
    """Claim, run and write the units of these candidates; how many analyses were
    re-analysed."""
    now = utcnow()
    with factory() as session:
        units, lone = units_of(session, target, ids)
    if lone:
        skip_lone(factory, target, lone, now)
    mine = [u for u in units if claim(factory, target, u, now)]
    try:
        for unit in mine:
            load_photos(unit, store, settings, loaded.model.meta.input_size)
        ready = [u for u in mine if u.skip is None]
        if ready:
            run_model(ready, loaded, settings, slots)
    finally:
        release_memory()  # the decodes' and the run's freed pages go back to the OS
    done = 0
    for unit in mine:
        if unit.skip is not None:
            skip(factory, target, unit, unit.skip, utcnow())
        elif replace(factory, target, unit, utcnow()):
            done += len(unit.members)
        else:
            skip(factory, target, unit, Skip.CHANGED, utcnow())
    return done


def reanalyze(factory: sessionmaker[Session], settings: Settings, store: ImageStore,
              models: ModelSource | None, *, slots: threading.BoundedSemaphore | None = None,
              send: Callable[[str], None] | None = None,
              stopping: threading.Event | None = None) -> int:
    """One bounded run for the active model: at most reanalysis_max_per_run candidates,
    reanalysis_batch at a time (when the process is `stopping`, up to the current round);
    when it stops with more to do, `send` enqueues the next run. How many analyses were
    re-analysed."""
    days = settings.reanalysis_lookback_days
    if days <= 0 or models is None:
        return 0
    with factory() as session:
        target = current_target(session)
    if target is None:
        return 0
    loaded = models(target.sha256, target.path)
    if loaded is None or loaded.version != target.version:
        log.info("re-analysis to %s waits: this process has not loaded it yet", target.version)
        return 0
    budget, tried, done = settings.reanalysis_max_per_run, 0, 0
    while tried < budget and not (stopping is not None and stopping.is_set()):
        now = utcnow()
        with factory() as session:
            ids = candidates(session, target, now - dt.timedelta(days=days), now,
                             min(settings.reanalysis_batch, budget - tried))
        if not ids:
            break
        tried += len(ids)
        done += _round(factory, store, settings, target, loaded, ids, slots)
    else:
        if send is not None and _more(factory, target, days):
            send(TASK)  # the rest in the next run, after whatever else is queued
    if done:
        log.info("re-analysed %d photo(s) with model %s", done, target.version)
    return done


def _more(factory: sessionmaker[Session], target: Target, days: int) -> bool:
    """Qualifying analyses remain."""
    now = utcnow()
    with factory() as session:
        return bool(candidates(session, target, now - dt.timedelta(days=days), now, 1))


def start(send: Callable[[str], None] | None, settings: Settings) -> bool:
    """Enqueue a run (after a model activation); False when re-analysis is off or there is
    no queue. A queue that cannot take it is logged, never fatal: the periodic run follows."""
    if send is None or settings.reanalysis_lookback_days <= 0:
        return False
    try:
        send(TASK)
    except Exception:
        log.exception("could not enqueue %s; the periodic run will do it", TASK)
        return False
    return True


def request_run(session: Session, settings: Settings, send: Callable[[str], None]
                ) -> dict[str, Any]:
    """POST /v1/model/reanalysis: enqueue a run now; where it stands (409 when off)."""
    if settings.reanalysis_lookback_days <= 0:
        raise ApiError(409, "reanalysis_off", "re-analysis is off "
                       "(TRAYLENS_REANALYSIS_LOOKBACK_DAYS is 0)")
    send(TASK)
    return progress(session, settings)


# --- the model a task runs -----------------------------------------------------------------


def registry_models(registry: ModelRegistry) -> ModelSource:
    """A service process's models: the one it serves, or one it served before; None for a
    model it has not adopted yet (its model sync will, and a later run goes on)."""

    def get(sha256: str, _path: Path) -> LoadedModel | None:
        active = registry.active
        if active.sha256 == sha256:
            return active
        return next((m for m in registry.history if m.sha256 == sha256), None)

    return get


class FileModels:
    """A worker's models: loaded from the file the activation names (data_dir/models must be
    shared with the service processes), the last one kept."""

    def __init__(self, intra_op_threads: int = 0) -> None:
        self._threads = intra_op_threads
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None

    def __call__(self, sha256: str, path: Path) -> LoadedModel | None:
        """The model of this hash (None when its file is missing or unusable)."""
        from serve.services.model_registry import load_model

        with self._lock:
            if self._loaded is None or self._loaded.sha256 != sha256:
                try:
                    loaded = load_model(path, intra_op_threads=self._threads)
                except ApiError as exc:
                    log.warning("re-analysis cannot load model %s: %s", path, exc.detail)
                    return None
                if loaded.sha256 != sha256:
                    log.warning("model file %s is not the active model %s", path, sha256[:12])
                    return None
                self._loaded = loaded
            return self._loaded


# --- progress ------------------------------------------------------------------------------


def progress(session: Session, settings: Settings, now: dt.datetime | None = None
             ) -> dict[str, Any]:
    """Where the re-analysis for the active model stands (GET /v1/model/reanalysis)."""
    target = current_target(session)
    if target is None:
        raise ApiError(503, "model_not_loaded", "no model is active yet")
    now = now or utcnow()
    days = settings.reanalysis_lookback_days
    since = now - dt.timedelta(days=days)
    outcome = func.coalesce(Reanalysis.reason, Reanalysis.status)  # a skip's reason
    rows: dict[str, int] = {str(key): int(n) for key, n in session.execute(
        select(outcome, func.count())
        .where(Reanalysis.model_version_id == target.activation_id,
               or_(Reanalysis.status != CLAIMED, Reanalysis.lease_until >= now))
        .group_by(outcome))}

    def count(*conditions: ColumnElement[bool]) -> int:
        if days <= 0:
            return 0
        return int(session.scalar(select(func.count()).select_from(Analysis).where(
            *made_with_another(target.version), Analysis.captured_at >= since,
            *conditions)) or 0)

    return {
        "model_version": target.version, "model_sha256": target.sha256,
        "activated_at": utc_iso(target.activated_at), "enabled": days > 0,
        "lookback_days": days, "since": utc_iso(since) if days > 0 else None,
        "remaining": count(*rerunnable(), ~settled(target, now)),
        "in_progress": rows.get(CLAIMED, 0),
        "reanalyzed": rows.get(DONE, 0),
        "skipped": {reason.value: rows.get(reason.value, 0) for reason in Skip},
        "not_eligible": {
            "corrected": count(user_changed()),
            "menu": count(Analysis.menu_id.is_not(None)),
            "layout": count(Analysis.layout.is_not(None)),
            "photo_purged": count(~photo_kept()),
        },
    }

