"""`python -m model.predict` on real photos with the shipped model: the exact JSON schema."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.no_food import coin_only_jpeg, empty_tray_jpeg

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "model" / "artifacts" / "traylens.onnx"
ITEM_KEYS = {"box", "label", "score", "polygon", "grams", "grams_range", "embedding"}


def predict(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model.predict", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def coin_photo(fixtures_dir: Path) -> Path:
    return fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG"


def test_json_schema_on_real_photos(coin_photo: Path, fixtures_dir: Path) -> None:
    tray = next((fixtures_dir / "mealtray" / "labeled").glob("*.jpg"))
    out = predict("--model", str(SHIPPED), "--json", str(coin_photo), str(tray))
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert [r["image"] for r in records] == [str(coin_photo), str(tray)]
    for rec in records:
        assert set(rec) == {"image", "width", "height", "no_food_found", "items"}
        assert rec["no_food_found"] is False  # both photos show food the model finds
        for item in rec["items"]:
            assert set(item) == ITEM_KEYS
            x0, y0, x1, y1 = item["box"]
            assert 0 <= x0 < x1 <= rec["width"] and 0 <= y0 < y1 <= rec["height"]
            assert 0 < item["score"] <= 1
            assert item["embedding"] is None
            assert item["polygon"] is None or all(len(p) == 2 for p in item["polygon"])
    # The ECUSTFD photo: the shipped model finds the apple, and the coin gives it grams.
    apple = [i for i in records[0]["items"] if i["label"] == "apple"]
    assert apple and apple[0]["grams"] is not None
    lo, hi = apple[0]["grams_range"]
    assert lo < apple[0]["grams"] < hi
    # A tray without a coin has no scale: no grams rather than invented ones.
    assert all(i["grams"] is None for i in records[1]["items"])


def test_embeddings_flag_and_given_scale(coin_photo: Path) -> None:
    out = predict("--model", str(SHIPPED), "--json", "--embeddings", "--px-per-cm", "30",
                  str(coin_photo))
    item = json.loads(out.stdout)[0]["items"][0]
    assert len(item["embedding"]) > 0
    assert sum(v * v for v in item["embedding"]) == pytest.approx(1.0, abs=1e-3)


def test_bad_inputs_give_clear_errors(tmp_path: Path, coin_photo: Path) -> None:
    junk = tmp_path / "notes.jpg"
    junk.write_text("not a photo")
    out = predict("--model", str(SHIPPED), str(junk), str(coin_photo))
    assert out.returncode == 1
    assert "notes.jpg: not an image" in out.stderr
    assert "apple003T(1).JPG" in out.stdout  # the good image is still reported
    out = predict("--model", str(tmp_path / "none.onnx"), str(coin_photo))
    assert out.returncode == 2 and "model file not found" in out.stderr
    out = predict("--model", str(SHIPPED), "--px-per-cm", "-3", str(coin_photo))
    assert out.returncode == 2 and "--px-per-cm must be > 0" in out.stderr


def test_photos_without_food_say_so(tmp_path: Path, fixtures_dir: Path) -> None:
    """An empty tray (nothing found) and a coin alone (found, but a coin is not food)."""
    empty, coin = tmp_path / "empty-tray.jpg", tmp_path / "coin.jpg"
    empty.write_bytes(empty_tray_jpeg())
    coin.write_bytes(coin_only_jpeg(fixtures_dir))
    out = predict("--model", str(SHIPPED), "--json", str(empty), str(coin))
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert records[0]["items"] == [] and records[0]["no_food_found"] is True
    assert [i["label"] for i in records[1]["items"]] == ["coin"]
    assert records[1]["no_food_found"] is True
    text = predict("--model", str(SHIPPED), str(empty), str(coin)).stdout.splitlines()
    assert text == [
        f"{empty} (640x480): 0 items",
        "  no food found: nothing to weigh, not a meal without nutrients",
        text[2], text[3],
        "  no food found (the coin is a scale reference, not food): nothing to weigh, "
        "not a meal without nutrients"], text
    assert text[2].startswith(f"{coin} (") and text[2].endswith(": 1 item")
    assert text[3].lstrip().startswith("coin")
