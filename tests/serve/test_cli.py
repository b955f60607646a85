"""`python -m serve analyze` runs the same pipeline as the API, without a server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from model.data.importers.ecustfd import import_ecustfd
from model.infer.geometry import pair_iou
from model.infer.images import load_image
from model.infer.portion import COIN_LABEL
from serve.services.analyses import analysis_payload, analysis_row
from serve.services.model_registry import LoadedModel
from serve.services.pipeline import ImageRequest, analyze
from tests.no_food import empty_tray_jpeg
from tests.serve.conftest import ECUSTFD, MEALTRAY, REPO_ROOT


def _cli(*args: str, model: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAYLENS_MODEL_PATH": str(model)}
    return subprocess.run([sys.executable, "-m", "serve", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _annotated_foods(fixtures_dir: Path, name: str) -> list[tuple[str, list[float]]]:
    """(label, [x0, y0, x1, y1]) of the foods (not the coin) annotated on an ECUSTFD fixture."""
    ds = import_ecustfd(fixtures_dir / "ecustfd")
    names = ds.category_names()
    image = next(im for im in ds.images if im.file_name == Path(ECUSTFD.format(name=name)).name)
    return [(names[a.category_id], [a.bbox[0], a.bbox[1], a.bbox[0] + a.bbox[2],
                                    a.bbox[1] + a.bbox[3]])
            for a in ds.annotations
            if a.image_id == image.id and names[a.category_id] != COIN_LABEL]


def test_cli_json_equals_the_pipeline(loaded_model: LoadedModel, fixtures_dir: Path) -> None:
    paths = [fixtures_dir / MEALTRAY.format(n=2772),
             fixtures_dir / ECUSTFD.format(name="mix012T(4)")]
    done = _cli("analyze", *map(str, paths), "--json", model=loaded_model.path)
    assert done.returncode == 0, done.stderr
    printed: list[dict[str, Any]] = json.loads(done.stdout)
    requests = [ImageRequest(load_image(p)) for p in paths]
    results, _ = analyze(loaded_model.model, requests)
    for out, result, path in zip(printed, results, paths, strict=True):
        expected = analysis_payload(analysis_row(result, image_sha256=None))
        assert out.pop("file") == str(path)
        # Both photos show annotated foods: an empty answer is a failure, however it agrees.
        assert out["items"], f"no item found on {path}"
        assert out == json.loads(json.dumps(expected))


def test_cli_refines_masks_as_the_setting_says(loaded_model: LoadedModel,
                                               fixtures_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """TRAYLENS_REFINE_MASKS reaches `python -m serve analyze`: its JSON is the pipeline's
    with refined masks (decoded as the CLI decodes), and says so."""
    photo = fixtures_dir / MEALTRAY.format(n=2770)
    monkeypatch.setenv("TRAYLENS_REFINE_MASKS", "true")
    done = _cli("analyze", str(photo), "--json", model=loaded_model.path)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed.pop("file") == str(photo) and printed["masks"] == "refined"
    img = load_image(photo, fit=loaded_model.model.meta.input_size)
    (refined,), _ = analyze(loaded_model.model, [ImageRequest(img)], refine_masks=True)
    (plain,), _ = analyze(loaded_model.model, [ImageRequest(img)])
    expected = analysis_payload(analysis_row(refined, image_sha256=None))
    assert printed == json.loads(json.dumps(expected))
    assert [i["area_px"] for i in printed["items"]] != [i.area_px for i in plain.items]


def test_cli_table_and_errors(loaded_model: LoadedModel, fixtures_dir: Path) -> None:
    photo = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    table = _cli("analyze", str(photo), model=loaded_model.path)
    assert table.returncode == 0 and str(photo) in table.stdout and "total" in table.stdout
    # The photo's line, one line per item (the photo shows an annotated apple), the total.
    lines = table.stdout.splitlines()
    assert len(lines) >= 3 and lines[-1].lstrip().startswith("total"), table.stdout
    missing = _cli("analyze", "no/such/photo.jpg", model=loaded_model.path)
    assert missing.returncode == 2 and "cannot read no/such/photo.jpg" in missing.stderr
    no_model = _cli("analyze", str(photo), "--model", "no/model.onnx", model=loaded_model.path)
    assert no_model.returncode == 2 and "model file not found" in no_model.stderr
    bad_port = _cli("--port", "eighty", model=loaded_model.path)
    assert bad_port.returncode == 2 and "invalid int value" in bad_port.stderr


def test_cli_says_no_food_found(loaded_model: LoadedModel, fixtures_dir: Path,
                                tmp_path: Path) -> None:
    """An empty tray: the table says no food found instead of a total of zeros; the JSON
    carries the flag and the message; a photo with food carries false."""
    empty = tmp_path / "empty-tray.jpg"
    empty.write_bytes(empty_tray_jpeg())
    table = _cli("analyze", str(empty), model=loaded_model.path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(empty)), table.stdout
    assert lines[1].startswith("  NO FOOD FOUND: No food found on this photo: 0 items")
    food = fixtures_dir / ECUSTFD.format(name="apple003T(1)")
    done = _cli("analyze", str(empty), str(food), "--json", model=loaded_model.path)
    assert done.returncode == 0, done.stderr
    nothing, apple = json.loads(done.stdout)
    assert (nothing["items"], nothing["no_food_found"]) == ([], True)
    assert "not because the meal has no nutrients" in nothing["message"]
    assert apple["items"] and (apple["no_food_found"], apple["message"]) == (False, None)


def test_cli_menu_mode(loaded_model: LoadedModel, fixtures_dir: Path, tmp_path: Path) -> None:
    """With --menu every item is named as one of the menu's dishes or is unidentified
    (needs review), with the menu's dishes as alternatives; the plate's annotated apple and
    orange are found and named by their dishes."""
    menu = {"dishes": [
        {"id": "apple", "food_id": "sr28:09003", "serving_g": 180,
         "examples": [str(fixtures_dir / ECUSTFD.format(name="apple003T(1)"))]},
        {"id": "orange", "food_id": "sr28:09200", "serving_g": 140,
         "examples": [str(fixtures_dir / ECUSTFD.format(name="orange002T(1)"))]},
    ]}
    (tmp_path / "menu.json").write_text(json.dumps(menu))
    photo = fixtures_dir / ECUSTFD.format(name="mix001T(1)")
    done = _cli("analyze", str(photo), "--menu", str(tmp_path / "menu.json"), "--json",
                model=loaded_model.path)
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)["items"]
    assert items, f"model {loaded_model.version} found no item on the apple+orange plate"
    for item in items:
        assert item["identified_by"] == "menu"
        if item["menu_dish_id"] is None:
            assert item["label"] == "unidentified" and item["needs_review"], item
            assert item["evidence"] == "none" and item["food_id"] is None
        else:
            assert item["menu_dish_id"] in ("apple", "orange")
            assert item["evidence"] in ("embedding", "class_scores")
            assert item["confidence"] < item["detection_score"] + 1e-4
        assert {a["dish_id"] for a in item["alternatives"]} == {"apple", "orange"}
    truth = _annotated_foods(fixtures_dir, "mix001T(1)")
    assert sorted(label for label, _ in truth) == ["apple", "orange"]
    for label, box in truth:
        hits = [i for i in items if pair_iou(i["box"], box) >= 0.5]
        assert hits, f"the annotated {label} at {box} was not found: {items}"
        assert hits[0]["menu_dish_id"] == label, hits[0]


def test_cli_menu_file_errors(loaded_model: LoadedModel, fixtures_dir: Path,
                              tmp_path: Path) -> None:
    photo = fixtures_dir / ECUSTFD.format(name="mix001T(1)")
    bad = tmp_path / "bad.json"
    bad.write_text('{"dishes": [{"food_id": "x"}]}')
    failed = _cli("analyze", str(photo), "--menu", str(bad), model=loaded_model.path)
    assert failed.returncode == 2 and "needs food_id and serving_g" in failed.stderr
