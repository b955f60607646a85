"""benchmarks/leave_one_source_out.py runs end to end on the fixtures with a one-epoch
schedule: the left-out source reaches neither the training photos nor the composed trays,
every photo of it is evaluated, and the shipped model's rows are its held-out split."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.leave_one_source_out import (
    drawn_outlines,
    held_out,
    loso_config,
    main,
    outside_held_out_of,
    with_open_set,
)
from model import export
from model.data.splits import training_split
from model.infer.runtime import TrayModel
from model.training.sources import load_sources
from serve.core.settings import SHIPPED_MODEL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = [{"kind": "mealtray", "root": str(FIXTURES / "mealtray" / "labeled")},
        {"kind": "ecustfd", "root": str(FIXTURES / "ecustfd")}]
# A few-second recipe: 128x96 input, one epoch over one cached view, two composed trays.
TINY = ["--data", json.dumps(DATA), "--epochs", "1", "--cache-views", "1",
        "--set", "input_width=128", "--set", "input_height=96", "--set", "embed_dim=16",
        "--set", "neck_channels=32", "--set", "batch_size=4", "--set", "val_fraction=0.3",
        "--set", "device=cpu", "--set", "compose={images: 2, per_label: 2, supervise: mask}",
        "--menus", "5", "--menu-size", "2"]


def test_loso_config_drops_the_source(tmp_path: Path) -> None:
    config = Path(__file__).resolve().parents[2] / "model" / "configs" / "default.yaml"
    cfg = loso_config(config, "ecustfd", tmp_path, tmp_path / "cache", {"data": DATA})
    assert [d["kind"] for d in cfg.data] == ["mealtray"]
    assert cfg.epochs == 24 and cfg.compose["images"] == 240  # the recipe, unless flagged
    assert cfg.output_dir == str(tmp_path / "without-ecustfd")
    assert cfg.cache_dir == str(tmp_path / "cache")  # never the default var/cache
    with pytest.raises(SystemExit, match="cannot leave out"):
        loso_config(config, "ecustfd", tmp_path, tmp_path, {"data": DATA[1:]})


@pytest.mark.slow
def test_leave_one_source_out_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL}")
    out = tmp_path / "loso"
    # Only the fixtures' outlines (data/outlines needs the shared photos: CI has them).
    none = tmp_path / "no-outlines"
    assert main(["--out", str(out), "--sources", "ecustfd", "--outlines", str(none), *TINY]) == 0
    result = json.loads((out / "loso.json").read_text())
    (row,) = result["leave_one_out"]
    assert row["trained_on"] == ["mealtray"] and row["schedule"]["epochs"] == 1
    assert row["leak_check"]["overlap"] == 0
    assert row["leak_check"]["composed_labels"]  # trays were composed, of mealtray crops only
    assert not set(row["leak_check"]["composed_labels"]) & {"apple", "orange", "coin"}
    assert row["photos"] == 6  # every fixture ECUSTFD photo the importer keeps
    masks = row["drawn_outline_mask_iou"]
    assert masks["n_masks"] == 4  # apple, orange; lemon, orange
    assert 0 <= masks["box_ellipse_mean_iou"] <= 1 and len(masks["per_set"]) == 2
    fr = row["food_regions"]
    assert fr["photos"] == 6 and fr["score_min"] == 0.25 and fr["min_class_score"] == 0.5
    assert 0 <= fr["found"] <= fr["annotated"]
    # The recall at matched false regions per photo, read off the same predictions made
    # down to the evaluator's low threshold: never below the operating point's recall when
    # read at its own rate or above.
    curve = row["region_curve"]
    assert [p["false_per_photo"] for p in curve["points"]] == [0.25, 0.5]
    for point in curve["points"]:
        if point["false_per_photo"] >= fr["false_per_photo"]:
            assert point["recall"] >= fr["recall"]
    # Named as the service names: with the open-set check fitted on the run's training split
    # (the mealtray fixtures: no ECUSTFD class has an example, so none of them is named),
    # beside what the class probability alone would name.
    alone = row["food_regions_probability_only"]
    assert fr["open_set"] and not alone["open_set"] and alone["found"] == fr["found"]
    assert fr["named_right"] + fr["named_wrong"] <= alone["named_right"] + alone["named_wrong"]
    open_set = TrayModel(out / "without-ecustfd" / "model.onnx").open_set
    assert open_set is not None and row["open_set_thresholds"] == "own"
    assert all(n == 0 for label, n in zip(TrayModel(out / "without-ecustfd" / "model.onnx")
                                          .meta.labels, open_set.regions, strict=True)
               if label in {"apple", "orange", "lemon", "coin"})
    (ship,) = result["shipped"]
    version = TrayModel(SHIPPED_MODEL).meta.version
    assert ship["evaluated_on"] == "held-out split" and ship["version"] == version
    assert "k1" in ship["menu"] and "k3" in ship["menu"]
    table = capsys.readouterr().out
    assert "| without ecustfd | mealtray | ecustfd all photos | 6 |" in table
    assert " at <= 0.5 (score >= " in table
    assert f"| shipped {version} | both | ecustfd held-out split |" in table
    assert (out / "without-ecustfd" / "model.onnx").is_file()
    # --compare-open-set: other checks, refitted on the run's own split (the file already
    # trained: not retrained), name the same found regions; borrowed's bars are no higher
    # than knn's, so it names every region knn names.
    assert main(["--out", str(out), "--sources", "ecustfd", "--outlines", str(none),
                 "--no-shipped", "--compare-open-set", "knn", "borrowed", *TINY]) == 0
    (again,) = json.loads((out / "loso.json").read_text())["leave_one_out"]
    assert again["open_set_thresholds"] == "own"  # the file's own check is not changed
    assert again["food_regions"] == fr
    by_check = again["food_regions_by_check"]
    assert set(by_check) == {"knn", "borrowed"}
    assert all(c["found"] == fr["found"] and c["open_set"] for c in by_check.values())
    knn, borrowed = by_check["knn"], by_check["borrowed"]
    assert borrowed["unidentified"] <= knn["unidentified"]
    assert borrowed["named_right"] + borrowed["named_wrong"] + borrowed["unidentified"] \
        == knn["named_right"] + knn["named_wrong"] + knn["unidentified"] == fr["found"]
    assert (f"- without ecustfd, ecustfd, borrowed check: of {fr['found']} found regions "
            f"{borrowed['named_wrong']} named wrong") in capsys.readouterr().out
    # --open-set-thresholds: the check is fitted as asked, on the split the file records.
    copy = tmp_path / "cal.onnx"
    copy.write_bytes((out / "without-ecustfd" / "model.onnx").read_bytes())
    meta = export.read_meta(copy)
    export.update_meta(copy, open_set={}, training={**meta.training, "val_fraction": 0.0,
                                                    "calibration_fraction": 0.5})
    calibrated = with_open_set(copy, "calibration").open_set
    assert calibrated is not None and calibrated.thresholds == "calibration"


def test_outside_held_out_of_another_seed_drops_the_photos_that_split_held_out() -> None:
    # A model trained on another split seed is judged only on its held-out photos that the
    # old split did not hold out: no earlier check was measured on them.
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL}")
    model = TrayModel(SHIPPED_MODEL)
    for entry in DATA:
        ds = held_out(entry, model)
        assert ds.images
        assert not outside_held_out_of(ds, entry, model, [0]).images  # its own split: none
        full = load_sources([entry])[0]
        for others in ([1], [2], [3], [1, 2]):
            kept = outside_held_out_of(ds, entry, model, others)
            old = {Path(im.file_name).name for seed in others
                   for im in training_split(full, 0.2, seed)[1].images}
            names = {Path(im.file_name).name for im in kept.images}
            assert names <= {Path(im.file_name).name for im in ds.images}
            assert not names & old
            assert len(kept.images) == len(ds.images) - len(
                {Path(im.file_name).name for im in ds.images} & old)


def test_drawn_outlines_join_fixtures_and_data_outlines(tmp_path: Path) -> None:
    # ECUSTFD: the two fixture sets, plus a set from data/outlines/<source> where it has
    # files; mealtray has only the latter.
    assert len(drawn_outlines("ecustfd", FIXTURES, tmp_path)) == 2
    assert drawn_outlines("mealtray", FIXTURES, tmp_path) == []
    doc = json.loads((FIXTURES / "labelme" / "mix001T(1).json").read_text())
    folder = tmp_path / "ecustfd"
    folder.mkdir()
    photo = FIXTURES / "ecustfd" / "JPEGImages" / "mix001T(1).JPG"
    doc["imagePath"] = os.path.relpath(photo, folder)
    (folder / "mix001T(1).json").write_text(json.dumps(doc))
    sets = drawn_outlines("ecustfd", FIXTURES, tmp_path)
    assert len(sets) == 3 and len(sets[2].annotations) == 3  # apple, orange, coin
