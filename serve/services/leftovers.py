"""Leftovers of matched before/after regions, and of a kiosk layout's slots (numpy only).

The ratio of the two regions measured the same way - depth volume when both have it, else
mask area in pixels - times the before grams; never two gram estimates made by different
methods, nor two areas or volumes integrated over masks made two ways (`comparable`). A
matched pair keeps the before region's dish. With a layout, slots pair by name
and the leftover is after fill / before fill. Every `Leftover` says how it was obtained
(`method`, `measure`) and how sure the pairing is (`score`, see serve.services.matching).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from model.infer.refine import EMPTY_CONTAINER, FOOD_IN_CONTAINER
from serve.services.matching import (
    MatchConfig,
    Matching,
    MatchInputError,
    MatchMethod,
    Region,
    RegionPair,
    finite_nonneg,
)


class Measure(StrEnum):
    """What was compared between the two photos."""

    VOLUME = "volume"  # depth volume of both regions
    AREA = "area"  # mask area in pixels of both regions
    FILL = "fill"  # compartment fill of both photos


class LeftoverFlag(StrEnum):
    """Why a result needs a second look (values shared with serve.pairing.PairFlag)."""

    FULLY_EATEN = "fully_eaten"  # served, and no after region plausibly is it
    UNMATCHED_AFTER = "unmatched_after"  # on the after photo only: not food served
    AFTER_EXCEEDS_BEFORE = "after_exceeds_before"  # ratio > 1, clipped to 1
    RELABELLED = "relabelled"  # paired although the two photos name it differently
    WEAK_MATCH = "weak_match"  # paired, but with a score below WEAK_MATCH_SCORE
    NOT_MEASURABLE = "not_measurable"  # paired, but no area/volume of both to compare
    MASKS_DIFFER = "masks_differ"  # with not_measurable: the photos' masks made two ways
    # The before region's box held food in a container, the after region's shows the
    # container empty: eaten (share left 0), whatever the two areas say.
    CONTAINER_EMPTIED = "container_emptied"


@dataclass(frozen=True)
class Leftover:
    """Served, left and eaten of one dish (or one unserved after region), with provenance."""

    key: str  # the before region's key (its dish) or the slot; after key if unmatched_after
    food_id: str | None  # the before region's food, whatever the after photo called it
    before_index: int | None  # None: slot mode, or an unmatched after region
    after_index: int | None  # None: slot mode, or fully eaten
    fraction: float | None  # share left, in [0, 1]; None when it cannot be measured
    ratio: float | None  # the measured after / before before clipping
    leftover_g: float | None  # before grams x fraction (None without before grams)
    eaten_g: float | None  # before grams - leftover_g
    method: MatchMethod
    measure: Measure | None
    score: float  # how sure the pairing is, in [0, 1]
    flags: tuple[LeftoverFlag, ...] = ()


class SlotFill(NamedTuple):
    """A compartment's fill (>= 0; 1 = as full as the layout's reference) and grams."""

    fill: float
    grams: float | None = None


# --- leftovers -----------------------------------------------------------------------------


def _measured(b: Region, a: Region) -> tuple[Measure | None, float | None]:
    """The after / before ratio measured the same way on both: volume, else mask area."""
    if b.volume_ml is not None and a.volume_ml is not None and b.volume_ml > 0:
        return Measure.VOLUME, a.volume_ml / b.volume_ml
    if b.area_px > 0:
        return Measure.AREA, a.area_px / b.area_px
    return None, None


def _grams(grams: float | None, fraction: float | None) -> tuple[float | None, float | None]:
    """(leftover g, eaten g) from the served grams and the share left."""
    if grams is None or fraction is None:
        return None, None
    left = grams * fraction
    return left, grams - left


def emptied(b: Region, a: Region) -> bool:
    """The before region held food in its container and the after region shows it empty
    (model.infer.refine.container_state on each photo): the dish was eaten. A plate's mask
    keeps the plate's area, full or empty, so the area ratio cannot say it."""
    return b.container == FOOD_IN_CONTAINER and a.container == EMPTY_CONTAINER


def _paired(b: Region, a: Region, pair: RegionPair, weak: float,
            comparable: bool) -> Leftover:
    """Leftover of a matched pair: the before dish, the same-method ratio (none when the
    two regions' masks were made two ways), or eaten when its container was emptied."""
    measure, ratio = _measured(b, a) if comparable else (None, None)
    flags: list[LeftoverFlag] = []
    fraction = None
    if emptied(b, a):
        measure, ratio, fraction = None, None, 0.0
        flags.append(LeftoverFlag.CONTAINER_EMPTIED)
    elif ratio is None:
        flags.append(LeftoverFlag.NOT_MEASURABLE)
        if not comparable:
            flags.append(LeftoverFlag.MASKS_DIFFER)
    else:
        fraction = min(ratio, 1.0)
        if ratio > 1.0:
            flags.append(LeftoverFlag.AFTER_EXCEEDS_BEFORE)
    if pair.label_cost == 1.0:
        flags.append(LeftoverFlag.RELABELLED)
    if pair.score < weak:
        flags.append(LeftoverFlag.WEAK_MATCH)
    left, eaten = _grams(b.grams, fraction)
    return Leftover(b.key, b.food_id, pair.before_index, pair.after_index, fraction, ratio,
                    left, eaten, pair.method, measure, pair.score, tuple(flags))


def leftovers(before: Sequence[Region], after: Sequence[Region], matching: Matching,
              cfg: MatchConfig | None = None, *, comparable: bool = True) -> list[Leftover]:
    """One result per before region (in order), then one per unmatched after region.

    Fully eaten: fraction 0, all grams eaten, score = 1 - the best score any after region
    offered (how clearly nothing matched). Unmatched after: no fraction, no grams - not food
    served - and score = 1 - the best score any before region offered it. A ratio above 1
    (the after region measures larger: mask noise, or spilled food) is clipped to 1 and
    flagged after_exceeds_before: nothing eaten, never a negative intake.

    comparable False: the two photos' masks were made two ways (the model's own against
    masks refined to the food, settings.refine_masks). Both the area and the depth volume
    are integrated over the mask, so a plate-shaped mask against a food-shaped one would
    read as food eaten or left; every matched pair is then not_measurable + masks_differ
    (no fraction, no grams). Fully eaten and unmatched after need no measure and stay (the
    matching must not have bounded sizes either: services.pairing gives it no areas then).
    """
    cfg = cfg or MatchConfig()
    if (any(p.before_index >= len(before) or p.after_index >= len(after)
            for p in matching.pairs) or len(matching.best_scores) != len(before)
            or len(matching.best_scores_after) != len(after)):
        raise MatchInputError("matching does not belong to these regions")
    by_before = {p.before_index: p for p in matching.pairs}
    out: list[Leftover] = []
    for i, b in enumerate(before):
        pair = by_before.get(i)
        if pair is not None:
            out.append(_paired(b, after[pair.after_index], pair, cfg.weak_match_score,
                               comparable))
            continue
        left, eaten = _grams(b.grams, 0.0)
        out.append(Leftover(b.key, b.food_id, i, None, 0.0, 0.0, left, eaten,
                            MatchMethod.NONE, None, 1.0 - matching.best_scores[i],
                            (LeftoverFlag.FULLY_EATEN,)))
    out += [Leftover(after[j].key, after[j].food_id, None, j, None, None, None, None,
                     MatchMethod.NONE, None, 1.0 - matching.best_scores_after[j],
                     (LeftoverFlag.UNMATCHED_AFTER,))
            for j in matching.unmatched_after]
    return out


# --- layout mode ---------------------------------------------------------------------------


def _fill(value: float, slot: str, side: str) -> float:
    """A finite fill >= 0 (a heaped compartment may exceed 1)."""
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise MatchInputError(f"slot {slot!r}: {side} fill must be a finite number >= 0, "
                              f"got {value!r}")
    return out


def slot_leftovers(before_fills: Mapping[str, SlotFill | tuple[float, float | None]],
                   after_fills: Mapping[str, float]) -> list[Leftover]:
    """Layout mode: compartments pair by slot; leftover = after fill / before fill.

    Slots empty at serving (fill 0) are skipped unless the after photo has something in
    them (then unmatched_after). Every served slot needs an after fill (0 when empty): a
    missing one is an error, not a silent "fully eaten".
    """
    missing = sorted(s for s, v in before_fills.items() if SlotFill(*v).fill > 0
                     and s not in after_fills)
    if missing:
        raise MatchInputError(f"after fills lack served slots {missing}: a layout measures "
                              "every compartment in both photos (pass 0 for empty)")
    out: list[Leftover] = []
    for slot, value in before_fills.items():
        sf = SlotFill(*value)
        served = _fill(sf.fill, slot, "before")
        grams = finite_nonneg(sf.grams, "grams", slot)
        if served == 0:
            continue
        ratio = _fill(after_fills[slot], slot, "after") / served
        flags = [LeftoverFlag.FULLY_EATEN] if ratio == 0 else []
        if ratio > 1:
            flags.append(LeftoverFlag.AFTER_EXCEEDS_BEFORE)
        fraction = min(ratio, 1.0)
        left, eaten = _grams(grams, fraction)
        out.append(Leftover(slot, None, None, None, fraction, ratio, left, eaten,
                            MatchMethod.SLOT, Measure.FILL, 1.0, tuple(flags)))
    for slot, after_value in after_fills.items():
        fill = _fill(after_value, slot, "after")
        served_fill = SlotFill(*before_fills[slot]).fill if slot in before_fills else 0.0
        if fill > 0 and served_fill == 0:
            out.append(Leftover(slot, None, None, None, None, None, None, None,
                                MatchMethod.SLOT, Measure.FILL, 1.0,
                                (LeftoverFlag.UNMATCHED_AFTER,)))
    return out
