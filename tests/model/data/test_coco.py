"""The canonical format: round trip, and every bad field named in the error."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from model.data import coco
from model.data.coco import CocoDataset, CocoFormatError


def test_round_trip_keeps_every_field(ecustfd_ds: CocoDataset, tmp_path: Path) -> None:
    path = coco.save(ecustfd_ds, tmp_path / "sub" / "ecustfd.json")
    back = coco.load(path)
    assert back.images == ecustfd_ds.images
    assert back.annotations == ecustfd_ds.annotations
    assert back.categories == ecustfd_ds.categories
    assert back.info == ecustfd_ds.info
    # image_root is stored relative to the JSON file and resolves to the same folder.
    raw = json.loads(path.read_text())
    assert not Path(raw["image_root"]).is_absolute()
    assert back.image_path(back.images[0]).is_file()


def test_optional_fields_are_omitted_when_unset(mealtray_ds: CocoDataset, tmp_path: Path) -> None:
    raw = json.loads(coco.save(mealtray_ds, tmp_path / "m.json").read_text())
    assert "grams" not in raw["annotations"][0]
    assert "px_per_cm" not in raw["images"][0]
    assert raw["images"][0]["split_group"]


def _raw(ds: CocoDataset) -> dict[str, Any]:
    return coco.to_dict(ds)


BAD_CASES = [
    (lambda d: d.pop("images"), "images: missing"),
    (lambda d: d["images"][0].pop("width"), "images[0].width: missing"),
    (lambda d: d["images"][0].update(width=0), "images[0].width"),
    (lambda d: d["images"][1].update(id=d["images"][0]["id"]), "images[1].id: duplicate"),
    (lambda d: d["images"][0].update(px_per_cm=-3), "images[0].px_per_cm"),
    (lambda d: d["images"][0].update(meal_state="during"), "images[0].meal_state"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0].bbox"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 0, 5]), "annotations[0].bbox"),
    (lambda d: d["annotations"][0].update(bbox=[900, 2, 500, 5]), "outside"),
    (lambda d: d["annotations"][0].update(image_id=999), "annotations[0].image_id"),
    (lambda d: d["annotations"][0].update(category_id=999), "annotations[0].category_id"),
    (lambda d: d["annotations"][0].update(grams=0), "annotations[0].grams"),
    (lambda d: d["annotations"][0].update(mask_source="pseudo"), "annotations[0].mask_source"),
    (
        lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]], mask_source="gt"),
        "annotations[0].segmentation[0]",
    ),
    (
        lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5, 6]]),
        "annotations[0].mask_source",
    ),
    (
        lambda d: d["annotations"][0].update(
            segmentation={"size": [1, 1], "counts": [1]}, mask_source="gt"
        ),
        "annotations[0].segmentation.size",
    ),
    (lambda d: d["categories"][1].update(name=d["categories"][0]["name"]), "categories[1].name"),
    (lambda d: d["categories"][0].update(food_id=""), "categories[0].food_id"),
    (lambda d: d["annotations"][2].update(gram=12.0), "annotations[2].gram: unknown field"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_CASES)
def test_bad_field_is_named(ecustfd_ds: CocoDataset, mutate: Any, message: str) -> None:
    data = copy.deepcopy(_raw(ecustfd_ds))
    mutate(data)
    with pytest.raises(CocoFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        coco.from_dict(data)


def test_load_reports_file_problems(tmp_path: Path) -> None:
    with pytest.raises(CocoFormatError, match="file not found"):
        coco.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CocoFormatError, match="not valid JSON"):
        coco.load(bad)


def test_subset_and_renumber(mealtray_ds: CocoDataset) -> None:
    keep = [im.id for im in mealtray_ds.images[2:5]]
    sub = coco.renumber(mealtray_ds.subset(keep))
    assert [im.id for im in sub.images] == [1, 2, 3]
    assert {a.image_id for a in sub.annotations} == {1, 2, 3}
    n_expected = sum(1 for a in mealtray_ds.annotations if a.image_id in keep)
    assert len(sub.annotations) == n_expected
    coco.validate(sub)
