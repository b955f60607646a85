"""Remapping to the one label map and merging real datasets."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from model.data import coco
from model.data.coco import CocoDataset, CocoFormatError
from model.data.ops import merge, remap_categories, remap_to_label_map
from nutrition_db import label_map


def test_remap_to_label_map_uses_its_order_and_food_ids(ecustfd_ds: CocoDataset) -> None:
    out = remap_to_label_map(ecustfd_ds)
    lm = label_map()
    assert [c.name for c in out.categories] == lm.labels
    assert [c.id for c in out.categories] == list(range(1, len(lm.labels) + 1))
    apple = next(c for c in out.categories if c.name == "apple")
    assert apple.food_id == lm.food_id("apple") and apple.food_id
    coin = next(c for c in out.categories if c.name == "coin")
    assert coin.food_id is None
    before = Counter(ecustfd_ds.category_names()[a.category_id] for a in ecustfd_ds.annotations)
    after = Counter(out.category_names()[a.category_id] for a in out.annotations)
    assert before == after


def test_mealtray_classes_are_in_the_label_map(mealtray_ds: CocoDataset) -> None:
    out = remap_to_label_map(mealtray_ds)
    assert len(out.annotations) == len(mealtray_ds.annotations)
    names = out.category_names()
    assert {names[a.category_id] for a in out.annotations} <= {"Starter", "Yogurt", "Plate",
                                                               "Bread", "Drink", "Fruit",
                                                               "Dessert", "Cheese"}


def test_unknown_category_needs_rename_or_drop(ecustfd_ds: CocoDataset) -> None:
    with pytest.raises(CocoFormatError, match=r"\['egg'\] are not in the label map"):
        remap_categories(ecustfd_ds, ["apple", "orange", "lemon", "doughnut", "coin"])
    dropped = remap_categories(ecustfd_ds, ["apple", "coin"], drop_unknown=True)
    assert {a.category_id for a in dropped.annotations} == {1, 2}
    renamed = remap_categories(ecustfd_ds, ["fruit", "coin"], drop_unknown=True,
                               rename={"apple": "fruit", "orange": "fruit"})
    # apples: apple003T(1), mix001T(1); oranges: orange002T(1), mix001T(1), mix012T(4)
    assert sum(a.category_id == 1 for a in renamed.annotations) == 5


def test_merge_two_real_sets(mealtray_ds: CocoDataset, ecustfd_ds: CocoDataset,
                             tmp_path: Path) -> None:
    both = merge([mealtray_ds, ecustfd_ds])
    assert len(both.images) == len(mealtray_ds.images) + len(ecustfd_ds.images)
    assert len(both.annotations) == len(mealtray_ds.annotations) + len(ecustfd_ds.annotations)
    assert len(both.categories) == 8 + 6  # mealtray classes + 5 foods + coin in the fixtures
    for im in both.images:
        assert both.image_path(im).is_file()
    back = coco.load(coco.save(both, tmp_path / "both.json"))
    assert back.images == both.images
    grams = sorted(a.grams for a in back.annotations if a.grams)
    assert grams == sorted(a.grams for a in ecustfd_ds.annotations if a.grams)


def test_merge_moves_depth_files_with_their_images(ecustfd_ds: CocoDataset,
                                                  mealtray_ds: CocoDataset) -> None:
    first = replace(ecustfd_ds.images[0], depth_file="depth/apple003T(1).png")
    with_depth = replace(ecustfd_ds, images=[first, *ecustfd_ds.images[1:]])
    both = merge([mealtray_ds, with_depth])
    moved = next(im for im in both.images if im.depth_file)
    assert moved.file_name == "ecustfd/JPEGImages/" + first.file_name
    assert moved.depth_file == "ecustfd/JPEGImages/depth/apple003T(1).png"
