"""Before/after pairing by place and appearance: which after region is which served dish,
and how much of it is left (pure numpy + scipy; no web, database or torch imports).

Without a tray layout (`match_regions`, then `leftovers`):

1. Appearance: cosine of the regions' L2-normalised embeddings.
2. Tray shift: a returned tray is not put back in place; it may be shifted and turned as a
   whole. The rigid motion (rotation + translation, no scale: the same kiosk camera) is
   estimated RANSAC-style from the region centres of confident appearance matches, and
   positions are compared after it. So a whole-tray move costs nothing, and a dish moved
   *on* the tray must be carried by appearance alone.
3. One optimal assignment (`scipy.optimize.linear_sum_assignment`) on a cost that mixes
   appearance, position and - weakly - the label. The cost matrix is padded with "leave it
   unmatched" options, so a pair is made only when it costs less than `max_match_cost`:
   a before region without a plausible partner is fully eaten, an after region without one
   (a napkin, a cup brought along) is `unmatched_after`. Size only bounds: an after region
   far larger than the before region cannot be it; a smaller one is just partly eaten.
4. Leftover: the ratio of the two regions measured the same way - depth volume when both
   have it, else mask area in pixels - times the before grams. Never two gram estimates
   made by different methods. A matched pair keeps the before region's dish.

With a layout (fixed kiosk with compartments, `slot_leftovers`): slots pair by name and the
leftover is after fill / before fill.

Every `Leftover` says how it was obtained (`method`, `measure`) and how sure the pairing is
(`score` in [0, 1]), so the service can show provenance. The score is 1 - match cost: a
ranking with a documented threshold, not a calibrated probability.

Both photos' `area_px` must be on the same pixel scale (one kiosk camera, one resolution);
rescale one side first if they are not.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from model.infer.geometry import Box, GeometryError, as_boxes

# --- weights and thresholds (measured with the shipped model, model/artifacts/traylens.onnx,
# on the fixture photos: see tests/serve/services/test_matching.py) ------------------------

# Cosine at or above which two regions look like the same dish (appearance cost 0). Untouched
# dishes of the shipped model score 0.96-1.00 between two photos; with a third to a half
# painted out mostly 0.6-0.99, but as low as 0.36 (a gratin), where position must carry it.
COS_SAME = 0.9
# Cosine at or below which they look like different dishes (appearance cost 1). Different
# dishes on one tray score -0.3-0.2, a few pairs up to 0.47 (gratin vs drink can).
COS_DIFFERENT = 0.2
# Appearance dominates: it alone must carry a dish moved on the tray (position cost 1), and
# beat an unrelated item standing in its old place. With these weights a swap of
# two dishes is resolved by appearance when the right partner's appearance cost is at least
# (W_POSITION - W_LABEL) / W_APPEARANCE = 0.33 lower than the wrong one's.
W_APPEARANCE = 0.6
# Position after the tray shift: breaks ties between look-alikes (two bread rolls score 0.99
# with each other) and carries a dish whose look changed as it was eaten.
W_POSITION = 0.3
# The label is only a weak cue: the after photo of a half-eaten dish is often named wrong,
# and an unrelated item may carry the dish's label (the painted-out bread roll).
W_LABEL = 0.1
# A pair is made only below this cost (score above 1 - 0.55 = 0.45). Worked cases with the
# weights above: a moved, intact dish costs 0.3 (kept); a moved, partly eaten one is kept
# down to cosine 0.61 (0.73 if also renamed); in place (centre wandered 0.2 radii), down
# to ~0.33 (if renamed, ~0.45);
# an unrelated item with the dish's label elsewhere on the tray, at cosine <= 0.47 (the
# most alike different dishes measured), costs >= 0.67 (refused: the bread-roll case); one
# in the dish's very place with another label is refused below cosine ~0.37.
MAX_MATCH_COST = 0.55
# Pairs scoring below this are kept but flagged weak: the service should ask for a look.
WEAK_MATCH_SCORE = 0.6
# Centre distance (after the tray shift) in before-region radii (half box diagonals) at which
# the position cost is full. A partly eaten dish's region centre wanders by up to ~half a
# radius; neighbouring dishes' centres are usually >= 2 radii apart.
POSITION_RADII = 1.0
# An after region larger than this many times the before region cannot be that dish (mask
# noise makes untouched dishes measure 0.9-1.1 of themselves; food does not grow).
MAX_AREA_GROWTH = 2.0
# Appearance matches at or above this cosine vote on the tray shift (below it, partly eaten
# dishes would still vote, but so might two different foods of one colour).
SHIFT_MIN_COS = 0.8
# A vote agrees with a shift hypothesis when the moved before centre lands within this many
# before-region radii of the after centre (eaten dishes' centres wander, see above).
SHIFT_INLIER_RADII = 0.75
# Two votes make a rotation hypothesis only if the distance between their centres changes by
# less than this share between the photos (the tray is rigid; eaten centres wander a little).
SHIFT_MAX_STRETCH = 0.3
# Votes kept for hypotheses (the most similar first): bounds the pairs-of-votes loop on
# crowded inputs; a tray has ~3-12 regions.
SHIFT_MAX_VOTES = 40
# Cost of a forbidden pair (size bound): larger than any real cost, finite for scipy.
_FORBIDDEN = 1e6


class MatchInputError(ValueError):
    """Regions, fills or settings that cannot be matched: non-finite numbers, bad boxes,
    embeddings of different dimensions, negative areas or grams."""


class MatchMethod(StrEnum):
    """How a result was obtained."""

    SLOT = "slot"  # the kiosk layout's compartment: paired by slot name
    APPEARANCE = "appearance"  # assignment with the embeddings' cosine (+ place, label)
    POSITION = "position"  # assignment without embeddings: place (+ label) only
    NONE = "none"  # no partner: fully eaten, or an after region that was never served


def finite_nonneg(value: float | None, what: str, key: str) -> float | None:
    """A finite float >= 0 (or None), else MatchInputError."""
    if value is None:
        return None
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise MatchInputError(f"region {key!r}: {what} must be a finite number >= 0, "
                              f"got {value!r}")
    return out


def _unit_embedding(embedding: npt.ArrayLike | None, key: str) -> np.ndarray | None:
    """The embedding as a read-only L2-normalised float64 vector, or None."""
    if embedding is None:
        return None
    vec = np.asarray(embedding, dtype=np.float64)
    if vec.ndim != 1 or vec.size == 0:
        raise MatchInputError(f"region {key!r}: embedding must be a non-empty vector, "
                              f"got shape {vec.shape}")
    if not np.all(np.isfinite(vec)):
        raise MatchInputError(f"region {key!r}: embedding has non-finite values")
    norm = float(np.linalg.norm(vec))
    if norm == 0:
        raise MatchInputError(f"region {key!r}: embedding is all zeros (no direction)")
    unit = vec / norm
    unit.setflags(write=False)
    return unit


@dataclass(frozen=True)
class Region:
    """One region of one photo, as much of it as matching needs.

    `key` is the caller's name for it (the before region's key names the dish in results);
    `box` is [x0, y0, x1, y1] in photo pixels; `area_px` the mask area in the same pixels.
    """

    key: str
    box: Box
    area_px: float
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    label: str | None = None
    food_id: str | None = None
    volume_ml: float | None = None
    grams: float | None = None
    # What its box shows (model.infer.refine.container_state): "food" in a container, an
    # "empty" one, or None; leftovers read food before and empty after as eaten.
    container: str | None = None

    def __post_init__(self) -> None:
        """Validate every number once, here, so matching never meets NaN."""
        try:
            box = as_boxes(self.box, f"region {self.key!r} box")
        except (GeometryError, ValueError) as exc:
            raise MatchInputError(f"region {self.key!r}: box must be [x0, y0, x1, y1] "
                                  f"({exc})") from exc
        if box.shape != (1, 4):
            raise MatchInputError(f"region {self.key!r}: box must be 4 numbers")
        object.__setattr__(self, "box", tuple(float(v) for v in box[0]))
        object.__setattr__(self, "area_px", finite_nonneg(self.area_px, "area_px", self.key))
        object.__setattr__(self, "embedding", _unit_embedding(self.embedding, self.key))
        object.__setattr__(self, "volume_ml",
                           finite_nonneg(self.volume_ml, "volume_ml", self.key))
        object.__setattr__(self, "grams", finite_nonneg(self.grams, "grams", self.key))

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre (x, y) in pixels."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def radius(self) -> float:
        """Half the box diagonal (at least one pixel): the region's size for distances."""
        x0, y0, x1, y1 = self.box
        return max(1.0, math.hypot(x1 - x0, y1 - y0) / 2)


@dataclass(frozen=True)
class MatchConfig:
    """Weights and thresholds of `match_regions` (defaults: the module constants)."""

    w_appearance: float = W_APPEARANCE
    w_position: float = W_POSITION
    w_label: float = W_LABEL
    cos_same: float = COS_SAME
    cos_different: float = COS_DIFFERENT
    max_match_cost: float = MAX_MATCH_COST
    weak_match_score: float = WEAK_MATCH_SCORE
    position_radii: float = POSITION_RADII
    max_area_growth: float = MAX_AREA_GROWTH
    shift_min_cos: float = SHIFT_MIN_COS
    shift_inlier_radii: float = SHIFT_INLIER_RADII
    shift_max_stretch: float = SHIFT_MAX_STRETCH

    def __post_init__(self) -> None:
        """Weights >= 0 and not all zero; thresholds in their ranges."""
        weights = (self.w_appearance, self.w_position, self.w_label)
        values = [*weights, self.cos_same, self.cos_different, self.max_match_cost,
                  self.weak_match_score, self.position_radii, self.max_area_growth,
                  self.shift_min_cos, self.shift_inlier_radii, self.shift_max_stretch]
        if not all(math.isfinite(v) for v in values):
            raise MatchInputError("MatchConfig: every value must be finite")
        if min(weights) < 0 or sum(weights) <= 0:
            raise MatchInputError("MatchConfig: weights must be >= 0 and not all zero")
        if not -1 <= self.cos_different < self.cos_same <= 1:
            raise MatchInputError("MatchConfig: need -1 <= cos_different < cos_same <= 1")
        if not 0 < self.max_match_cost <= 1 or not 0 <= self.weak_match_score <= 1:
            raise MatchInputError("MatchConfig: max_match_cost in (0, 1], "
                                  "weak_match_score in [0, 1]")
        if min(self.position_radii, self.shift_inlier_radii, self.max_area_growth) <= 0:
            raise MatchInputError("MatchConfig: radii and max_area_growth must be > 0")


@dataclass(frozen=True)
class TrayShift:
    """The rigid motion of the tray between the photos: after = R(rotation) @ before + t.

    `votes`: confident appearance matches that agree with it (0: none found, identity).
    """

    rotation_deg: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    votes: int = 0

    def apply(self, points: npt.ArrayLike) -> np.ndarray:
        """Where before-photo points (N, 2) lie in the after photo."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        theta = math.radians(self.rotation_deg)
        rot = np.array([[math.cos(theta), -math.sin(theta)],
                        [math.sin(theta), math.cos(theta)]])
        return pts @ rot.T + np.array([self.tx, self.ty])


@dataclass(frozen=True)
class RegionPair:
    """One before region paired with one after region, and what the pairing cost."""

    before_index: int
    after_index: int
    score: float  # 1 - cost, in [0, 1]
    cost: float  # weighted mean of the parts below that are known
    cosine: float | None  # appearance: embedding cosine (None: an embedding is missing)
    appearance_cost: float | None
    distance_px: float  # centre distance after the tray shift
    position_cost: float
    label_cost: float | None  # 0 same food/label, 1 different, None unknown
    method: MatchMethod


@dataclass(frozen=True)
class Matching:
    """The assignment of after regions to before regions."""

    pairs: tuple[RegionPair, ...]
    unmatched_before: tuple[int, ...]  # fully eaten (no plausible after region)
    unmatched_after: tuple[int, ...]  # never served: napkins, cups brought along
    tray_shift: TrayShift
    # per before / after region: the best score any region of the other photo offered it
    # (0.0 with none), so an unmatched region says how clearly nothing matched
    best_scores: tuple[float, ...] = ()
    best_scores_after: tuple[float, ...] = ()


# --- matching ------------------------------------------------------------------------------


def _embeddings(regions: Sequence[Region]) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) unit embeddings (zeros where missing) and an (N,) mask of which exist."""
    has = np.array([r.embedding is not None for r in regions], dtype=bool)
    dims = {r.embedding.shape[0] for r in regions if r.embedding is not None}
    dim = dims.pop() if dims else 0
    out = np.zeros((len(regions), dim))
    for i, r in enumerate(regions):
        if r.embedding is not None:
            out[i] = r.embedding
    return out, has


def _check_inputs(before: Sequence[Region], after: Sequence[Region]) -> None:
    """Regions only, one embedding dimension across both photos."""
    for side, regions in (("before", before), ("after", after)):
        for r in regions:
            if not isinstance(r, Region):
                raise MatchInputError(f"{side}: expected Region, got {type(r).__name__}")
    dims = {r.embedding.shape[0] for r in (*before, *after) if r.embedding is not None}
    if len(dims) > 1:
        raise MatchInputError(f"embeddings have different dimensions: {sorted(dims)}")


def cosine_matrix(before: Sequence[Region], after: Sequence[Region]) -> np.ndarray:
    """(N, M) embedding cosines; NaN where either region has no embedding."""
    eb, hb = _embeddings(before)
    ea, ha = _embeddings(after)
    cos = np.full((len(before), len(after)), np.nan)
    if eb.shape[1] and ea.shape[1]:
        cos = np.where(hb[:, None] & ha[None, :], eb @ ea.T, np.nan)
    return np.clip(cos, -1.0, 1.0)


def _centres(regions: Sequence[Region]) -> np.ndarray:
    """(N, 2) box centres."""
    return np.array([r.centre for r in regions], dtype=np.float64).reshape(-1, 2)


def _rigid_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> TrayShift:
    """Weighted least-squares rotation + translation taking src (K, 2) onto dst (2-D
    Kabsch, no scale); a single point gives a pure translation."""
    w = weights / weights.sum()
    mu_s, mu_d = w @ src, w @ dst
    angle = 0.0
    if len(src) >= 2:
        h = ((src - mu_s) * w[:, None]).T @ (dst - mu_d)
        angle = math.atan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1])
    c, s = math.cos(angle), math.sin(angle)
    t = mu_d - np.array([[c, -s], [s, c]]) @ mu_s
    return TrayShift(math.degrees(angle), float(t[0]), float(t[1]), len(src))


def _votes(cos: np.ndarray, before: Sequence[Region], after: Sequence[Region],
           cfg: MatchConfig) -> list[tuple[float, int, int]]:
    """Confident appearance matches (cosine, i, j) that may vote on the tray shift."""
    votes = [(float(cos[i, j]), i, j) for i, j in zip(*np.nonzero(cos >= cfg.shift_min_cos),
                                                      strict=True)
             if _size_plausible(before[i], after[j], cfg)]
    votes.sort(key=lambda v: (-v[0], v[1], v[2]))
    return votes[:SHIFT_MAX_VOTES]


def _agreeing(dist: np.ndarray, votes: list[tuple[float, int, int]],
              radii: np.ndarray) -> list[tuple[float, int, int]]:
    """The votes a shift explains, one-to-one (nearest first): `dist[k]`, how far vote k's
    after centre lies from its before centre moved by the shift; a vote agrees within its
    before region's inlier radius."""
    used_b: set[int] = set()
    used_a: set[int] = set()
    out = []
    for k in np.argsort(dist, kind="stable"):
        _, i, j = votes[k]
        if dist[k] <= radii[i] and i not in used_b and j not in used_a:
            used_b.add(i)
            used_a.add(j)
            out.append(votes[k])
    return out


def _vote_arrays(votes: list[tuple[float, int, int]]) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """(cosines, before indices, after indices) of the votes, as arrays."""
    return (np.array([c for c, _, _ in votes], np.float64),
            np.array([i for _, i, _ in votes], np.int64),
            np.array([j for _, _, j in votes], np.int64))


def _rotate(points: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Points (..., 2) turned about the origin by angles (radians) that broadcast against
    points[..., 0]."""
    x, y = points[..., 0], points[..., 1]
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)


def _hypotheses(votes: list[tuple[float, int, int]], cb: np.ndarray, ca: np.ndarray,
                cfg: MatchConfig) -> np.ndarray:
    """(H, 3) motions (rotation in radians, tx, ty), in order: the identity, one translation
    per vote, one rigid motion per pair of consistent votes (the two-point least-squares fit:
    the turn between the pair's before and after offsets, about their midpoints)."""
    _, ii, jj = _vote_arrays(votes)
    src, dst = cb[ii], ca[jj]
    k, m = np.triu_indices(len(votes), 1)
    distinct = (ii[k] != ii[m]) & (jj[k] != jj[m])
    k, m = k[distinct], m[distinct]
    ds, dd = src[m] - src[k], dst[m] - dst[k]
    d_b, d_a = np.linalg.norm(ds, axis=1), np.linalg.norm(dd, axis=1)
    ok = d_b > 0
    ok[ok] = np.abs(d_a[ok] / d_b[ok] - 1) <= cfg.shift_max_stretch
    k, m, ds, dd = k[ok], m[ok], ds[ok], dd[ok]
    angle = np.arctan2(ds[:, 0] * dd[:, 1] - ds[:, 1] * dd[:, 0], (ds * dd).sum(axis=1))
    mid_b, mid_a = (src[k] + src[m]) / 2, (dst[k] + dst[m]) / 2
    return np.concatenate([np.zeros((1, 3)),
                           np.column_stack([np.zeros(len(votes)), dst - src]),
                           np.column_stack([angle, mid_a - _rotate(mid_b, angle)])])


def _distances(hyp: np.ndarray, votes: list[tuple[float, int, int]], cb: np.ndarray,
               ca: np.ndarray) -> np.ndarray:
    """(H, V): how far each vote's after centre lies from its before centre moved by each
    motion."""
    _, ii, jj = _vote_arrays(votes)
    moved = _rotate(cb[ii], hyp[:, :1]) + hyp[:, None, 1:]
    return np.linalg.norm(moved - ca[jj], axis=2)


def _supports(dist: np.ndarray, votes: list[tuple[float, int, int]],
              radii: np.ndarray) -> np.ndarray:
    """(H,): the summed cosine of the votes each motion explains one-to-one (`_agreeing`).
    Where no two votes within reach share a region, that is all of them, summed at once;
    the rows where some do go through `_agreeing`."""
    cosv, ii, jj = _vote_arrays(votes)
    within = dist <= radii[ii]
    support = within @ cosv
    a, b = np.nonzero(np.triu((ii[:, None] == ii) | (jj[:, None] == jj), 1))
    for h in np.flatnonzero((within[:, a] & within[:, b]).any(axis=1)):
        support[h] = sum(v[0] for v in _agreeing(dist[h], votes, radii))
    return support


def estimate_tray_shift(before: Sequence[Region], after: Sequence[Region],
                        cfg: MatchConfig | None = None) -> TrayShift:
    """The tray's rigid motion between the photos, from confident appearance matches.

    RANSAC over minimal samples (one vote: translation; two votes: rotation + translation);
    the hypothesis that the most (cosine-weighted) votes agree with wins, ties going to the
    smaller turn, then to the smaller motion of the before regions' centroid; then a
    least-squares refit on its agreeing votes. No votes: identity. All hypotheses are scored
    at once (numpy); 40 votes give at most 821.
    """
    cfg = cfg or MatchConfig()
    _check_inputs(before, after)
    if not before or not after:
        return TrayShift()
    cos = cosine_matrix(before, after)
    votes = _votes(np.nan_to_num(cos, nan=-1.0), before, after, cfg)
    if not votes:
        return TrayShift()
    cb, ca = _centres(before), _centres(after)
    radii = np.array([r.radius for r in before]) * cfg.shift_inlier_radii
    hyp = _hypotheses(votes, cb, ca, cfg)
    dist = _distances(hyp, votes, cb, ca)
    centroid = cb.mean(axis=0)
    motion = np.linalg.norm(_rotate(centroid, hyp[:, 0]) + hyp[:, 1:] - centroid, axis=1)
    turn = np.abs(np.degrees(hyp[:, 0]))
    best = int(np.lexsort((motion, turn, -np.round(_supports(dist, votes, radii), 9)))[0])
    agree = _agreeing(dist[best], votes, radii)
    if not agree:
        return TrayShift()
    i_idx = [i for _, i, _ in agree]
    j_idx = [j for _, _, j in agree]
    # An eaten region's centre wanders with what is left: the more of it is gone, the less
    # its centre says about the tray, so the refit weighs each vote by its kept area share.
    kept = [min(1.0, after[j].area_px / before[i].area_px) if before[i].area_px > 0 else 1.0
            for _, i, j in agree]
    weights = np.array([max(c, 0.0) * max(k, 1e-3) for (c, _, _), k in zip(agree, kept,
                                                                           strict=True)])
    return _rigid_fit(cb[i_idx], ca[j_idx], weights)


def _size_plausible(b: Region, a: Region, cfg: MatchConfig) -> bool:
    """An after region may be smaller (eaten), not much larger, than its before region."""
    return b.area_px <= 0 or a.area_px <= cfg.max_area_growth * b.area_px


def _label_cost(b: Region, a: Region) -> float | None:
    """0 same food (else same label), 1 different, None when either side is unknown."""
    if b.food_id is not None and a.food_id is not None:
        return 0.0 if b.food_id == a.food_id else 1.0
    if b.label is not None and a.label is not None:
        return 0.0 if b.label == a.label else 1.0
    return None


def _pair_parts(b: Region, a: Region, cos: float, moved: np.ndarray,
                cfg: MatchConfig) -> tuple[float, float | None, float, float, float | None]:
    """(cost, appearance cost, distance px, position cost, label cost) of one pair."""
    app = None
    if not math.isnan(cos):
        app = float(np.clip((cfg.cos_same - cos) / (cfg.cos_same - cfg.cos_different), 0, 1))
    dist = float(np.linalg.norm(moved - np.asarray(a.centre)))
    pos = min(1.0, dist / (cfg.position_radii * b.radius))
    lab = _label_cost(b, a)
    parts = [(cfg.w_position, pos)]
    if app is not None:
        parts.append((cfg.w_appearance, app))
    if lab is not None:
        parts.append((cfg.w_label, lab))
    total_w = sum(w for w, _ in parts)
    cost = sum(w * v for w, v in parts) / total_w if total_w > 0 else 1.0
    return cost, app, dist, pos, lab


def _assign(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs, each cheaper than leaving both of its regions unmatched.

    The (N+M) square matrix pads the costs with "unmatched" options costing max_cost / 2
    per region, so a pair is chosen only when it costs less than max_cost and leaving a
    region alone can beat a chain of mediocre pairs.
    """
    n, m = cost.shape
    half = max_cost / 2
    big = np.full((n + m, n + m), _FORBIDDEN)
    big[:n, :m] = cost
    big[:n, m:][np.diag_indices(n)] = half
    big[n:, :m][np.diag_indices(m)] = half
    big[n:, m:] = 0.0
    rows, cols = linear_sum_assignment(big)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True)
            if i < n and j < m and cost[i, j] < max_cost]


def match_regions(before: Sequence[Region], after: Sequence[Region],
                  cfg: MatchConfig | None = None) -> Matching:
    """Pair after regions with before regions by appearance and place (one assignment)."""
    cfg = cfg or MatchConfig()
    _check_inputs(before, after)
    shift = estimate_tray_shift(before, after, cfg)
    n, m = len(before), len(after)
    cos = cosine_matrix(before, after)
    moved = shift.apply(_centres(before)) if n else np.zeros((0, 2))
    cost = np.full((n, m), _FORBIDDEN)
    parts: dict[tuple[int, int], tuple[float, float | None, float, float, float | None]] = {}
    for i, b in enumerate(before):
        for j, a in enumerate(after):
            if _size_plausible(b, a, cfg):
                parts[i, j] = _pair_parts(b, a, float(cos[i, j]), moved[i], cfg)
                cost[i, j] = parts[i, j][0]
    pairs = []
    for i, j in _assign(cost, cfg.max_match_cost):
        c, app, dist, pos, lab = parts[i, j]
        method = MatchMethod.POSITION if app is None else MatchMethod.APPEARANCE
        cosine = None if app is None else float(cos[i, j])
        pairs.append(RegionPair(i, j, 1.0 - c, c, cosine, app, dist, pos, lab, method))
    best_b = tuple(float(max(0.0, 1.0 - cost[i].min())) if m else 0.0 for i in range(n))
    best_a = tuple(float(max(0.0, 1.0 - cost[:, j].min())) if n else 0.0 for j in range(m))
    taken_b = {p.before_index for p in pairs}
    taken_a = {p.after_index for p in pairs}
    return Matching(tuple(pairs), tuple(i for i in range(n) if i not in taken_b),
                    tuple(j for j in range(m) if j not in taken_a), shift, best_b, best_a)
