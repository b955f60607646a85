"""Pseudo masks from boxes, checked against masks drawn by hand on the same photos."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.data.coco import CocoDataset
from model.data.importers.labelme import import_labelme
from model.data.masks import annotation_mask
from model.data.pseudo import (
    add_pseudo_masks,
    add_refined_masks,
    box_mask,
    ellipse_mask,
    refined_ellipse,
)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_grabcut_matches_hand_drawn_outlines(ecustfd_ds: CocoDataset, fixtures_dir: Path) -> None:
    im = next(i for i in ecustfd_ds.images if i.file_name == "mix001T(1).JPG")
    out = add_pseudo_masks(ecustfd_ds, [a.id for a in ecustfd_ds.annotations
                                        if a.image_id == im.id])
    hand = import_labelme(fixtures_dir / "labelme")
    hand_names = hand.category_names()
    truth = {hand_names[a.category_id]: annotation_mask(a, im.height, im.width)
             for a in hand.annotations}
    names = out.category_names()
    for a in (a for a in out.annotations if a.image_id == im.id):
        mask = annotation_mask(a, im.height, im.width)
        assert mask is not None and a.mask_source == "pseudo" and a.area == mask.sum()
        assert not (mask & ~box_mask(im.height, im.width, a.bbox)).any()
        hand_mask = truth[names[a.category_id]]
        assert hand_mask is not None
        assert _iou(mask, hand_mask) > 0.85, names[a.category_id]
    # Only the chosen annotations were touched.
    others = [a for a in out.annotations if a.image_id != im.id]
    assert all(a.segmentation is None for a in others)


def test_pseudo_masks_are_reproducible_and_keep_existing(mealtray_ds: CocoDataset) -> None:
    first = [x.id for x in mealtray_ds.annotations if x.image_id == mealtray_ds.images[0].id]
    a = add_pseudo_masks(mealtray_ds, first)
    b = add_pseudo_masks(mealtray_ds, first)
    assert [x.segmentation for x in a.annotations] == [x.segmentation for x in b.annotations]
    assert sum(x.segmentation is not None for x in a.annotations) == len(first)
    again = add_pseudo_masks(a, first)  # already masked: left alone
    assert again.annotations == a.annotations


def test_ellipse_for_round_references() -> None:
    m = ellipse_mask(100, 100, [10, 20, 40, 40])
    assert abs(m.sum() - np.pi * 20 * 20) < 0.05 * np.pi * 400
    assert m[40, 30] and not m[21, 11]


def _plate_scene(plate: bool) -> tuple[np.ndarray, np.ndarray]:
    """A grey tray with a red food disc (radius 50) at (200, 150), on a white plate (radius
    100) or not; the food disc as a bool mask."""
    rgb = np.full((300, 400, 3), (120, 125, 130), np.uint8)
    if plate:
        cv2.circle(rgb, (200, 150), 100, (235, 235, 232), -1)
    cv2.circle(rgb, (200, 150), 50 if plate else 100, (200, 40, 30), -1)
    rgb = np.clip(rgb + np.random.default_rng(0).integers(-6, 7, rgb.shape), 0, 255)
    food = np.zeros((300, 400), np.uint8)
    cv2.circle(food, (200, 150), 50 if plate else 100, 1, -1)
    return rgb.astype(np.uint8), food.astype(bool)


def test_refined_target_is_the_food_not_its_plate() -> None:
    # The box holds the plate (as mealtray's boxes do): the target is the food on it.
    rgb, food = _plate_scene(plate=True)
    box = [100.0, 50.0, 200.0, 200.0]
    assert _iou(ellipse_mask(300, 400, box), food) < 0.3
    refined = refined_ellipse(rgb, box)
    assert refined is not None and _iou(refined, food) > 0.9
    # A food filling its own box (no neutral rim): no refined target, the ellipse stays.
    rgb, _ = _plate_scene(plate=False)
    assert refined_ellipse(rgb, box) is None
    assert refined_ellipse(rgb, [10.0, 10.0, 3.0, 3.0]) is None  # too small to refine


def test_refined_targets_on_real_trays(mealtray_ds: CocoDataset, ecustfd_ds: CocoDataset,
                                       ) -> None:
    out = add_refined_masks(mealtray_ds)
    refined = [(a, im) for a in out.annotations for im in out.images
               if im.id == a.image_id and a.segmentation is not None]
    assert refined and all(a.mask_source == "pseudo" for a, _ in refined)
    for a, im in refined:  # inside its box, and smaller than the box's ellipse
        mask = annotation_mask(a, im.height, im.width)
        assert mask is not None and a.area == mask.sum()
        assert not (mask & ~box_mask(im.height, im.width, a.bbox)).any()
        assert mask.sum() < ellipse_mask(im.height, im.width, a.bbox).sum()
    assert add_refined_masks(mealtray_ds).annotations == out.annotations  # reproducible
    # The coin is never refined; annotations that have a mask keep it.
    ec = add_refined_masks(ecustfd_ds)
    names = ec.category_names()
    assert all(a.segmentation is None for a in ec.annotations if names[a.category_id] == "coin")
    masked = add_pseudo_masks(mealtray_ds)
    assert add_refined_masks(masked).annotations == masked.annotations
