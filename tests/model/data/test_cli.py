"""`python -m model.data` on the real fixtures: every command, and clear failures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model.data import coco
from model.data.cli import main
from nutrition_db import label_map


def test_import_every_format(fixtures_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    f = fixtures_dir
    runs = {
        "mealtray": [str(f / "mealtray" / "labeled")],
        "ecustfd": [str(f / "ecustfd")],
        "labelme": [str(f / "labelme")],
        "maskpng": [str(f / "ecustfd" / "JPEGImages"), "--masks", str(f / "maskpng" / "masks"),
                    "--classes", str(f / "maskpng" / "classes.txt")],
        "nutrition5k": [str(f / "nutrition5k" / "frames"), "--metadata",
                        str(f / "nutrition5k" / "dish_metadata_cafe1.csv")],
    }
    for fmt, args in runs.items():
        out = tmp_path / f"{fmt}.json"
        assert main(["import", fmt, args[0], str(out), *args[1:]]) == 0, fmt
        printed = json.loads(capsys.readouterr().out)
        assert printed["images"] == len(coco.load(out).images) > 0
    assert main(["import", "coco", str(tmp_path / "labelme.json"), str(tmp_path / "c.json"),
                 "--image-root", str(f / "ecustfd" / "JPEGImages")]) == 0


def test_import_to_label_map_with_pseudo_masks(fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    assert main(["import", "ecustfd", str(fixtures_dir / "ecustfd"), str(out),
                 "--to-label-map", "--pseudo-masks"]) == 0
    ds = coco.load(out)
    assert [c.name for c in ds.categories] == label_map().labels
    assert {a.mask_source for a in ds.annotations} == {"pseudo"}


def test_merge_split_compose_stats(fixtures_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    m, e = tmp_path / "m.json", tmp_path / "e.json"
    main(["import", "mealtray", str(fixtures_dir / "mealtray" / "labeled"), str(m)])
    main(["import", "ecustfd", str(fixtures_dir / "ecustfd"), str(e)])
    both = tmp_path / "both.json"
    assert main(["merge", str(m), str(e), "--out", str(both), "--to-label-map"]) == 0
    assert main(["split", str(both), "--train", str(tmp_path / "t.json"),
                 "--val", str(tmp_path / "v.json"), "--val-fraction", "0.3"]) == 0
    train, val = coco.load(tmp_path / "t.json"), coco.load(tmp_path / "v.json")
    assert len(train.images) + len(val.images) == 14
    assert {i.split_group for i in train.images}.isdisjoint({i.split_group for i in val.images})
    assert main(["compose", "--source", str(e), "--out", str(tmp_path / "comp"), "--n", "2",
                 "--kinds", "compartment", "plate", "--require-grams"]) == 0
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "comp" / "composed.json")]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["images"] == 2 and st["with_grams"] == st["annotations"] > 0


def test_bad_input_exits_2_with_a_reason(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "ecustfd", str(tmp_path), str(tmp_path / "o.json")]) == 2
    assert "weights.csv not found" in capsys.readouterr().err
    assert main(["import", "maskpng", str(tmp_path), str(tmp_path / "o.json")]) == 2
    assert "--masks is required" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"images": [], "annotations": [{}], "categories": []}')
    assert main(["stats", str(tmp_path / "bad.json")]) == 2
    assert "annotations[0].id: missing" in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "model.data", "stats", str(tmp_path / "x.json")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "file not found" in res.stderr
