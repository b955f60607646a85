"""LabelMe, mask-PNG, plain COCO and Nutrition5k importers on real files.

tests/fixtures/labelme/mix001T(1).json and tests/fixtures/maskpng/masks/mix012T(4).png
were drawn by hand for this project on the ECUSTFD fixture photos (see ATTRIBUTION.md).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.data import coco
from model.data.importers.coco_plain import import_coco
from model.data.importers.common import SourceFormatError
from model.data.importers.ecustfd import import_ecustfd
from model.data.importers.labelme import import_labelme
from model.data.importers.maskpng import import_mask_png
from model.data.importers.nutrition5k import import_nutrition5k
from model.data.masks import annotation_mask


def _box_iou(a: list[float], b: list[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def _voc_boxes(fixtures_dir: Path, name: str) -> dict[str, list[float]]:
    """The ECUSTFD boxes of one fixture photo (mix012's 'mango' already fixed to orange)."""
    ref = import_ecustfd(fixtures_dir / "ecustfd")
    im = next(i for i in ref.images if i.file_name == name)
    names = ref.category_names()
    return {names[a.category_id]: a.bbox for a in ref.annotations if a.image_id == im.id}


def test_labelme_polygons_agree_with_the_voc_boxes(fixtures_dir: Path) -> None:
    ds = import_labelme(fixtures_dir / "labelme")
    assert len(ds.images) == 1 and ds.image_path(ds.images[0]).is_file()
    names = ds.category_names()
    voc = _voc_boxes(fixtures_dir, "mix001T(1).JPG")
    assert sorted(names[a.category_id] for a in ds.annotations) == ["apple", "coin", "orange"]
    for a in ds.annotations:
        assert a.mask_source == "gt" and isinstance(a.segmentation, list)
        # Hand-drawn outlines and the dataset's own boxes describe the same objects.
        assert _box_iou(a.bbox, voc[names[a.category_id]]) > 0.85


def test_labelme_errors_name_the_shape(fixtures_dir: Path, tmp_path: Path) -> None:
    doc = json.loads((fixtures_dir / "labelme" / "mix001T(1).json").read_text())
    doc["imagePath"] = str((fixtures_dir / "ecustfd/JPEGImages/mix001T(1).JPG").resolve())
    doc["shapes"][1]["shape_type"] = "line"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(SourceFormatError, match=r"shapes\[1\]\.shape_type: 'line'"):
        import_labelme(bad)
    doc["shapes"][1]["shape_type"] = "rectangle"
    doc["shapes"][1]["points"] = [[489, 252], [736, 523]]
    bad.write_text(json.dumps(doc))
    rect = next(a for a in import_labelme(bad).annotations if a.category_id == 2)
    assert rect.bbox == [489.0, 252.0, 248.0, 272.0]  # filled pixels 489..736, 252..523
    doc["imageWidth"] = 1000
    bad.write_text(json.dumps(doc))
    with pytest.raises(SourceFormatError, match="differ from the image"):
        import_labelme(bad)


def test_mask_png_instances(fixtures_dir: Path) -> None:
    root = fixtures_dir / "maskpng"
    ds = import_mask_png(fixtures_dir / "ecustfd" / "JPEGImages", root / "masks",
                         root / "classes.txt")
    names = ds.category_names()
    assert [c.name for c in ds.categories] == ["lemon", "orange", "coin"]
    voc = _voc_boxes(fixtures_dir, "mix012T(4).JPG")
    raw = cv2.imread(str(root / "masks" / "mix012T(4).png"), cv2.IMREAD_UNCHANGED)
    im = ds.images[0]
    for a in ds.annotations:
        name = names[a.category_id]
        assert a.mask_source == "gt" and _box_iou(a.bbox, voc[name]) > 0.8
        mask = annotation_mask(a, im.height, im.width)
        assert mask is not None
        value = {"lemon": 1, "orange": 2, "coin": 3}[name]
        assert np.array_equal(mask, raw == value) and a.area == float(mask.sum())


def test_mask_png_errors(fixtures_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures_dir / "maskpng", tmp_path / "m")
    (tmp_path / "m" / "classes.txt").write_text("0 background\n1 lemon\n2 orange\n")
    with pytest.raises(SourceFormatError, match="pixel value 3 is not in the classes file"):
        import_mask_png(fixtures_dir / "ecustfd" / "JPEGImages", tmp_path / "m" / "masks",
                        tmp_path / "m" / "classes.txt")
    with pytest.raises(SourceFormatError, match="no image named"):
        import_mask_png(tmp_path, tmp_path / "m" / "masks", tmp_path / "m" / "classes.txt")


def test_plain_coco_round_trip_from_another_tool(fixtures_dir: Path, tmp_path: Path) -> None:
    src = import_labelme(fixtures_dir / "labelme")
    plain = coco.to_dict(src)
    plain.pop("image_root")
    for a in plain["annotations"]:
        a.pop("mask_source")  # other tools do not write it
    plain["annotations"][0]["extra_tool_field"] = 1
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(plain))
    ds = import_coco(path, image_root=src.image_root)
    assert [a.segmentation for a in ds.annotations] == [a.segmentation for a in src.annotations]
    assert {a.mask_source for a in ds.annotations} == {"gt"}
    plain["annotations"][0]["bbox"] = [0, 0, -1, 3]
    path.write_text(json.dumps(plain))
    with pytest.raises(SourceFormatError, match=r"annotations\[0\]\.bbox"):
        import_coco(path)


def test_nutrition5k_dish_grams(fixtures_dir: Path, tmp_path: Path) -> None:
    root = fixtures_dir / "nutrition5k"
    ds = import_nutrition5k(root / "frames", [root / "dish_metadata_cafe1.csv"])
    assert len(ds.images) == 4 and not ds.annotations
    by_dish = {im.split_group: im.dish or {} for im in ds.images}
    assert by_dish["dish_1550704750"]["total_grams"] == 83.0
    assert by_dish["dish_1550705370"]["ingredients"] == [
        {"id": "ingr_0000000025", "name": "beef", "grams": 49.0, "kcal": 122.5}]
    bad = tmp_path / "meta.csv"
    bad.write_text("dish_1550704750,136.9,83,2.9,0\n")
    with pytest.raises(SourceFormatError, match=r"meta.csv:1: expected 6 dish fields"):
        import_nutrition5k(root / "frames", [bad])
    bad.write_text("dish_1550704750,136.9,0,2.9,0,25.7\n")
    with pytest.raises(SourceFormatError, match="no metadata row for dish_1550705370"):
        import_nutrition5k(root / "frames", [bad])


@pytest.mark.shared_data
def test_full_nutrition5k_frames(shared_data: Path) -> None:
    meta = sorted((shared_data / "nutrition" / "nutrition5k").glob("dish_metadata_cafe*.csv"))
    ds = import_nutrition5k(shared_data / "images" / "nutrition5k" / "frames", meta)
    assert len(ds.images) == 40 and len({i.split_group for i in ds.images}) == 2


def test_nutrition5k_overhead_layout_links_depth(fixtures_dir: Path, tmp_path: Path) -> None:
    # The full Nutrition5k overhead layout: dish_<id>/rgb.png + depth_raw.png (uint16).
    root = fixtures_dir / "nutrition5k"
    dish = tmp_path / "dish_1550704750"
    dish.mkdir()
    rgb = cv2.imread(str(root / "frames" / dish.name / "camera_A_frame_001.jpeg"))
    assert rgb is not None
    cv2.imwrite(str(dish / "rgb.png"), rgb)
    cv2.imwrite(str(dish / "depth_raw.png"), np.full(rgb.shape[:2], 4000, np.uint16))
    ds = import_nutrition5k(tmp_path, [root / "dish_metadata_cafe1.csv"])
    assert [(im.file_name, im.depth_file) for im in ds.images] == [
        ("dish_1550704750/rgb.png", "dish_1550704750/depth_raw.png")]
    assert ds.info["depth_units_per_m"] == 10_000
