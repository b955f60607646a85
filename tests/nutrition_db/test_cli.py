"""`python -m nutrition_db` as a user runs it: output, JSON shape and exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nutrition_db", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_nutrients_json() -> None:
    proc = run("nutrients", "mfds:D105-216010000-0001", "--grams", "200", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["food_id"] == "mfds:D105-216010000-0001" and data["grams"] == 200
    assert data["nutrients"]["energy_kcal"] == pytest.approx(50)
    assert data["nutrients"]["sodium_mg"] == pytest.approx(714)
    assert data["nutrients"]["zinc_mg"] is None


def test_nutrients_text() -> None:
    proc = run("nutrients", "fndds:58150100", "--grams", "50")
    assert proc.returncode == 0
    assert "Bibimbap, Korean" in proc.stdout and "38 kcal" in proc.stdout


def test_search_json_and_text() -> None:
    proc = run("search", "된장 국", "--limit", "3", "--json")
    hits = json.loads(proc.stdout)
    assert len(hits) == 3 and all(h["name_ko"].startswith("된장국") for h in hits)
    text = run("search", "bibimbap")
    assert text.stdout.startswith("fndds:58150100\tBibimbap, Korean\t76 kcal/100 g")


def test_stats_json() -> None:
    data = json.loads(run("stats", "--json").stdout)
    assert data["foods"] == 32899 and data["by_source"]["mfds"] == 14853
    assert 0 < data["nutrient_coverage"]["vitamin_d_ug"]["all"] < 1


def test_labels_lists_the_map() -> None:
    proc = run("labels")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "0\tPlate\tcourse\tfndds:28101000"


@pytest.mark.parametrize(("args", "message"), [
    (("nutrients", "mfds:D105-216010000-001", "--grams", "100"),
     "did you mean: mfds:D105-216010000-0001"),
    (("nutrients", "fndds:58150100", "--grams", "-3"), "cannot be negative"),
    (("nutrients", "fndds:58150100", "--grams", "nan"), "finite"),
    (("nutrients", "fndds:58150100", "--grams", "9000"), "more than 5000 g"),
    (("search", "  "), "non-empty"),
    (("search", "rice", "--limit", "0"), "limit"),
])
def test_bad_input_exits_non_zero_with_a_message(args: tuple[str, ...], message: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
