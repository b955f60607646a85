"""Before/after pairing of stored analyses: which after item is which served dish, and what
was eaten and left - from serve.services.matching, the one pairing core.

Two modes, chosen per pair:
- Layout: both photos were registered to the kiosk's tray layout ("registered") and their
  items carry `tray_slot` + `fill`: compartments pair by slot; leftover fraction = after
  fill / before fill (`leftovers.slot_leftovers`). Items outside any compartment go on to the
  next mode.
- Regions: after regions are assigned to before regions by appearance (embedding cosine)
  and place after the tray's own shift/turn, the label only a weak cue, in one optimal
  assignment (`matching.match_regions`); the leftover fraction is after / before mask area
  of the two regions (`leftovers.leftovers`). Items stored without an embedding pair by place
  (and label) only (`method` "position"). Areas are compared only between photos measured
  on the same masks (`TrayPhoto.masks`: the model's own, or refined to the food): otherwise
  the regions still pair, without the size bound, and each paired dish is not_measurable +
  masks_differ (a plate-shaped mask has the same area full or empty, a food-shaped one not).

In both, leftover grams = served grams (the before item's, corrected or not) x the leftover
fraction: never an after-photo gram estimate, which may come from another scale than the
before photo's. A pair keeps the before item's dish whatever the after photo called it. A
before item with no plausible after region is `fully_eaten` (the threshold is
`matching.MAX_MATCH_COST`); an after region with no before partner is `unmatched_after`,
listed but not counted as served or eaten.

The arithmetic is pure functions over plain records, so the API, the diary, the waste
report and the tests share one implementation; below it, the storage glue that decides which
two analyses form a pair and reads their items in batched column queries.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from model.infer.geometry import Box
from model.infer.menu_match import UNIDENTIFIED
from model.infer.refine import MODEL_MASKS
from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found, unprocessable
from serve.db.access import load_analysis
from serve.db.base import as_utc
from serve.db.tables.analyses import Analysis, AnalysisItem, MealState
from serve.db.tables.core import Role, User
from serve.db.tables.pairs import MealPair
from serve.services import webhooks
from serve.services.analyses import no_food_found
from serve.services.leftovers import (
    Leftover,
    LeftoverFlag,
    Measure,
    SlotFill,
    leftovers,
    slot_leftovers,
)
from serve.services.matching import MatchMethod, Region, match_regions

# One set of flag values for the core and the pair payload (serve.services.matching).
PairFlag = LeftoverFlag

# Analysis.layout of a photo registered to its kiosk's tray layout (compartments by place).
LAYOUT_REGISTERED = "registered"


def _nonneg(value: float | None, what: str, key: str) -> None:
    """A finite number >= 0 (or None), else ValueError."""
    if value is not None and (not math.isfinite(value) or value < 0):
        raise ValueError(f"item {key!r}: {what} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class TrayItem:
    """One item of a tray photo, as much of it as pairing needs (corrections included)."""

    key: str  # the dish it stands for: the menu dish id, else the food id, else "label:..."
    food_id: str | None  # None: the model's label maps to no food (no nutrients)
    grams: float | None  # None: no estimate (a region all the same)
    box: Box | None = None  # [x0, y0, x1, y1] in photo pixels
    area_px: float | None = None  # mask area in the same pixels; None: unknown
    embedding: tuple[float, ...] | None = None  # None: stored before embeddings were kept
    ref: str | int | None = None  # the stored item's id, carried through for links
    label: str | None = None  # the model's label
    dish_id: str | None = None  # the menu dish, when identified by the menu
    name_en: str | None = None
    name_ko: str | None = None
    tray_slot: str | None = None  # layout mode: the compartment
    fill: float | None = None  # layout mode: the share of the compartment that is food
    container: str | None = None  # what its box shows: "food" | "empty" | None (unknown)

    def __post_init__(self) -> None:
        """Grams, area and fill must be real, non-negative amounts."""
        _nonneg(self.grams, "grams", self.key)
        _nonneg(self.area_px, "area_px", self.key)
        _nonneg(self.fill, "fill", self.key)

    @property
    def slotted(self) -> bool:
        """Measured as a compartment of a tray layout."""
        return self.tray_slot is not None and self.fill is not None


@dataclass(frozen=True)
class TrayPhoto:
    """The items of one analysed photo and what pairing needs to know about the photo."""

    items: tuple[TrayItem, ...]
    layout: str | None = None  # Analysis.layout: "registered" | "not_found" | None
    width: int | None = None  # photo width: after areas are rescaled to the before photo's
    model_version: str | None = None  # embeddings of different models are not compared
    masks: str | None = None  # Analysis.masks: "model" | "refined"; None: the model's


@dataclass(frozen=True)
class PairedItem:
    """Served, eaten and left grams of one dish on one tray, with how they were measured."""

    key: str  # the before item's dish key (the after item's for unmatched_after)
    dish_id: str | None
    food_id: str | None  # the before item's (maybe corrected) food, whatever after said
    name_en: str | None
    name_ko: str | None
    before_ref: str | int | None  # the stored before item's id
    after_ref: str | int | None  # the stored after item's id
    after_food_id: str | None  # what the after photo called it
    before_g: float | None  # the before item's grams (None: no estimate)
    served_g: float  # before_g, 0 without one; 0 for unmatched_after
    eaten_g: float
    leftover_g: float
    leftover_fraction: float | None  # share left in [0, 1]; None: not measured
    leftover_pct: float | None
    method: MatchMethod  # slot | appearance | position | none
    match_score: float  # how sure the pairing is, in [0, 1]
    measure: Measure | None  # fill | area | volume; None: nothing compared
    flags: tuple[LeftoverFlag, ...] = ()


@dataclass(frozen=True)
class PairResult:
    """All items of one before/after pair, with tray totals (unmatched after items are
    listed, never counted)."""

    items: tuple[PairedItem, ...]
    served_g: float
    eaten_g: float
    leftover_g: float
    leftover_pct: float | None

    def eaten(self) -> list[tuple[str, float]]:
        """(food_id, grams eaten) of the served items with a known food: nutrient input."""
        return [(p.food_id, p.eaten_g) for p in self.items
                if p.food_id is not None and PairFlag.UNMATCHED_AFTER not in p.flags]


def _pct(part: float, whole: float) -> float | None:
    """Percentage rounded to 0.1, or None when the whole is zero."""
    return round(100.0 * part / whole, 1) if whole > 0 else None


def _served(before: TrayItem, fraction: float | None, method: MatchMethod, score: float,
            measure: Measure | None, flags: tuple[LeftoverFlag, ...],
            after: TrayItem | None) -> PairedItem:
    """A served dish's result: leftover = served grams x the measured share left.

    Without a measured share (not_measurable) the dish counts as eaten in full, like a tray
    without an after photo, and says so by its flag and a null fraction.
    """
    served = round(before.grams, 1) if before.grams is not None else 0.0
    left = 0.0 if fraction is None else round(served * fraction, 1)
    return PairedItem(before.key, before.dish_id, before.food_id, before.name_en,
                      before.name_ko, before.ref, None if after is None else after.ref,
                      None if after is None else after.food_id, before.grams, served,
                      round(served - left, 1), left,
                      None if fraction is None else round(fraction, 4),
                      None if fraction is None else round(100.0 * fraction, 1),
                      method, round(score, 3), measure, flags)


def _extra(after: TrayItem, method: MatchMethod, score: float,
           measure: Measure | None) -> PairedItem:
    """An after item that no served dish explains: listed, not served, not eaten."""
    return PairedItem(after.key, after.dish_id, after.food_id, after.name_en, after.name_ko,
                      None, after.ref, after.food_id, None, 0.0, 0.0, 0.0, None, None, method,
                      round(score, 3), measure, (PairFlag.UNMATCHED_AFTER,))


# --- layout mode: compartments by slot ----------------------------------------------------


def _by_slot(before: Sequence[tuple[int, TrayItem]], after: Sequence[tuple[int, TrayItem]]
             ) -> list[tuple[tuple[int, int], PairedItem]]:
    """Slot pairs: every before item of a slot takes the slot's after / before fill."""
    fills: dict[str, float] = {}
    for _, b in before:
        fills[b.tray_slot or ""] = fills.get(b.tray_slot or "", 0.0) + (b.fill or 0.0)
    after_fills: dict[str, float] = dict.fromkeys(fills, 0.0)  # a compartment not read: empty
    for _, a in after:
        after_fills[a.tray_slot or ""] = after_fills.get(a.tray_slot or "", 0.0) + (a.fill or 0.0)
    results = {lo.key: lo for lo in slot_leftovers(
        {s: SlotFill(f) for s, f in fills.items()}, after_fills)}
    first_after: dict[str, tuple[int, TrayItem]] = {}
    for n, a in after:
        first_after.setdefault(a.tray_slot or "", (n, a))
    out: list[tuple[tuple[int, int], PairedItem]] = []
    for n, b in before:
        lo = results.get(b.tray_slot or "")
        partner = first_after.get(b.tray_slot or "")
        a_item = None if partner is None or (lo is not None and lo.fraction == 0) else partner[1]
        if lo is None or LeftoverFlag.UNMATCHED_AFTER in lo.flags:  # served empty (fill 0)
            out.append(((0, n), _served(b, None, MatchMethod.SLOT, 1.0, Measure.FILL,
                                        (PairFlag.NOT_MEASURABLE,), a_item)))
            continue
        out.append(((0, n), _served(b, lo.fraction, MatchMethod.SLOT, lo.score, lo.measure,
                                    lo.flags, a_item)))
    out += [((1, n), _extra(a, MatchMethod.SLOT, 1.0, Measure.FILL)) for n, a in after
            if (lo := results.get(a.tray_slot or "")) is not None
            and LeftoverFlag.UNMATCHED_AFTER in lo.flags]
    return out


# --- no layout: regions by appearance and place -------------------------------------------


def _box(item: TrayItem, scale: float) -> Box | None:
    """The item's box in before-photo pixels, or None when it has no usable box."""
    if item.box is None or len(item.box) != 4:
        return None
    x0, y0, x1, y1 = (float(v) * scale for v in item.box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def _region(n: int, item: TrayItem, box: Box, scale: float, embed: bool,
            sized: bool) -> Region:
    """A stored item as a matching region. Area 0 (not measurable, no size bound in
    matching) when unknown, or when not `sized`: measured on other masks than the other
    photo's, so no measure of the two sizes means anything."""
    area = 0.0 if item.area_px is None or not sized else item.area_px * scale * scale
    vec = np.asarray(item.embedding, dtype=np.float64) if embed and item.embedding else None
    if vec is not None and not (np.all(np.isfinite(vec)) and np.any(vec)):
        vec = None  # a broken stored embedding: place and label only
    # "unidentified" is no name: it neither agrees nor disagrees with the other photo's.
    label = None if item.label == UNIDENTIFIED else item.label
    return Region(str(n), box, area, vec, label, item.food_id, None, item.grams,
                  item.container)


def _comparable_embeddings(before: Sequence[TrayItem], after: Sequence[TrayItem],
                           same_model: bool) -> bool:
    """Cosines mean something only between embeddings of one model (one dimension)."""
    dims = {len(i.embedding) for i in (*before, *after) if i.embedding is not None}
    return same_model and len(dims) <= 1


def _from_leftover(lo: Leftover, b: TrayItem, a: TrayItem | None) -> PairedItem:
    """A matched or fully eaten dish; an area ratio needs both areas known."""
    if a is not None and lo.measure is Measure.AREA and a.area_px is None:
        flags = tuple(f for f in lo.flags if f is not PairFlag.AFTER_EXCEEDS_BEFORE)
        return _served(b, None, lo.method, lo.score, None,
                       (*flags, PairFlag.NOT_MEASURABLE), a)
    return _served(b, lo.fraction, lo.method, lo.score, lo.measure, lo.flags, a)


def _same_masks(before: TrayPhoto, after: TrayPhoto) -> bool:
    """Both photos' areas come from masks made the same way (None: the model's own)."""
    return (before.masks or MODEL_MASKS) == (after.masks or MODEL_MASKS)


def _by_region(before: Sequence[tuple[int, TrayItem]], after: Sequence[tuple[int, TrayItem]],
               scale: float, same_model: bool, same_masks: bool
               ) -> list[tuple[tuple[int, int], PairedItem]]:
    """One optimal assignment of after regions to before regions, leftovers by area ratio
    (none across two mask methods: `same_masks` False)."""
    embed = _comparable_embeddings([b for _, b in before], [a for _, a in after], same_model)
    out: list[tuple[tuple[int, int], PairedItem]] = []
    rb: list[tuple[int, TrayItem, Region]] = []
    ra: list[tuple[int, TrayItem, Region]] = []
    for n, b in before:
        if (box := _box(b, 1.0)) is None:  # no region to look for: nothing to measure
            out.append(((0, n), _served(b, None, MatchMethod.NONE, 0.0, None,
                                        (PairFlag.NOT_MEASURABLE,), None)))
        else:
            rb.append((n, b, _region(n, b, box, 1.0, embed, same_masks)))
    for n, a in after:
        if (box := _box(a, scale)) is None:
            out.append(((1, n), _extra(a, MatchMethod.NONE, 0.0, None)))
        else:
            ra.append((n, a, _region(n, a, box, scale, embed, same_masks)))
    regions_b, regions_a = [r for *_, r in rb], [r for *_, r in ra]
    for lo in leftovers(regions_b, regions_a, match_regions(regions_b, regions_a),
                        comparable=same_masks):
        if lo.before_index is None:
            assert lo.after_index is not None
            n, a, _ = ra[lo.after_index]
            out.append(((1, n), _extra(a, lo.method, lo.score, lo.measure)))
            continue
        n, b, _ = rb[lo.before_index]
        a_item = None if lo.after_index is None else ra[lo.after_index][1]
        out.append(((0, n), _from_leftover(lo, b, a_item)))
    return out


def _as_photo(photo: TrayPhoto | Sequence[TrayItem]) -> TrayPhoto:
    """A bare list of items is a photo without layout, of unknown size."""
    return photo if isinstance(photo, TrayPhoto) else TrayPhoto(tuple(photo))


def _scale(before: TrayPhoto, after: TrayPhoto) -> float:
    """Factor taking after-photo pixels to before-photo pixels (1 when a size is unknown)."""
    if before.width and after.width:
        return before.width / after.width
    return 1.0


def pair_meal(before: TrayPhoto | Sequence[TrayItem],
              after: TrayPhoto | Sequence[TrayItem]) -> PairResult:
    """Pair two photos of one tray: per item and tray totals of served, eaten and left."""
    b, a = _as_photo(before), _as_photo(after)
    rest_b, rest_a = list(enumerate(b.items)), list(enumerate(a.items))
    keyed: list[tuple[tuple[int, int], PairedItem]] = []
    if b.layout == a.layout == LAYOUT_REGISTERED and any(i.slotted for _, i in rest_b):
        keyed += _by_slot([p for p in rest_b if p[1].slotted], [p for p in rest_a if p[1].slotted])
        rest_b = [p for p in rest_b if not p[1].slotted]
        rest_a = [p for p in rest_a if not p[1].slotted]
    same_model = b.model_version == a.model_version
    keyed += _by_region(rest_b, rest_a, _scale(b, a), same_model, _same_masks(b, a))
    # before order first, then the after items nothing explains, for stable output
    items = tuple(item for _, item in sorted(keyed, key=lambda k: k[0]))
    served = round(sum(p.served_g for p in items), 1)
    leftover = round(sum(p.leftover_g for p in items), 1)
    return PairResult(items, served, round(served - leftover, 1), leftover,
                      _pct(leftover, served))


# --- storage glue: which analyses form a pair, and their items as TrayItems ---------------


# The columns pairing reads: reports select just these, not whole items (whose JSON columns -
# alternatives, polygon, nutrients - would dominate the time of a month's report). The
# embedding (64 rounded floats) is the one JSON column matching needs.
ITEM_COLUMNS = (AnalysisItem.analysis_id, AnalysisItem.position, AnalysisItem.id,
                AnalysisItem.food_id, AnalysisItem.label, AnalysisItem.menu_dish_id,
                AnalysisItem.name_en, AnalysisItem.name_ko, AnalysisItem.grams,
                AnalysisItem.box, AnalysisItem.area_px, AnalysisItem.embedding,
                AnalysisItem.tray_slot, AnalysisItem.fill, AnalysisItem.container)
PHOTO_COLUMNS = (Analysis.id, Analysis.layout, Analysis.image_width, Analysis.model_version,
                 Analysis.masks)


def as_tray_item(item: Any) -> TrayItem:
    """A stored item (ORM object or ITEM_COLUMNS row) as pairing input; corrections already
    live in its fields (food, names, grams)."""
    box: Box | None = None
    if item.box and len(item.box) == 4:
        box = (float(item.box[0]), float(item.box[1]), float(item.box[2]), float(item.box[3]))
    key = item.menu_dish_id or item.food_id or f"label:{item.label}"
    embedding = tuple(item.embedding) if item.embedding else None  # JSON numbers: floats
    return TrayItem(key=key, food_id=item.food_id, grams=item.grams, box=box,
                    area_px=item.area_px, embedding=embedding, ref=item.id, label=item.label,
                    dish_id=item.menu_dish_id, name_en=item.name_en, name_ko=item.name_ko,
                    tray_slot=item.tray_slot, fill=item.fill, container=item.container)


def tray_items(analysis: Analysis) -> list[TrayItem]:
    """An analysis's items as pairing input."""
    return [as_tray_item(item) for item in analysis.items]


def tray_photo(analysis: Analysis) -> TrayPhoto:
    """An analysis as pairing input."""
    return TrayPhoto(tuple(tray_items(analysis)), analysis.layout, analysis.image_width,
                     analysis.model_version, analysis.masks)


def open_pair(session: Session, before: Analysis) -> MealPair:
    """Start a pair from a `before` analysis (idempotent: one pair per before photo); 422
    when the before photo holds no food item (see link_analysis)."""
    if before.meal_state != MealState.BEFORE.value:
        raise unprocessable(f"analysis {before.id} is not a 'before' photo "
                            f"(meal_state={before.meal_state!r})", code="not_before")
    pair = session.scalar(select(MealPair).where(MealPair.before_analysis_id == before.id))
    if pair is None:
        if no_food_found(before):
            raise unprocessable(f"analysis {before.id} holds no food item: nothing was "
                                "served to pair (add its items first)", code="no_food_before")
        pair = MealPair(canteen_id=before.canteen_id, kiosk_id=before.kiosk_id,
                        user_id=before.user_id, before_analysis_id=before.id,
                        before_at=as_utc(before.captured_at))
        session.add(pair)
        session.flush()
    return pair


def find_open_pair(session: Session, after: Analysis, window: dt.timedelta) -> MealPair | None:
    """The latest unpaired `before` of the same user at the same kiosk within the window."""
    if after.user_id is None:  # without a person, a busy kiosk's trays cannot be told apart
        return None
    at = as_utc(after.captured_at)
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
    if as_utc(after.captured_at) < as_utc(pair.before_at):
        raise unprocessable("the after photo was taken before the before photo",
                            code="pair_order")
    was_open = pair.after_analysis_id is None
    pair.after_analysis_id = after.id
    pair.after_at = as_utc(after.captured_at)
    session.flush()
    if was_open:  # the outbox row commits or rolls back with the close itself
        webhooks.emit_pair_closed(session, pair, lambda: pair_of(session, pair))
    return pair


def link_analysis(session: Session, analysis: Analysis, *, pair_id: str | None,
                  window: dt.timedelta) -> MealPair | None:
    """What the analyze pipeline calls after storing an analysis with a meal_state.

    before -> opens a pair, unless no food was found on it (None): a pair served nothing
    would count a tray in the waste reports and leave the real after photo's food
    unmatched, so the user's next after photo pairs with an earlier open before, or none;
    after -> closes the named pair (pair_id, 404 if unknown) or the user's latest open pair
    at the same kiosk within `window` (None when there is none). An after photo with no
    food closes its pair like any other: everything served was eaten.
    """
    if analysis.meal_state == MealState.BEFORE.value:
        return None if no_food_found(analysis) else open_pair(session, analysis)
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


def photos_by_analysis(session: Session, ids: Sequence[str]) -> dict[str, TrayPhoto]:
    """Pairing input for many analyses in a few batched column queries."""
    items: dict[str, list[TrayItem]] = {i: [] for i in ids}
    photos: dict[str, Any] = {}
    for n in range(0, len(ids), BATCH_IDS):
        batch = ids[n:n + BATCH_IDS]
        photos.update((row.id, row) for row in session.execute(
            select(*PHOTO_COLUMNS).where(Analysis.id.in_(batch))))
        rows = session.execute(select(*ITEM_COLUMNS)
                               .where(AnalysisItem.analysis_id.in_(batch),
                                      AnalysisItem.removed_at.is_(None))  # user removed
                               .order_by(AnalysisItem.analysis_id, AnalysisItem.position))
        for row in rows:
            items[row.analysis_id].append(as_tray_item(row))
    return {i: TrayPhoto(tuple(items[i]), photos[i].layout, photos[i].image_width,
                         photos[i].model_version, photos[i].masks)
            for i in ids if i in photos}


def pair_results(session: Session, pairs: Sequence[MealPair]) -> list[PairResult]:
    """Results of many closed pairs from a few batched queries (reports span thousands of
    trays), computed from the current - maybe corrected - items."""
    ids: list[tuple[str, str]] = []
    for pair in pairs:
        if pair.after_analysis_id is None:
            raise ApiError(409, "pair_open", f"pair {pair.id} has no after photo yet")
        ids.append((pair.before_analysis_id, pair.after_analysis_id))
    photos = photos_by_analysis(session, list(dict.fromkeys(i for both in ids for i in both)))
    return [pair_meal(photos[before], photos[after]) for before, after in ids]


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
