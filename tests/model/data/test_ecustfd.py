"""ECUSTFD importer on the real files: grams, coin scale, mix images, source errors."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from model.data.coco import CocoDataset
from model.data.importers.common import SourceFormatError
from model.data.importers.ecustfd import import_ecustfd, object_groups, read_weights
from model.data.splits import label_strata, train_val_split


def _image(ds: CocoDataset, name: str) -> tuple[int, dict[str, float | None], float | None]:
    im = next(i for i in ds.images if i.file_name == name)
    names = ds.category_names()
    grams = {names[a.category_id]: a.grams for a in ds.annotations if a.image_id == im.id}
    return im.id, grams, im.px_per_cm


def test_grams_and_coin_scale(ecustfd_ds: CocoDataset) -> None:
    _, grams, scale = _image(ecustfd_ds, "apple003T(1).JPG")
    assert grams == {"apple": 219.0, "coin": None}
    # coin box 645..710 x 56..116: mean of 65 and 60 px = 2.5 cm (model.infer.portion's rule)
    assert scale == pytest.approx(62.5 / 2.5)


def test_mix_image_gets_each_foods_weight(ecustfd_ds: CocoDataset) -> None:
    _, grams, _ = _image(ecustfd_ds, "mix001T(1).JPG")
    assert grams == {"apple": 219.0, "orange": 197.9, "coin": None}


def test_mislabelled_mix_food_is_corrected_and_recorded(ecustfd_ds: CocoDataset) -> None:
    # mix012T(4).xml calls the orange 'mango'; weights.csv lists lemon + orange for mix012.
    _, grams, _ = _image(ecustfd_ds, "mix012T(4).JPG")
    assert grams == {"lemon": 92.3, "orange": 222.0, "coin": None}
    fixes = ecustfd_ds.info["corrections"]
    assert {"file": "mix012T(4).xml", "label": "mango", "corrected_to": "orange"}.items() <= next(
        f for f in fixes if f["file"] == "mix012T(4).xml"
    ).items()


def test_impossible_coin_boxes(ecustfd_ds: CocoDataset) -> None:
    # doughnut006T(7): the coin box is a copy of the doughnut box -> coin dropped, no scale.
    _, grams, scale = _image(ecustfd_ds, "doughnut006T(7).JPG")
    assert grams == {"doughnut": 66.2} and scale is None
    # qiwi007T(3): the qiwi box sits on the coin -> the image is left out, and said so.
    assert "qiwi007T(3).JPG" not in {i.file_name for i in ecustfd_ds.images}
    assert [d["file"] for d in ecustfd_ds.info["dropped"]] == ["qiwi007T(3).xml"]


def test_mix_objects_share_a_group_with_the_same_physical_food(ecustfd_ds: CocoDataset) -> None:
    group = {i.file_name: i.split_group for i in ecustfd_ds.images}
    # mix001 repeats apple003's and orange002's exact volume and weight.
    assert group["mix001T(1).JPG"] == group["apple003T(1).JPG"] == group["orange002T(1).JPG"]
    assert group["mix012T(4).JPG"] == "lemon003"
    assert group["egg007T(1).JPG"] == "egg007"


def test_object_groups_join_only_exact_repeats(fixtures_dir: Path) -> None:
    groups = object_groups(read_weights(fixtures_dir / "ecustfd" / "weights.csv"))
    assert groups["mix001"] == groups["orange002"] == "apple003"
    assert groups["mix012"] == groups["orange011"] == "lemon003"
    assert groups["qiwi007"] == "qiwi007"


def test_split_never_shares_an_object(ecustfd_ds: CocoDataset) -> None:
    train, val = train_val_split(ecustfd_ds, val_fraction=0.3, seed=0)
    assert {i.split_group for i in train.images}.isdisjoint({i.split_group for i in val.images})
    assert len(train.images) + len(val.images) == len(ecustfd_ds.images)


def _copy(fixtures_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(fixtures_dir / "ecustfd", tmp_path / "ecustfd")
    return tmp_path / "ecustfd"


def test_source_errors(fixtures_dir: Path, tmp_path: Path) -> None:
    root = _copy(fixtures_dir, tmp_path)
    w = root / "weights.csv"
    w.write_text(w.read_text().replace("egg007,egg,60,68.9", "egg007,egg,60,heavy"))
    with pytest.raises(SourceFormatError, match=r"weights.csv:\d+: bad number"):
        import_ecustfd(root)  # a broken weights file always raises
    w.write_text("\n".join(line for line in w.read_text().splitlines() if "egg007" not in line))
    with pytest.raises(SourceFormatError, match=r"egg007 has no row in weights\.csv"):
        import_ecustfd(root, strict=True)
    (root / "Annotations" / "apple003T(1).xml").write_text("<annotation><size>")
    with pytest.raises(SourceFormatError, match=r"apple003T\(1\).xml: malformed VOC XML"):
        import_ecustfd(root, strict=True)


def test_lenient_import_drops_only_the_bad_images(fixtures_dir: Path, tmp_path: Path) -> None:
    root = _copy(fixtures_dir, tmp_path)
    w = root / "weights.csv"
    w.write_text("\n".join(line for line in w.read_text().splitlines() if "egg007" not in line))
    xml = root / "Annotations" / "apple003T(1).xml"
    xml.write_text(xml.read_text().replace("<name>apple</name>", "<name>coin</name>"))
    ds = import_ecustfd(root)
    names = {i.file_name for i in ds.images}
    assert names == {"orange002T(1).JPG", "mix001T(1).JPG", "mix012T(4).JPG",
                     "doughnut006T(7).JPG"}
    why = {d["file"]: d["why"] for d in ds.info["dropped"]}
    assert "egg007 has no row in weights.csv" in why["egg007T(1).xml"]
    assert "no food box" in why["apple003T(1).xml"]
    assert "lies on the coin" in why["qiwi007T(3).xml"]


@pytest.mark.shared_data
def test_full_ecustfd(shared_data: Path) -> None:
    ds = import_ecustfd(shared_data / "images" / "ecustfd")
    names = ds.category_names()
    per_class = Counter(names[a.category_id] for a in ds.annotations)
    assert len(ds.images) == 1282 and len(ds.info["dropped"]) == 6
    assert len([c for c in ds.categories if c.name != "coin"]) == 19
    assert all(a.grams for a in ds.annotations if names[a.category_id] != "coin")
    assert per_class["coin"] == 1270  # 1282 images, 1 without coin, 11 coin copies dropped
    scales = [i.px_per_cm for i in ds.images if i.px_per_cm]
    assert min(scales) > 12 and max(scales) < 40  # the bad coin boxes gave up to 120
    train, val = train_val_split(ds, strata=label_strata(ds))
    assert {i.split_group for i in train.images}.isdisjoint({i.split_group for i in val.images})
    val_foods = {names[a.category_id] for a in val.annotations}
    assert len(val_foods - {"coin"}) == 19  # every food is held out on some object
