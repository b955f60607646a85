"""Pseudo masks from boxes, checked against masks drawn by hand on the same photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from model.data.coco import CocoDataset
from model.data.importers.labelme import import_labelme
from model.data.masks import annotation_mask
from model.data.pseudo import add_pseudo_masks, box_mask, ellipse_mask


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
