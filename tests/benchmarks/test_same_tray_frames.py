"""benchmarks/same_tray_frames.py: on the fixture capture runs (consecutive kiosk frames of
the same trays, nothing eaten between them) no dish is declared eaten by its container, and
the table reports both kinds of run."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.same_tray_frames import Dish, frames_by_run, main, measure, report
from model.infer.runtime import TrayModel
from serve.core.settings import SHIPPED_MODEL
from serve.services.leftovers import LeftoverFlag

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """A shared-data-shaped folder holding the mealtray fixture photos."""
    folder = tmp_path / "images" / "mealtray"
    folder.mkdir(parents=True)
    (folder / "labeled").symlink_to(FIXTURES / "mealtray" / "labeled")
    (folder / "obj.names").symlink_to(FIXTURES / "mealtray" / "obj.names")
    return tmp_path


def test_fixture_frames_of_one_tray_are_all_left(data: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL}")
    model = TrayModel(SHIPPED_MODEL)
    runs, held = frames_by_run(data, model)
    assert runs and all(len(paths) >= 2 for paths in runs.values())
    dishes = measure(model, runs, held)
    assert dishes and not any(LeftoverFlag.CONTAINER_EMPTIED in d.flags for d in dishes)
    assert main(["--data", str(data)]) == 0
    assert "| dishes |" in capsys.readouterr().out
    assert main(["--data", str(data / "none")]) == 2


def test_report_counts_false_alarms_and_the_ratio_before_clipping() -> None:
    dishes = [Dish(True, 1.2, (LeftoverFlag.AFTER_EXCEEDS_BEFORE,)), Dish(True, 0.9, ()),
              Dish(True, None, (LeftoverFlag.CONTAINER_EMPTIED,)),
              Dish(True, 0.0, (LeftoverFlag.FULLY_EATEN,))]
    row = report(dishes).splitlines()[2]
    assert row == "| held out | 4 | 1 | 1 | 1 | 15.0 / 19.0 |"  # 20 and 10 points off
