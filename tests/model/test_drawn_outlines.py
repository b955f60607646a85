"""data/outlines: the food outlines drawn by hand on held-out shared photos (docs/DATA.md)
are valid LabelMe files, follow the convention, and lie on the shipped model's held-out side,
so the mask IoU measured on them is a held-out figure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.evaluate import OUTLINES_DIR, drawn_outline_set, held_out_sets, split_params
from model.infer.runtime import TrayModel

REPO = Path(__file__).resolve().parents[2]
OUTLINES = REPO / OUTLINES_DIR
SOURCES = ("mealtray", "ecustfd")
MEALTRAY_LABELS = {"Plate", "Starter", "Bread", "Drink", "Yogurt", "Dessert", "Fruit", "Cheese",
                   "food"}


def _files(source: str) -> list[Path]:
    return sorted((OUTLINES / source).glob("*.json"))


@pytest.mark.parametrize("source", SOURCES)
def test_outline_files_follow_the_convention(source: str) -> None:
    # Plain checks that need no photo: LabelMe polygons, the photo named by a path into the
    # shared data beside the repo, the labels of the source, a coin drawn on every ECUSTFD one.
    files = _files(source)
    assert files, f"no outlines in {OUTLINES / source}"
    for f in files:
        doc = json.loads(f.read_text())
        assert doc["imagePath"].startswith("../../../../shared/data/images/")
        assert Path(doc["imagePath"]).stem == f.stem and doc["imageData"] is None
        labels = [s["label"] for s in doc["shapes"]]
        assert all(s["shape_type"] == "polygon" and len(s["points"]) >= 6 for s in doc["shapes"])
        if source == "mealtray":
            assert labels and set(labels) <= MEALTRAY_LABELS, f"{f.name}: {labels}"
        else:
            assert labels.count("coin") == 1 and len(labels) >= 2, f"{f.name}: {labels}"


@pytest.mark.shared_data
def test_outlined_photos_are_held_out(shared_data: Path, model_path: Path) -> None:
    # Every outline imports against its photo, and every outlined photo is on the held-out
    # side of the shipped model's own split (never trained on).
    if not (REPO.parent / "shared" / "data" / "images").is_dir():
        pytest.skip("the outlines name their photos in ../shared beside the repo")
    model = TrayModel(model_path)
    val_fraction, seed = split_params(model)
    held = held_out_sets(shared_data, val_fraction, seed)
    for source in SOURCES:
        outlines = drawn_outline_set(OUTLINES, source)
        assert outlines is not None
        names = {Path(im.file_name).name for im in held[source].images}
        outside = [im.file_name for im in outlines.images if Path(im.file_name).name not in names]
        assert not outside, f"{source} outlines on trained-on photos: {outside}"
        assert len(outlines.images) == len(_files(source))
        assert len(outlines.annotations) >= 2 * len(outlines.images)


def test_every_outline_belongs_to_one_round() -> None:
    # data/outlines/rounds.json says when each outline was drawn and what it has judged, so a
    # rule can be judged on outlines no earlier choice saw (benchmarks/mask_outlines.py).
    rounds = json.loads((OUTLINES / "rounds.json").read_text())
    named = [f for r in rounds.values() for f in r["files"]]
    assert len(named) == len(set(named)), "an outline in two rounds"
    on_disk = {f"{s}/{p.name}" for s in SOURCES for p in _files(s)}
    assert set(named) == on_disk
    assert all({"drawn", "photos", "measured", "files"} <= set(r) for r in rounds.values())
