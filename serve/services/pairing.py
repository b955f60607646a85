"""Before/after arithmetic: match a tray's items across two photos and work out what was eaten.

The arithmetic is pure functions over plain records, so the pipeline, the diary, the waste
report and the tests share one implementation; below it, the storage glue that decides which
two analyses form a pair.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from model.infer.geometry import Box, pair_iou
from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found, unprocessable
from serve.db.access import load_analysis
from serve.db.tables.analyses import Analysis, AnalysisItem, MealState
from serve.db.tables.core import Role, User
from serve.db.tables.pairs import MealPair

# Position alone may pair two items of different labels only when they overlap this much:
# the kiosk shoots the same tray from the same place, a relabelled leftover stays put.
RELABEL_MIN_IOU = 0.5


class PairFlag(StrEnum):
    """Why a paired item needs a second look."""

    FULLY_EATEN = "fully_eaten"  # served, absent from the after photo
    ONLY_AFTER = "only_after"  # on the after photo only: not counted as served or eaten
    AFTER_EXCEEDS_BEFORE = "after_exceeds_before"  # clamped: never a negative intake
    RELABELLED = "relabelled"  # matched by position although the labels differ


@dataclass(frozen=True)
class TrayItem:
    """One identified item of a tray photo, as much of it as pairing needs."""

    key: str  # what must agree across photos: the menu dish id, else the food id or label
    food_id: str | None  # None: the model's label maps to no food (no nutrients)
    grams: float
    box: Box | None = None
    embedding: tuple[float, ...] | None = None
    ref: str | int | None = None  # the stored item's id, carried through for links

    def __post_init__(self) -> None:
        """Grams must be a real, non-negative amount."""
        if not math.isfinite(self.grams) or self.grams < 0:
            raise ValueError(f"item {self.key!r}: grams must be a finite number >= 0, "
                             f"got {self.grams!r}")


@dataclass(frozen=True)
class PairedItem:
    """Served, eaten and left grams of one dish on one tray."""

    key: str
    food_id: str | None
    before_ref: str | int | None
    after_ref: str | int | None
    before_g: float
    after_g: float
    served_g: float
    eaten_g: float
    leftover_g: float
    leftover_pct: float | None
    flags: tuple[PairFlag, ...] = ()


@dataclass(frozen=True)
class PairResult:
    """All items of one before/after pair, with tray totals."""

    items: tuple[PairedItem, ...]
    served_g: float
    eaten_g: float
    leftover_g: float
    leftover_pct: float | None

    def eaten(self) -> list[tuple[str, float]]:
        """(food_id, grams eaten) of the served items with a known food: nutrient input."""
        return [(p.food_id, p.eaten_g) for p in self.items
                if p.food_id is not None and PairFlag.ONLY_AFTER not in p.flags]


def similarity(a: TrayItem, b: TrayItem) -> float:
    """How alike two items look: mean of box overlap and embedding cosine, where known."""
    parts: list[float] = []
    if a.box is not None and b.box is not None:
        parts.append(pair_iou(a.box, b.box))
    if a.embedding is not None and b.embedding is not None:
        va, vb = np.asarray(a.embedding), np.asarray(b.embedding)
        norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
        parts.append(float(va @ vb) / norm if norm > 0 else 0.0)
    return sum(parts) / len(parts) if parts else 0.0


def _greedy(pairs: list[tuple[float, int, int]]) -> list[tuple[int, int]]:
    """Best-first one-to-one assignment; ties keep photo order so results are stable."""
    used_b: set[int] = set()
    used_a: set[int] = set()
    chosen: list[tuple[int, int]] = []
    for _, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
        if i not in used_b and j not in used_a:
            used_b.add(i)
            used_a.add(j)
            chosen.append((i, j))
    return chosen


def _unmatched(n: int, taken: set[int]) -> list[int]:
    """Indices 0..n-1 not yet taken."""
    return [i for i in range(n) if i not in taken]


def match_items(
    before: Sequence[TrayItem], after: Sequence[TrayItem]
) -> tuple[list[tuple[int, int, bool]], list[int], list[int]]:
    """Match after-items to before-items: same key, then same food (one photo analysed with
    the menu, the other without), then by position alone (flagged as relabelled).

    Returns (matches as (before index, after index, relabelled), unmatched before indices,
    unmatched after indices).
    """
    same = [(similarity(b, a), i, j) for i, b in enumerate(before)
            for j, a in enumerate(after) if b.key == a.key]
    matches = [(i, j, False) for i, j in _greedy(same)]
    left_b = _unmatched(len(before), {m[0] for m in matches})
    left_a = _unmatched(len(after), {m[1] for m in matches})
    same_food = [(similarity(before[i], after[j]), i, j) for i in left_b for j in left_a
                 if before[i].food_id is not None and before[i].food_id == after[j].food_id]
    matches += [(i, j, False) for i, j in _greedy(same_food)]
    left_b = _unmatched(len(before), {m[0] for m in matches})
    left_a = _unmatched(len(after), {m[1] for m in matches})
    by_place = [(pair_iou(bb, ab), i, j) for i in left_b for j in left_a
                if (bb := before[i].box) is not None and (ab := after[j].box) is not None
                and pair_iou(bb, ab) >= RELABEL_MIN_IOU]
    matches += [(i, j, True) for i, j in _greedy(by_place)]
    return (sorted(matches), _unmatched(len(before), {m[0] for m in matches}),
            _unmatched(len(after), {m[1] for m in matches}))


def _pct(part: float, whole: float) -> float | None:
    """Percentage rounded to 0.1, or None when the whole is zero."""
    return round(100.0 * part / whole, 1) if whole > 0 else None


def paired_item(before: TrayItem | None, after: TrayItem | None,
                relabelled: bool = False) -> PairedItem:
    """Served/eaten/leftover grams for one dish; the before photo names the dish."""
    if before is None and after is None:
        raise ValueError("a paired item needs a before item, an after item or both")
    if before is None:
        assert after is not None
        return PairedItem(after.key, after.food_id, None, after.ref, 0.0, after.grams,
                          0.0, 0.0, 0.0, None, (PairFlag.ONLY_AFTER,))
    flags: list[PairFlag] = [PairFlag.RELABELLED] if relabelled else []
    after_g = after.grams if after is not None else 0.0
    if after is None:
        flags.append(PairFlag.FULLY_EATEN)
    leftover = after_g
    if after_g > before.grams:
        flags.append(PairFlag.AFTER_EXCEEDS_BEFORE)
        leftover = before.grams
    eaten = before.grams - leftover
    return PairedItem(before.key, before.food_id, before.ref,
                      after.ref if after is not None else None, before.grams, after_g,
                      before.grams, eaten, leftover, _pct(leftover, before.grams), tuple(flags))


def pair_meal(before: Sequence[TrayItem], after: Sequence[TrayItem]) -> PairResult:
    """Pair two photos of one tray: per item and tray totals of served, eaten and left."""
    matches, lone_b, lone_a = match_items(before, after)
    # keyed by photo position: before order first, then after-only items, for stable output
    keyed = [((0, i), paired_item(before[i], after[j], rel)) for i, j, rel in matches]
    keyed += [((0, i), paired_item(before[i], None)) for i in lone_b]
    keyed += [((1, j), paired_item(None, after[j])) for j in lone_a]
    items = tuple(item for _, item in sorted(keyed, key=lambda k: k[0]))
    served = sum(p.served_g for p in items)
    leftover = sum(p.leftover_g for p in items)
    return PairResult(items, served, served - leftover, leftover, _pct(leftover, served))


# --- storage glue: which analyses form a pair, and their items as TrayItems ---------------


# The item columns pairing reads: reports select just these, not whole items (whose JSON
# columns - alternatives, polygon, nutrients - would dominate the time of a month's report).
ITEM_COLUMNS = (AnalysisItem.analysis_id, AnalysisItem.position, AnalysisItem.id,
                AnalysisItem.food_id, AnalysisItem.label, AnalysisItem.menu_dish_id,
                AnalysisItem.grams, AnalysisItem.box)


def as_tray_item(item: Any) -> TrayItem | None:
    """A stored item (ORM object or ITEM_COLUMNS row) as pairing input; corrections already
    live in its fields. None when it has no grams estimate (nothing to subtract)."""
    if item.grams is None:
        return None
    box: Box | None = None
    if item.box and len(item.box) == 4:
        box = (float(item.box[0]), float(item.box[1]), float(item.box[2]), float(item.box[3]))
    key = item.menu_dish_id or item.food_id or f"label:{item.label}"
    return TrayItem(key=key, food_id=item.food_id, grams=item.grams, box=box, ref=item.id)


def tray_items(analysis: Analysis) -> list[TrayItem]:
    """An analysis's items as pairing input."""
    return [t for item in analysis.items if (t := as_tray_item(item)) is not None]


def _utc(moment: dt.datetime) -> dt.datetime:
    """Aware UTC datetime (SQLite hands back naive UTC values)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def open_pair(session: Session, before: Analysis) -> MealPair:
    """Start a pair from a `before` analysis (idempotent: one pair per before photo)."""
    if before.meal_state != MealState.BEFORE.value:
        raise unprocessable(f"analysis {before.id} is not a 'before' photo "
                            f"(meal_state={before.meal_state!r})", code="not_before")
    pair = session.scalar(select(MealPair).where(MealPair.before_analysis_id == before.id))
    if pair is None:
        pair = MealPair(canteen_id=before.canteen_id, kiosk_id=before.kiosk_id,
                        user_id=before.user_id, before_analysis_id=before.id,
                        before_at=_utc(before.captured_at))
        session.add(pair)
        session.flush()
    return pair


def find_open_pair(session: Session, after: Analysis, window: dt.timedelta) -> MealPair | None:
    """The latest unpaired `before` of the same user at the same kiosk within the window."""
    if after.user_id is None:  # without a person, a busy kiosk's trays cannot be told apart
        return None
    at = _utc(after.captured_at)
    query = (select(MealPair)
             .where(MealPair.after_analysis_id.is_(None), MealPair.user_id == after.user_id,
                    MealPair.canteen_id == after.canteen_id,
                    MealPair.before_at <= at, MealPair.before_at >= at - window)
             .order_by(MealPair.before_at.desc()).limit(1))
    query = query.where(MealPair.kiosk_id.is_(None) if after.kiosk_id is None
                        else MealPair.kiosk_id == after.kiosk_id)
    return session.scalar(query)


def close_pair(session: Session, pair: MealPair, after: Analysis) -> MealPair:
    """Attach an `after` analysis to a pair; 409 when the pair already has another one."""
    if after.meal_state != MealState.AFTER.value:
        raise unprocessable(f"analysis {after.id} is not an 'after' photo "
                            f"(meal_state={after.meal_state!r})", code="not_after")
    if pair.after_analysis_id not in (None, after.id):
        raise ApiError(409, "pair_closed", f"pair {pair.id} already has after photo "
                       f"{pair.after_analysis_id}")
    if pair.before_analysis_id == after.id or after.canteen_id != pair.canteen_id:
        raise unprocessable(f"analysis {after.id} cannot close pair {pair.id}",
                            code="pair_mismatch")
    # another kiosk is fine (trays are returned elsewhere); another person is not
    if None not in (after.user_id, pair.user_id) and after.user_id != pair.user_id:
        raise unprocessable(f"pair {pair.id} is another user's tray", code="pair_mismatch")
    if _utc(after.captured_at) < _utc(pair.before_at):
        raise unprocessable("the after photo was taken before the before photo",
                            code="pair_order")
    pair.after_analysis_id = after.id
    pair.after_at = _utc(after.captured_at)
    session.flush()
    return pair


def link_analysis(session: Session, analysis: Analysis, *, pair_id: str | None,
                  window: dt.timedelta) -> MealPair | None:
    """What the analyze pipeline calls after storing an analysis with a meal_state.

    before -> opens a pair; after -> closes the named pair (pair_id, 404 if unknown) or the
    user's latest open pair at the same kiosk within `window` (None when there is none).
    """
    if analysis.meal_state == MealState.BEFORE.value:
        return open_pair(session, analysis)
    if analysis.meal_state != MealState.AFTER.value:
        return None
    if pair_id is not None:
        pair = session.get(MealPair, pair_id)
        if pair is None or pair.canteen_id != analysis.canteen_id:
            raise not_found("meal pair", pair_id)
        return close_pair(session, pair, analysis)
    pair = find_open_pair(session, analysis, window)
    return close_pair(session, pair, analysis) if pair is not None else None


def pair_of(session: Session, pair: MealPair) -> PairResult:
    """The pair's before/after result, computed from the current (maybe corrected) items."""
    return pair_results(session, [pair])[0]


# Bound on ids per IN (...) query: well under SQLite's variable limit and PostgreSQL's.
BATCH_IDS = 500


def items_by_analysis(session: Session, ids: Sequence[str]) -> dict[str, list[TrayItem]]:
    """Pairing input for many analyses in a few batched column queries."""
    out: dict[str, list[TrayItem]] = {i: [] for i in ids}
    for n in range(0, len(ids), BATCH_IDS):
        rows = session.execute(select(*ITEM_COLUMNS)
                               .where(AnalysisItem.analysis_id.in_(ids[n:n + BATCH_IDS]))
                               .order_by(AnalysisItem.analysis_id, AnalysisItem.position))
        for row in rows:
            if (item := as_tray_item(row)) is not None:
                out[row.analysis_id].append(item)
    return out


def pair_results(session: Session, pairs: Sequence[MealPair]) -> list[PairResult]:
    """Results of many closed pairs from a few batched queries (reports span thousands of
    trays), computed from the current - maybe corrected - items."""
    ids: list[tuple[str, str]] = []
    for pair in pairs:
        if pair.after_analysis_id is None:
            raise ApiError(409, "pair_open", f"pair {pair.id} has no after photo yet")
        ids.append((pair.before_analysis_id, pair.after_analysis_id))
    items = items_by_analysis(session, [i for both in ids for i in both])
    return [pair_meal(items[before], items[after]) for before, after in ids]


# --- the pairs clients read ----------------------------------------------------------------


def load_pair(session: Session, principal: Principal, pair_id: str) -> MealPair:
    """A pair whose before photo the caller may see (404 otherwise)."""
    pair = session.get(MealPair, pair_id)
    if pair is None:
        raise not_found("meal pair", pair_id)
    try:
        load_analysis(session, principal, pair.before_analysis_id)
    except ApiError as exc:  # another tenant's pair looks exactly like an unknown one
        raise not_found("meal pair", pair_id) from exc
    return pair


def create_pair(session: Session, principal: Principal, before_id: str,
                after_id: str | None) -> MealPair:
    """Open a pair from a before analysis (idempotent), closing it when an after is given."""
    before = load_analysis(session, principal, before_id)
    pair = open_pair(session, before)
    if after_id is not None:
        close_pair(session, pair, load_analysis(session, principal, after_id))
    return pair


def close_by_id(session: Session, principal: Principal, pair_id: str,
                after_id: str) -> MealPair:
    """Close a visible open pair with a visible after analysis."""
    pair = load_pair(session, principal, pair_id)
    return close_pair(session, pair, load_analysis(session, principal, after_id))


def list_pairs(session: Session, principal: Principal, *, kiosk_id: str | None,
               user_id: str | None, open_only: bool, limit: int) -> list[MealPair]:
    """Recent pairs the caller may see, newest first (open ones only with open_only)."""
    query = select(MealPair).order_by(MealPair.before_at.desc()).limit(limit)
    if principal.role is Role.APP:
        query = query.join(User, User.id == MealPair.user_id).where(
            User.app_key_id == principal.key_id)
    elif not principal.is_admin:
        query = query.where(MealPair.canteen_id == principal.canteen_id)
    if kiosk_id is not None:
        query = query.where(MealPair.kiosk_id == kiosk_id)
    if user_id is not None:
        query = query.where(MealPair.user_id == user_id)
    if open_only:
        query = query.where(MealPair.after_analysis_id.is_(None))
    return list(session.scalars(query))
