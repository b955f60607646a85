"""Evaluation metrics for the tray model, in numpy only (no torch).

Definitions, stated once so every report means the same thing:

- Box IoU uses continuous coordinates ``[x0, y0, x1, y1]`` (no +1 pixel), as COCO does.
- Detection matching (per class, over all images together): detections are visited in
  descending score order (a stable sort, so ties keep input order); each is matched to the
  unmatched ground-truth box of its class in its image with the highest IoU, and is a true
  positive when that IoU is >= the threshold (0.5 for mAP@0.5). This is COCO's greedy rule.
- AP interpolation, selectable:
  - ``"coco101"`` (the default, and what the evaluator reports): the mean of
    ``p_interp(r) = max_{r' >= r} p(r')`` at the 101 recall points 0, 0.01, ..., 1, where
    ``p_interp(r)`` is 0 when recall ``r`` is never reached. This is pycocotools' COCOeval
    (iouThrs [0.5], area "all", maxDets 100): per class and mean equal to 1e-12 on the
    shipped model's real predictions (tests/model/test_metrics_vs_cocoeval.py);
  - ``"all_point"`` (PASCAL VOC 2010+; the evaluator's until 2026-12-05): AP is the area
    under the precision envelope, summed exactly at every recall step.
- mAP is the mean AP over the classes that have at least one ground-truth box; a class with
  ground truth but no detection has AP 0. Classes without ground truth are not averaged.
- Food regions (class-agnostic): every annotated food region counts whatever its label
  (scale references such as the coin are left out on both sides); predictions are the
  food items at the service's operating score threshold. They are matched to annotations by
  the same greedy rule as above with every label treated as one ("food"). Recall is matched
  annotations / annotations; false regions are predictions matching none, per photo
  (photos without any annotation count too); a matched region is *named wrong* when the
  service names it (model.infer.naming: class probability >= the naming threshold, and the
  open-set check where the file has one) with a label other than the annotation's (it
  should have said "unidentified"), *named right* when it names it with the annotation's
  label, else *unidentified*.
- Food-region curve: the same matching over predictions down to a low score threshold, read
  at every threshold ``t`` (the items with score >= t): recall against false regions per
  photo, as in a free-response ROC. Greedy matching visits detections by score, so the
  items above ``t`` match as they would if they were the only ones; the curve at the
  operating threshold equals the food-region figures. Two models compare fairly at a
  matched rate of false regions; a threshold read off a set is fitted to that set.
- Mask IoU: predicted and ground-truth masks are paired one to one, class-agnostic, by
  greedy highest mask IoU; every ground-truth mask counts, unmatched ones with IoU 0. The
  caller passes only ground-truth masks that are real (drawn or composed), never pseudo.
- Grams: MAE in grams and MAE% = mean of ``|pred - true| / true`` x 100.
- ECE: ``sum_b (n_b / N) |accuracy_b - mean confidence_b|`` over equal-width bins of
  [0, 1]; bin ``i`` holds confidences in ``(i/B, (i+1)/B]``, and the first bin also holds 0.
- Mean with 95% confidence interval: normal approximation, ``mean +- 1.96 s / sqrt(n)``
  with the sample standard deviation ``s`` (ddof 1), over independent trials.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from model.infer.geometry import as_boxes, box_iou

Interpolation = Literal["all_point", "coco101"]
BoxT = tuple[float, float, float, float]
Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


class MetricError(ValueError):
    """Bad input to a metric: wrong shapes, empty or non-finite values."""


@dataclass(frozen=True)
class Detection:
    """One predicted box: which image, which label, how confident."""

    image_id: str
    label: str
    score: float
    box: BoxT


@dataclass(frozen=True)
class GroundTruth:
    """One annotated box."""

    image_id: str
    label: str
    box: BoxT


@dataclass(frozen=True)
class ClassAP:
    """AP of one class with the counts it rests on."""

    ap: float
    n_gt: int
    n_det: int
    n_tp: int


@dataclass(frozen=True)
class DetectionReport:
    """Per-class AP and their mean (mAP) at one IoU threshold."""

    iou_threshold: float
    interpolation: Interpolation
    per_class: dict[str, ClassAP]
    mean_ap: float


@dataclass(frozen=True)
class GramsError:
    """Mean absolute error of portion estimates, in grams and in percent of the truth."""

    mae_g: float
    mae_pct: float
    n: int


@dataclass(frozen=True)
class CalibrationBin:
    """One equal-width confidence bin of a reliability diagram."""

    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error and the bins behind it."""

    ece: float
    n: int
    bins: list[CalibrationBin]


@dataclass(frozen=True)
class MeanCI:
    """A mean over trials with its 95% confidence interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class FoodRegionReport:
    """Class-agnostic food-region figures of one set of photos (module docstring)."""

    iou_threshold: float
    photos: int
    annotated: int
    found: int
    recall: float | None  # None without any annotated food region
    predicted: int
    false_regions: int
    false_per_photo: float | None  # None without photos
    named_right: int
    named_wrong: int
    unidentified: int
    named_wrong_share: float | None  # of the found regions; None when none was found
    # Found regions left unidentified, by reason (model.infer.naming.REASONS), split by whether
    # their label was the annotation's (a right name lost) or not (a wrong name stopped).
    unidentified_right_by: dict[str, int] = field(default_factory=dict)
    unidentified_wrong_by: dict[str, int] = field(default_factory=dict)
    # Found regions whose label is the annotation's, per label: named, and left unidentified
    # (where a naming check loses right names).
    named_right_per_label: dict[str, int] = field(default_factory=dict)
    unidentified_right_per_label: dict[str, int] = field(default_factory=dict)


def match_detections(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruth],
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """True-positive flag per detection (input order), by COCO's greedy per-class matching."""
    return greedy_match(detections, ground_truth, iou_threshold) >= 0


def greedy_match(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruth],
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
) -> np.ndarray:
    """Index into ground_truth of each detection's match (input order), -1 for none.

    COCO's greedy rule: detections by descending score (stable), each to the unmatched
    ground-truth box of its image (and label, unless class_agnostic) with the highest IoU,
    if that IoU is >= iou_threshold.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise MetricError(f"iou_threshold must be in (0, 1], got {iou_threshold}")

    def key(image_id: str, label: str) -> tuple[str, str]:
        return (image_id, "" if class_agnostic else label)

    gt_index: dict[tuple[str, str], list[int]] = defaultdict(list)
    for j, g in enumerate(ground_truth):
        gt_index[key(g.image_id, g.label)].append(j)
    gt_boxes = {k: as_boxes([ground_truth[j].box for j in v], "ground truth")
                for k, v in gt_index.items()}
    taken = {k: np.zeros(len(v), dtype=bool) for k, v in gt_boxes.items()}
    scores = np.array([d.score for d in detections], dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise MetricError("detection scores must be finite")
    matched = np.full(len(detections), -1, dtype=np.int64)
    for i in np.argsort(-scores, kind="stable"):
        det = detections[i]
        k = key(det.image_id, det.label)
        if k not in gt_boxes:
            continue
        ious = box_iou([det.box], gt_boxes[k])[0]
        ious[taken[k]] = -1.0
        best = int(np.argmax(ious))
        if ious[best] >= iou_threshold:
            matched[i] = gt_index[k][best]
            taken[k][best] = True
    return matched


def food_regions(
    detections: Sequence[Detection],
    unnamed: Sequence[str | None],
    ground_truth: Sequence[GroundTruth],
    image_ids: Sequence[str],
    iou_threshold: float = 0.5,
    non_food: Sequence[str] = (),
) -> FoodRegionReport:
    """Recall, false regions per photo and wrong names of food regions, label-blind.

    detections: the predicted items at the operating threshold; unnamed: why the service
    leaves each one "unidentified", None where it names it with its label (same order;
    model.infer.naming.unnamed_reason); image_ids: every photo evaluated. Labels in non_food
    (the coin) are dropped from both sides before matching.
    """
    if len(unnamed) != len(detections):
        raise MetricError(f"{len(unnamed)} naming reasons for {len(detections)} detections")
    photos = set(image_ids)
    stray = {d.image_id for d in detections} | {g.image_id for g in ground_truth}
    if not stray <= photos:
        raise MetricError(f"image ids missing from image_ids: {sorted(stray - photos)[:3]}")
    keep = [i for i, d in enumerate(detections) if d.label not in non_food]
    dets = [detections[i] for i in keep]
    why = [unnamed[i] for i in keep]
    sure = np.array([w is None for w in why], dtype=bool)
    gts = [g for g in ground_truth if g.label not in non_food]
    matched = greedy_match(dets, gts, iou_threshold, class_agnostic=True)
    hit = matched >= 0
    same = np.array([m >= 0 and d.label == gts[m].label for d, m in zip(dets, matched,
                                                                        strict=True)], bool)
    found = int(hit.sum())
    wrong = int((hit & sure & ~same).sum())
    false = int((~hit).sum())
    return FoodRegionReport(
        iou_threshold=iou_threshold, photos=len(photos),
        annotated=len(gts), found=found, recall=found / len(gts) if gts else None,
        predicted=len(dets), false_regions=false,
        false_per_photo=false / len(photos) if photos else None,
        named_right=int((hit & sure & same).sum()), named_wrong=wrong,
        unidentified=int((hit & ~sure).sum()),
        named_wrong_share=wrong / found if found else None,
        unidentified_right_by=_tally(w for w, h, r in zip(why, hit, same, strict=True)
                                     if h and r and w is not None),
        unidentified_wrong_by=_tally(w for w, h, r in zip(why, hit, same, strict=True)
                                     if h and not r and w is not None),
        named_right_per_label=_tally(d.label for d, r, k in zip(dets, same, sure, strict=True)
                                     if r and k),
        unidentified_right_per_label=_tally(
            d.label for d, r, k in zip(dets, same, sure, strict=True) if r and not k))


@dataclass(frozen=True)
class RegionCurve:
    """Class-agnostic recall and false regions per photo at every score threshold (module
    docstring); arrays in descending threshold order, one entry per distinct score."""

    thresholds: np.ndarray
    recall: np.ndarray
    false_per_photo: np.ndarray

    def at_false(self, max_false_per_photo: float) -> tuple[float, float | None]:
        """(recall, threshold) at the lowest threshold whose false regions per photo are at
        most max_false_per_photo; (0.0, None) when even the highest one has more."""
        ok = np.flatnonzero(self.false_per_photo <= max_false_per_photo)
        if ok.size == 0:
            return 0.0, None
        return float(self.recall[ok[-1]]), float(self.thresholds[ok[-1]])


def region_curve(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruth],
    image_ids: Sequence[str],
    iou_threshold: float = 0.5,
    non_food: Sequence[str] = (),
) -> RegionCurve:
    """Food-region recall and false regions per photo as the score threshold rises.

    detections: predictions down to a low score threshold; labels in non_food are dropped
    from both sides, as in food_regions.
    """
    photos = set(image_ids)
    if not photos:
        raise MetricError("a region curve needs at least one photo")
    gts = [g for g in ground_truth if g.label not in non_food]
    if not gts:
        raise MetricError("a region curve needs at least one annotated food region")
    dets = [d for d in detections if d.label not in non_food]
    stray = {d.image_id for d in dets} | {g.image_id for g in gts}
    if not stray <= photos:
        raise MetricError(f"image ids missing from image_ids: {sorted(stray - photos)[:3]}")
    if not dets:
        return RegionCurve(np.empty(0), np.empty(0), np.empty(0))
    hit = greedy_match(dets, gts, iou_threshold, class_agnostic=True) >= 0
    scores = np.array([d.score for d in dets], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    scores, hit = scores[order], hit[order]
    last = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])  # the last of each score
    return RegionCurve(thresholds=scores[last],
                       recall=np.cumsum(hit)[last] / len(gts),
                       false_per_photo=np.cumsum(~hit)[last] / len(photos))


def _tally(reasons: Iterable[str]) -> dict[str, int]:
    """How often each reason (or label) occurs, sorted by it."""
    return dict(sorted(Counter(reasons).items()))


def average_precision(
    scores: npt.ArrayLike,
    tp: npt.ArrayLike,
    n_gt: int,
    interpolation: Interpolation = "coco101",
) -> float:
    """AP of one class from detection scores, their TP flags and the ground-truth count."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(tp, dtype=bool).ravel()
    if s.shape != t.shape:
        raise MetricError(f"scores and tp differ in length: {s.size} vs {t.size}")
    if n_gt <= 0:
        raise MetricError("AP is undefined without ground truth (n_gt must be > 0)")
    if int(t.sum()) > n_gt:
        raise MetricError(f"{int(t.sum())} true positives exceed {n_gt} ground-truth boxes")
    if s.size == 0:
        return 0.0
    t = t[np.argsort(-s, kind="stable")]
    tps = np.cumsum(t)
    recall = tps / n_gt
    precision = tps / np.arange(1, t.size + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if interpolation == "all_point":
        steps = np.diff(np.concatenate(([0.0], recall)))
        return float(np.sum(steps * envelope))
    if interpolation == "coco101":
        points = np.linspace(0.0, 1.0, 101)
        idx = np.searchsorted(recall, points, side="left")
        reached = idx < recall.size
        return float(np.sum(envelope[idx[reached]]) / points.size)
    raise MetricError(f"unknown interpolation {interpolation!r}")


def detection_ap(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruth],
    iou_threshold: float = 0.5,
    interpolation: Interpolation = "coco101",
) -> DetectionReport:
    """Per-class AP and mAP over every class that has ground truth."""
    tp = match_detections(detections, ground_truth, iou_threshold)
    n_gt: dict[str, int] = defaultdict(int)
    for g in ground_truth:
        n_gt[g.label] += 1
    per_class: dict[str, ClassAP] = {}
    for label in sorted(n_gt):
        idx = [i for i, d in enumerate(detections) if d.label == label]
        scores = [detections[i].score for i in idx]
        flags = tp[idx] if idx else np.zeros(0, dtype=bool)
        ap = average_precision(scores, flags, n_gt[label], interpolation)
        per_class[label] = ClassAP(ap=ap, n_gt=n_gt[label], n_det=len(idx), n_tp=int(flags.sum()))
    mean_ap = float(np.mean([c.ap for c in per_class.values()])) if per_class else math.nan
    return DetectionReport(iou_threshold, interpolation, per_class, mean_ap)


def mask_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """IoU of two boolean masks of the same shape (0 when both are empty)."""
    ma, mb = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if ma.shape != mb.shape:
        raise MetricError(f"mask shapes differ: {ma.shape} vs {mb.shape}")
    union = int(np.logical_or(ma, mb).sum())
    return int(np.logical_and(ma, mb).sum()) / union if union else 0.0


def matched_mask_ious(
    predicted: Sequence[npt.ArrayLike], ground_truth: Sequence[npt.ArrayLike]
) -> list[float]:
    """IoU per ground-truth mask after greedy one-to-one matching (unmatched ones get 0)."""
    if not ground_truth:
        return []
    ious = np.array([[mask_iou(p, g) for g in ground_truth] for p in predicted]).reshape(
        len(predicted), len(ground_truth)
    )
    result = [0.0] * len(ground_truth)
    # Greedy on the whole matrix: the best remaining pair first, each mask used once.
    while ious.size and ious.max() > 0.0:
        p, g = np.unravel_index(int(np.argmax(ious)), ious.shape)
        result[int(g)] = float(ious[p, g])
        ious[p, :] = -1.0
        ious[:, g] = -1.0
    return result


def grams_error(predicted: npt.ArrayLike, true: npt.ArrayLike) -> GramsError:
    """MAE (g) and MAE% of predicted against true weights; true weights must be > 0."""
    p = np.asarray(predicted, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise MetricError(f"predicted and true differ in length: {p.size} vs {t.size}")
    if p.size == 0:
        raise MetricError("grams error needs at least one pair")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise MetricError("grams must be finite numbers")
    if np.any(t <= 0):
        raise MetricError("true weights must be > 0 g (MAE% divides by them)")
    err = np.abs(p - t)
    return GramsError(mae_g=float(err.mean()), mae_pct=float((err / t).mean() * 100.0), n=p.size)


def expected_calibration_error(
    confidences: npt.ArrayLike, correct: npt.ArrayLike, n_bins: int = 10
) -> Calibration:
    """ECE over equal-width bins of [0, 1] (see the module docstring for bin edges)."""
    c = np.asarray(confidences, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=bool).ravel()
    if c.shape != ok.shape:
        raise MetricError(f"confidences and correct differ in length: {c.size} vs {ok.size}")
    if c.size == 0:
        raise MetricError("ECE needs at least one prediction")
    if n_bins < 1:
        raise MetricError("n_bins must be >= 1")
    if not np.all(np.isfinite(c)) or np.any(c < 0) or np.any(c > 1):
        raise MetricError("confidences must lie in [0, 1]")
    # Edges as i/B (correctly rounded), not c * B: 0.6 * 5 = 3.0000000000000004 misplaces 0.6.
    edges = np.arange(n_bins + 1) / n_bins
    which = np.clip(np.searchsorted(edges, c, side="left") - 1, 0, n_bins - 1)
    bins: list[CalibrationBin] = []
    ece = 0.0
    for i in range(n_bins):
        sel = which == i
        n = int(sel.sum())
        conf = float(c[sel].mean()) if n else 0.0
        acc = float(ok[sel].mean()) if n else 0.0
        ece += n / c.size * abs(acc - conf)
        bins.append(CalibrationBin(float(edges[i]), float(edges[i + 1]), n, conf, acc))
    return Calibration(ece=ece, n=c.size, bins=bins)


def identification_accuracy(predicted: Sequence[str], true: Sequence[str]) -> float:
    """Fraction of items whose top-ranked dish is the true dish."""
    if len(predicted) != len(true):
        raise MetricError(f"predicted and true differ in length: {len(predicted)} vs {len(true)}")
    if not true:
        raise MetricError("accuracy needs at least one item")
    return sum(p == t for p, t in zip(predicted, true, strict=True)) / len(true)


def mean_ci95(values: npt.ArrayLike) -> MeanCI:
    """Mean of independent trials with a normal-approximation 95% interval."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise MetricError("mean_ci95 needs at least one finite value")
    mean = float(v.mean())
    if v.size == 1:
        return MeanCI(mean, mean, mean, 1)
    half = Z_95 * float(v.std(ddof=1)) / math.sqrt(v.size)
    return MeanCI(mean, mean - half, mean + half, int(v.size))


def bootstrap_map_ci95(
    detections: Sequence[Detection],
    ground_truth: Sequence[GroundTruth],
    groups: dict[str, str],
    iou_threshold: float = 0.5,
    draws: int = 200,
    seed: int = 0,
    interpolation: Interpolation = "coco101",
) -> tuple[float, float]:
    """95% percentile interval of mAP when whole groups of images are resampled.

    groups maps each image id to its group (a capture run: its shots are not independent).
    Each draw picks as many groups as there are, with replacement; a group drawn twice
    counts twice (its images get distinct ids).
    """
    names = sorted(set(groups.values()))
    if len(names) < 2:
        raise MetricError("a bootstrap interval needs at least two groups")
    members: dict[str, list[str]] = defaultdict(list)
    for image_id, group in groups.items():
        members[group].append(image_id)
    dets_of: dict[str, list[Detection]] = defaultdict(list)
    gts_of: dict[str, list[GroundTruth]] = defaultdict(list)
    for d in detections:
        dets_of[d.image_id].append(d)
    for g in ground_truth:
        gts_of[g.image_id].append(g)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        dets: list[Detection] = []
        gts: list[GroundTruth] = []
        for k, pick in enumerate(rng.integers(0, len(names), size=len(names))):
            for image_id in members[names[pick]]:
                new_id = f"{k}:{image_id}"
                dets += [replace(d, image_id=new_id) for d in dets_of[image_id]]
                gts += [replace(g, image_id=new_id) for g in gts_of[image_id]]
        values.append(detection_ap(dets, gts, iou_threshold, interpolation).mean_ap)
    finite = [v for v in values if math.isfinite(v)]  # a draw of groups without any box: none
    if not finite:
        raise MetricError("no resampled draw holds a ground-truth box")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)
