"""The shipped table is exactly what the build makes from nutrition_db/raw."""
from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from nutrition_db.build import FIELDS, build, table_bytes
from nutrition_db.paths import RAW_DIR, TABLE_PATH
from nutrition_db.sources.common import RawDataError
from nutrition_db.table import read_table, table

REPO = Path(__file__).resolve().parents[2]


def test_cli_rebuild_equals_the_shipped_file(tmp_path: Path) -> None:
    out = tmp_path / "foods.csv.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "nutrition_db", "build", "--raw", str(RAW_DIR), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert "wrote 32899 foods" in proc.stdout
    assert "building food table" in proc.stderr  # the progress bar
    rebuilt, shipped = out.read_bytes(), TABLE_PATH.read_bytes()
    assert gzip.decompress(rebuilt) == gzip.decompress(shipped), "table content differs"
    # Same content; the gzip stream is byte-identical too (mtime 0, no name, level 9) as long
    # as zlib compresses the same way, which it does for a given zlib version.
    assert rebuilt == shipped, f"gzip bytes differ (zlib {zlib.ZLIB_RUNTIME_VERSION})"


def test_table_bytes_are_deterministic_and_readable(tmp_path: Path) -> None:
    foods = sorted(table().foods.values(), key=lambda f: f.food_id)[:50]
    first, second = table_bytes(foods), table_bytes(list(foods))
    assert first == second
    header = gzip.decompress(first).decode("utf-8").splitlines()[0]
    assert header.split(",") == list(FIELDS)
    path = tmp_path / "t.csv.gz"
    path.write_bytes(first)
    back = read_table(path).foods
    assert [back[f.food_id].nutrients for f in foods] == [f.nutrients for f in foods]


def test_build_refuses_missing_or_broken_raw(tmp_path: Path) -> None:
    with pytest.raises(RawDataError, match="raw folder not found"):
        build(tmp_path / "nope", tmp_path / "out.csv.gz")
    broken = tmp_path / "raw"
    shutil.copytree(RAW_DIR, broken)
    (broken / "us_sr28" / "SR28_ABBREV.txt").unlink()
    with pytest.raises(RawDataError, match="SR28_ABBREV"):
        build(broken, tmp_path / "out.csv.gz")
    assert not (tmp_path / "out.csv.gz").exists()


def test_build_refuses_an_unknown_basis(tmp_path: Path) -> None:
    broken = tmp_path / "raw"
    shutil.copytree(RAW_DIR, broken)
    mfds = broken / "kr_mfds" / "mfds_food_standard_2023-12-27.csv"
    lines = mfds.read_text(encoding="utf-8").split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith("D105-216010000-0001,"))
    lines[i] = lines[i].replace(",100g,25,93.4,", ",1 cup,25,93.4,")
    mfds.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(RawDataError, match=r"D105-216010000-0001.*1 cup"):
        build(broken, tmp_path / "out.csv.gz")
