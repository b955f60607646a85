"""Mealtray importer on the real kiosk files: labels, boxes, capture runs."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from model.data.coco import CocoDataset
from model.data.importers.common import SourceFormatError
from model.data.importers.mealtray import (
    SAME_TRAY_MAX_DISTANCE,
    import_mealtray,
    read_names,
    shot_number,
    tray_distance,
)
from model.data.splits import train_val_split

PREFIX = "20220308112654_000042_059_0000000001_B______xx_C "


def test_class_names_exactly_as_obj_names(mealtray_ds: CocoDataset, fixtures_dir: Path) -> None:
    names = read_names(fixtures_dir / "mealtray" / "obj.names")
    assert names == ["Plate", "Starter", "Bread", "Drink", "Yogurt", "Dessert", "Fruit", "Cheese"]
    assert [c.name for c in mealtray_ds.categories] == names
    assert [c.id for c in mealtray_ds.categories] == list(range(1, 9))


def test_boxes_converted_from_relative_yolo(mealtray_ds: CocoDataset) -> None:
    im = next(i for i in mealtray_ds.images if i.file_name == PREFIX + "(2770).jpg")
    assert (im.width, im.height) == (1024, 768)
    anns = [a for a in mealtray_ds.annotations if a.image_id == im.id]
    names = mealtray_ds.category_names()
    assert sorted(names[a.category_id] for a in anns) == ["Starter", "Yogurt"]
    starter = next(a for a in anns if names[a.category_id] == "Starter")
    # txt row: 1 0.465562 0.786530 0.248486 0.322852
    w, h = 0.248486 * 1024, 0.322852 * 768
    assert starter.bbox == pytest.approx([0.465562 * 1024 - w / 2, 0.786530 * 768 - h / 2, w, h])
    assert starter.area == pytest.approx(w * h)
    assert starter.segmentation is None and starter.mask_source is None


def test_capture_runs_survive_a_missed_label(mealtray_ds: CocoDataset) -> None:
    runs: dict[str, list[str]] = {}
    for im in mealtray_ds.images:
        assert im.split_group is not None
        runs.setdefault(im.split_group, []).append(im.file_name)
    # 2770-2774 are one tray although 2772 has a Plate box the others miss; 2775-2777 the next.
    assert sorted(len(v) for v in runs.values()) == [3, 5]
    assert sorted(runs) == [PREFIX + "(2770)", PREFIX + "(2775)"]


def test_shot_number_is_the_capture_number(mealtray_ds: CocoDataset) -> None:
    # The number that orders a kiosk's shots, from any path of its photo.
    assert shot_number(f"some/dir/{PREFIX}(1538).jpg") == 1538
    assert sorted(shot_number(im.file_name) for im in mealtray_ds.images)[:1] == [2770]
    with pytest.raises(SourceFormatError, match="no capture number"):
        shot_number("tray.jpg")


def test_tray_distance_separates_same_and_other_tray(fixtures_dir: Path) -> None:
    d = fixtures_dir / "mealtray" / "labeled"
    same = tray_distance(d / (PREFIX + "(2771).jpg"), d / (PREFIX + "(2772).jpg"))
    other = tray_distance(d / (PREFIX + "(2774).jpg"), d / (PREFIX + "(2775).jpg"))
    assert same < SAME_TRAY_MAX_DISTANCE < other


def test_split_keeps_runs_whole(mealtray_ds: CocoDataset) -> None:
    train, val = train_val_split(mealtray_ds, val_fraction=0.3, seed=1)
    assert len(train.images) + len(val.images) == len(mealtray_ds.images)
    assert {i.split_group for i in train.images}.isdisjoint({i.split_group for i in val.images})
    assert val.images and train.images


def _copy(fixtures_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(fixtures_dir / "mealtray", tmp_path / "mealtray")
    return tmp_path / "mealtray" / "labeled"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("9 0.5 0.5 0.1 0.1\n", "class 9 not in obj.names"),
        ("1 0.5 0.5 0.1\n", "expected 'class cx cy w h'"),
        ("1 a 0.5 0.1 0.1\n", "not numbers"),
        ("1 0.5 0.5 1.5 0.1\n", "out of range"),
    ],
)
def test_bad_label_line_is_named(
    fixtures_dir: Path, tmp_path: Path, content: str, message: str
) -> None:
    root = _copy(fixtures_dir, tmp_path)
    (root / (PREFIX + "(2773).txt")).write_text(content)
    with pytest.raises(SourceFormatError, match=message) as err:
        import_mealtray(root)
    assert "(2773).txt:1" in str(err.value)


def test_missing_label_file_and_names(fixtures_dir: Path, tmp_path: Path) -> None:
    root = _copy(fixtures_dir, tmp_path)
    (root / (PREFIX + "(2773).txt")).unlink()
    with pytest.raises(SourceFormatError, match="label file not found"):
        import_mealtray(root)
    with pytest.raises(SourceFormatError, match=r"no obj\.names"):
        import_mealtray(tmp_path)


@pytest.mark.shared_data
def test_full_mealtray_counts_and_split(shared_data: Path) -> None:
    ds = import_mealtray(shared_data / "images" / "mealtray" / "labeled")
    names = ds.category_names()
    per_class = Counter(names[a.category_id] for a in ds.annotations)
    assert len(ds.images) == 375 and len(ds.annotations) == 1262
    assert per_class["Plate"] == 345 and per_class["Cheese"] == 20
    groups = Counter(i.split_group for i in ds.images)
    assert len(groups) == 74
    train, val = train_val_split(ds)
    assert {i.split_group for i in train.images}.isdisjoint({i.split_group for i in val.images})
    assert 0.17 <= len(val.images) / len(ds.images) <= 0.23
