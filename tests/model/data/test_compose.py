"""Tray composer on real crops: determinism, grams ~ area^1.5, masks, scene kinds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.data import coco
from model.data.backgrounds import KINDS, draw_scene
from model.data.coco import CocoDataset
from model.data.compose import (
    FoodCrop,
    compose_dataset,
    compose_image,
    extract_crops,
    place_scale,
)
from model.data.masks import annotation_mask, mask_bbox


@pytest.fixture(scope="module")
def crops(ecustfd_ds: CocoDataset, mealtray_ds: CocoDataset) -> list[FoodCrop]:
    return extract_crops(ecustfd_ds) + extract_crops(mealtray_ds, per_label=1, seed=0)


def test_crops_keep_grams_scale_and_exclude_the_coin(crops: list[FoodCrop]) -> None:
    labels = {c.label for c in crops}
    assert "coin" not in labels and {"apple", "orange", "Plate"} <= labels
    apple = next(c for c in crops if c.label == "apple")
    assert apple.grams == 219.0 and apple.px_per_cm is not None
    assert apple.rgba.shape[2] == 4 and (apple.rgba[..., 3] == 255).mean() > 0.6
    assert all(c.grams is None and c.px_per_cm is None for c in crops if c.label == "Plate")


def test_same_seed_same_dataset(crops: list[FoodCrop], tmp_path: Path) -> None:
    a = compose_dataset(crops, tmp_path / "a", 4, seed=7)
    b = compose_dataset(crops, tmp_path / "b", 4, seed=7)
    c = compose_dataset(crops, tmp_path / "c", 4, seed=8)
    assert a.annotations == b.annotations
    assert [im.file_name for im in a.images] == [im.file_name for im in b.images]
    for ia, ib in zip(a.images, b.images, strict=True):
        assert a.image_path(ia).read_bytes() == b.image_path(ib).read_bytes()
    assert a.annotations != c.annotations


def test_grams_follow_area_to_the_power_1_5(crops: list[FoodCrop]) -> None:
    apple = next(c for c in crops if c.label == "apple")
    assert apple.px_per_cm is not None and apple.grams is not None
    src_area = float((apple.rgba[..., 3] > 127).sum())
    for seed in range(6):
        _, items, ppcm = compose_image([apple], "compartment", (640, 480),
                                       np.random.default_rng(seed))
        for it in items:
            assert it.grams is not None
            # Area in the scene, brought back to the source's scale: the size jitter f^2.
            f2 = it.mask.sum() / src_area * (apple.px_per_cm / ppcm) ** 2
            assert it.grams / apple.grams == pytest.approx(f2**1.5, rel=0.06)


def test_place_scale_fits_the_region(crops: list[FoodCrop]) -> None:
    apple = next(c for c in crops if c.label == "apple")
    scene = draw_scene("compartment", np.random.default_rng(0), (640, 480))
    small = min(scene.regions, key=lambda r: r.w * r.h)
    rng = np.random.default_rng(0)
    # A scene 5x finer than the source would make the apple huge: it must shrink to fit.
    factor, grams = place_scale(apple, 5 * apple.px_per_cm, small, rng)  # type: ignore[operator]
    h, w = apple.rgba.shape[:2]
    assert h * factor <= small.h + 1 and w * factor <= small.w + 1
    assert grams is not None and grams < apple.grams  # type: ignore[operator]


def test_composed_dataset_is_valid_and_complete(crops: list[FoodCrop], tmp_path: Path) -> None:
    ds = compose_dataset(crops, tmp_path, 8, seed=1)
    back = coco.load(coco.save(ds, tmp_path / "composed.json"))
    assert {im.file_name.split("_")[0] for im in back.images} == set(KINDS)
    assert all(im.px_per_cm and im.split_group for im in back.images)
    assert len(back.annotations) >= 8
    for a in back.annotations:
        im = next(i for i in back.images if i.id == a.image_id)
        mask = annotation_mask(a, im.height, im.width)
        assert mask is not None and a.mask_source == "composed"
        assert mask_bbox(mask) == a.bbox and a.area == mask.sum()
    names = back.category_names()
    for a in back.annotations:
        if names[a.category_id] in {"Plate", "Starter", "Yogurt", "Fruit"}:
            assert a.grams is None


def test_bad_requests(crops: list[FoodCrop], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no food crops"):
        compose_dataset([], tmp_path, 1)
    with pytest.raises(ValueError, match="kinds from"):
        compose_dataset(crops, tmp_path, 1, kinds=["buffet"])
    with pytest.raises(ValueError, match="too small"):
        draw_scene("plain", np.random.default_rng(0), (32, 32))
