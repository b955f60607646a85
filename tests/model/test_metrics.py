"""Metric code against cases computed by hand (the arithmetic is in the comments)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from model.metrics import (
    Detection,
    GroundTruth,
    MetricError,
    average_precision,
    bootstrap_map_ci95,
    detection_ap,
    expected_calibration_error,
    food_regions,
    grams_error,
    identification_accuracy,
    mask_iou,
    match_detections,
    matched_mask_ious,
    mean_ci95,
    region_curve,
)

# One class, 3 ground-truth boxes; 4 detections by score: .9 TP, .8 FP, .7 TP, .6 FP.
# precision after each: 1/1, 1/2, 2/3, 2/4; recall: 1/3, 1/3, 2/3, 2/3.
SCORES = [0.9, 0.8, 0.7, 0.6]
TP = [True, False, True, False]


def test_all_point_ap_by_hand() -> None:
    # Envelope: at recall 1/3 max(1, .5, .667, .5) = 1; at 2/3 max(.667, .5) = 2/3.
    # AP = (1/3 - 0) * 1 + (1/3 - 1/3) * 1 + (2/3 - 1/3) * 2/3 + 0 = 1/3 + 2/9 = 5/9.
    assert average_precision(SCORES, TP, 3, "all_point") == pytest.approx(5 / 9)


def test_coco101_ap_by_hand() -> None:
    # Recall points 0.00..0.33 (34 points) reach recall 1/3: envelope 1.
    # Points 0.34..0.66 (33 points) first reached at recall 2/3: envelope 2/3.
    # Points 0.67..1.00 (34 points) never reached: 0. AP = (34 + 33 * 2/3) / 101 = 56/101.
    assert average_precision(SCORES, TP, 3, "coco101") == pytest.approx(56 / 101)


def test_ap_order_independent_and_edge_cases() -> None:
    # The same detections in another input order give the same AP (sorted by score inside);
    # the default interpolation is COCOeval's 101 points.
    assert average_precision(SCORES[::-1], TP[::-1], 3) == pytest.approx(56 / 101)
    # All detections correct and every box found: precision 1 at recall 1 -> AP 1.
    assert average_precision([0.5, 0.4], [True, True], 2) == pytest.approx(1.0)
    # No detections at all: AP 0.
    assert average_precision([], [], 2) == 0.0
    with pytest.raises(MetricError, match="n_gt"):
        average_precision([0.5], [True], 0)
    with pytest.raises(MetricError, match="exceed"):
        average_precision([0.5, 0.4], [True, True], 1)


def test_matching_is_greedy_by_score_and_one_to_one() -> None:
    gts = [GroundTruth("img", "Bread", (0, 0, 10, 10))]
    dets = [
        Detection("img", "Bread", 0.6, (0, 0, 10, 10)),  # exact, but lower score
        Detection("img", "Bread", 0.9, (0, 0, 10, 8)),  # IoU 80/100 = 0.8: taken first
        Detection("img", "Drink", 0.99, (0, 0, 10, 10)),  # wrong class: never a TP
        Detection("other", "Bread", 0.95, (0, 0, 10, 10)),  # wrong image: never a TP
    ]
    # The 0.9 box claims the only Bread box; the exact 0.6 box is a duplicate -> FP.
    assert match_detections(dets, gts).tolist() == [False, True, False, False]


def test_iou_threshold_is_inclusive() -> None:
    gts = [GroundTruth("i", "Fruit", (0, 0, 10, 10))]
    # [0,0,10,5] inside the GT: IoU = 50/100 = 0.5 exactly -> TP at 0.5, FP at 0.51.
    dets = [Detection("i", "Fruit", 0.5, (0, 0, 10, 5))]
    assert match_detections(dets, gts, 0.5).tolist() == [True]
    assert match_detections(dets, gts, 0.51).tolist() == [False]


def test_detection_ap_per_class_and_mean() -> None:
    gts = [
        GroundTruth("a", "Plate", (0, 0, 100, 100)),
        GroundTruth("b", "Plate", (0, 0, 100, 100)),
        GroundTruth("a", "Cheese", (200, 200, 220, 220)),
    ]
    dets = [
        Detection("a", "Plate", 0.9, (0, 0, 100, 100)),  # TP
        Detection("b", "Plate", 0.8, (300, 300, 400, 400)),  # FP (no overlap)
        Detection("b", "Plate", 0.7, (0, 0, 100, 90)),  # TP, IoU 0.9
        Detection("a", "Yogurt", 0.5, (0, 0, 5, 5)),  # class without ground truth
    ]
    report = detection_ap(dets, gts, interpolation="all_point")
    # Plate: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # COCO's 101 points (the default): 0.00..0.50 (51 points) at 1, 0.51..1.00 (50) at 2/3.
    assert detection_ap(dets, gts).per_class["Plate"].ap == pytest.approx((51 + 50 * 2 / 3) / 101)
    # Cheese: ground truth but no detection -> AP 0. Yogurt has no ground truth: not averaged.
    assert report.per_class["Plate"].ap == pytest.approx(5 / 6)
    assert report.per_class["Plate"].n_tp == 2
    assert report.per_class["Cheese"].ap == 0.0
    assert "Yogurt" not in report.per_class
    assert report.mean_ap == pytest.approx((5 / 6 + 0) / 2)


def test_food_regions_by_hand() -> None:
    gts = [
        GroundTruth("a", "apple", (0, 0, 10, 10)),
        GroundTruth("a", "orange", (20, 0, 30, 10)),
        GroundTruth("a", "coin", (40, 0, 44, 4)),  # a scale reference: not a food region
        GroundTruth("b", "Plate", (0, 0, 100, 100)),
    ]
    dets = [
        Detection("a", "orange", 0.9, (0, 0, 10, 10)),  # on the apple, named orange: found
        Detection("a", "orange", 0.8, (20, 0, 30, 10)),  # the orange, named right
        Detection("a", "apple", 0.7, (0, 0, 10, 9)),  # the apple again: taken -> false
        Detection("a", "coin", 0.95, (40, 0, 44, 4)),  # the coin item: not food, dropped
        Detection("b", "Bread", 0.6, (0, 0, 100, 100)),  # the plate, named Bread unsure
        Detection("c", "Bread", 0.5, (0, 0, 5, 5)),  # a photo without food: false
    ]
    # Why the service leaves each one unidentified, None where it names it
    # (model.infer.naming decides; here by hand).
    named = [None, None, None, None, "class_probability", None]
    r = food_regions(dets, named, gts, ["a", "b", "c"], 0.5, non_food=("coin",))
    # 3 food regions (the coin left out), all found whatever the label: recall 3/3.
    assert (r.annotated, r.found, r.recall) == (3, 3, 1.0)
    # 5 food predictions, 3 matched: 2 false over 3 photos.
    assert (r.predicted, r.false_regions) == (5, 2)
    assert r.false_per_photo == pytest.approx(2 / 3)
    # Named wrong: the apple called orange. The Plate called Bread but not named is
    # unidentified (the service says "food"). The orange is named right.
    assert (r.named_wrong, r.named_right, r.unidentified) == (1, 1, 1)
    assert r.named_wrong_share == pytest.approx(1 / 3)
    assert (r.unidentified_right_by, r.unidentified_wrong_by) == ({}, {"class_probability": 1})
    assert (r.named_right_per_label, r.unidentified_right_per_label) == ({"orange": 1}, {})
    # The apple named orange, stopped by the open-set check, is a wrong name stopped; the
    # orange stopped is a right name lost.
    checked = food_regions(dets, ["other_prototype", "below_threshold", None, None,
                                  "class_probability", None], gts, ["a", "b", "c"],
                           non_food=("coin",))
    assert (checked.named_wrong, checked.named_right, checked.unidentified) == (0, 0, 3)
    assert checked.unidentified_right_by == {"below_threshold": 1}
    assert checked.unidentified_wrong_by == {"class_probability": 1, "other_prototype": 1}
    assert (checked.named_right_per_label, checked.unidentified_right_per_label) == (
        {}, {"orange": 1})
    # Without any prediction: nothing found, no false regions, no share.
    empty = food_regions([], [], gts, ["a", "b"], non_food=("coin",))
    assert (empty.recall, empty.false_per_photo, empty.named_wrong_share) == (0.0, 0.0, None)
    with pytest.raises(MetricError, match="image_ids"):
        food_regions(dets, named, gts, ["a"])
    with pytest.raises(MetricError, match="naming reasons"):
        food_regions(dets, named[:2], gts, ["a", "b", "c"])


def test_region_curve_by_hand() -> None:
    gts = [
        GroundTruth("a", "apple", (0, 0, 10, 10)),
        GroundTruth("a", "orange", (20, 0, 30, 10)),
        GroundTruth("a", "coin", (40, 0, 44, 4)),  # not a food region
        GroundTruth("b", "Plate", (0, 0, 100, 100)),
    ]
    dets = [
        Detection("a", "orange", 0.9, (0, 0, 10, 10)),  # the apple: found
        Detection("a", "coin", 0.95, (40, 0, 44, 4)),  # dropped
        Detection("c", "Bread", 0.7, (0, 0, 5, 5)),  # false
        Detection("a", "apple", 0.7, (0, 0, 10, 9)),  # the apple again, taken: false
        Detection("b", "Bread", 0.4, (0, 0, 100, 100)),  # the plate: found
        Detection("a", "orange", 0.2, (20, 0, 30, 10)),  # the orange: found
    ]
    c = region_curve(dets, gts, ["a", "b", "c", "d"], 0.5, non_food=("coin",))
    # One entry per distinct score, descending; the two at 0.7 come in together.
    assert c.thresholds.tolist() == [0.9, 0.7, 0.4, 0.2]
    assert c.recall.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1.0])
    assert c.false_per_photo.tolist() == pytest.approx([0.0, 0.5, 0.5, 0.5])
    # The lowest threshold within a rate of false regions gives the most recall there.
    assert c.at_false(0.0) == (pytest.approx(1 / 3), 0.9)
    assert c.at_false(0.5) == (pytest.approx(1.0), 0.2)
    # Every point of the curve is what food_regions gives at that threshold.
    for t, recall, false in zip(c.thresholds, c.recall, c.false_per_photo, strict=True):
        kept = [d for d in dets if d.score >= t]
        r = food_regions(kept, [None] * len(kept), gts, ["a", "b", "c", "d"], 0.5,
                         non_food=("coin",))
        assert (r.recall, r.false_per_photo) == (pytest.approx(recall), pytest.approx(false))
    # Nothing predicted: no point, so no recall at any rate.
    empty = region_curve([], gts, ["a", "b"], non_food=("coin",))
    assert empty.thresholds.size == 0 and empty.at_false(1.0) == (0.0, None)
    # Even the top threshold over the rate: (0, None).
    assert region_curve(dets[2:3], gts, ["c", "a", "b"], non_food=("coin",)).at_false(
        0.1) == (0.0, None)
    with pytest.raises(MetricError, match="image_ids"):
        region_curve(dets, gts, ["a"])
    with pytest.raises(MetricError, match="annotated food region"):
        region_curve(dets, gts[2:3], ["a"], non_food=("coin",))


def test_mask_iou_and_matching_by_hand() -> None:
    gt1 = np.zeros((4, 4), bool)
    gt1[:2, :2] = True  # 4 px, top-left
    gt2 = np.zeros((4, 4), bool)
    gt2[2:, 2:] = True  # 4 px, bottom-right
    pred = np.zeros((4, 4), bool)
    pred[:2, :3] = True  # 6 px covering gt1 entirely
    # IoU(pred, gt1) = 4 / 6; pred does not touch gt2, so gt2 stays unmatched at 0.
    assert mask_iou(pred, gt1) == pytest.approx(2 / 3)
    assert matched_mask_ious([pred], [gt1, gt2]) == pytest.approx([2 / 3, 0.0])
    # Two predictions both near gt1: only the better one may claim it.
    worse = np.zeros((4, 4), bool)
    worse[0, 0] = True  # IoU with gt1 = 1/4
    assert matched_mask_ious([worse, pred], [gt1]) == pytest.approx([2 / 3])
    with pytest.raises(MetricError, match="shapes"):
        mask_iou(pred, np.zeros((3, 3), bool))


def test_grams_error_by_hand() -> None:
    # |110-100| = 10 (10%), |40-50| = 10 (20%), |300-300| = 0 (0%):
    # MAE = 20/3 g, MAE% = (10 + 20 + 0) / 3 = 10%.
    err = grams_error([110, 40, 300], [100, 50, 300])
    assert err.mae_g == pytest.approx(20 / 3)
    assert err.mae_pct == pytest.approx(10.0)
    assert err.n == 3
    with pytest.raises(MetricError, match="> 0"):
        grams_error([1.0], [0.0])
    with pytest.raises(MetricError, match="length"):
        grams_error([1.0, 2.0], [1.0])


def test_ece_by_hand() -> None:
    # 5 bins of width 0.2. Confidences 0.1, 0.15 -> bin 0 (mean .125, 1 of 2 right: acc .5);
    # 0.9, 0.95, 1.0 -> bin 4 (mean .95, 3 of 3 right: acc 1.0); 0.4 -> bin 1 (0.4 is in
    # (0.2, 0.4]; mean .4, wrong: acc 0). N = 6.
    # ECE = 2/6 * |.5 - .125| + 1/6 * |0 - .4| + 3/6 * |1 - .95| = .125 + .0667 + .025 = .21667
    cal = expected_calibration_error(
        [0.1, 0.15, 0.9, 0.95, 1.0, 0.4], [True, False, True, True, True, False], n_bins=5
    )
    assert cal.ece == pytest.approx(0.125 + 0.4 / 6 + 0.025)
    assert [b.count for b in cal.bins] == [2, 1, 0, 0, 3]
    assert cal.bins[1].mean_confidence == pytest.approx(0.4)


def test_ece_zero_confidence_and_perfect_calibration() -> None:
    # Upper edges belong to their bin: 0.6 is in (0.4, 0.6] (bin 2 of 5), 0.2 in bin 0.
    assert [b.count for b in expected_calibration_error([0.6, 0.2], [True, True], 5).bins] == [
        1, 0, 1, 0, 0
    ]
    # Confidence 0 belongs to the first bin; 0 confidence and always wrong is calibrated.
    assert expected_calibration_error([0.0, 0.0], [False, False]).ece == 0.0
    # Confidence 0.75 with 3 of 4 right: |0.75 - 0.75| = 0.
    assert expected_calibration_error([0.75] * 4, [True, True, True, False]).ece == pytest.approx(0)
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [True])


def test_identification_accuracy_and_ci_by_hand() -> None:
    assert identification_accuracy(["a", "b", "c", "a"], ["a", "b", "a", "a"]) == 0.75
    # Trials 0.8, 0.9, 1.0: mean 0.9, sample sd 0.1, half-width 1.96 * 0.1 / sqrt(3) = 0.11316.
    ci = mean_ci95([0.8, 0.9, 1.0])
    assert ci.mean == pytest.approx(0.9)
    assert ci.ci_high - ci.mean == pytest.approx(1.959964 * 0.1 / math.sqrt(3), rel=1e-6)
    assert ci.ci_low == pytest.approx(0.9 - 0.113159, abs=1e-6)
    assert mean_ci95([0.5]).ci_low == 0.5
    with pytest.raises(MetricError, match="at least one"):
        mean_ci95([])


def test_bootstrap_map_interval_resamples_whole_groups() -> None:
    # Run A: its two shots found; run B: its two shots missed. A draw of (A, A) scores 1,
    # (A, B) 0.5 and (B, B) 0: each a quarter, half and quarter of the draws.
    gts = [GroundTruth(i, "bread", (0, 0, 10, 10)) for i in ("a1", "a2", "b1", "b2")]
    dets = [Detection(i, "bread", 0.9, (0, 0, 10, 10)) for i in ("a1", "a2")]
    groups = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    assert bootstrap_map_ci95(dets, gts, groups, draws=400) == (0.0, 1.0)
    perfect = [Detection(g.image_id, "bread", 0.9, g.box) for g in gts]
    assert bootstrap_map_ci95(perfect, gts, groups) == (1.0, 1.0)
    with pytest.raises(MetricError, match="two groups"):
        bootstrap_map_ci95(dets, gts, {"a1": "A", "a2": "A"})
