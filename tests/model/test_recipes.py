"""Recipe comparison over seeds: figures read from evaluations, means, targets, the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from model import recipes


def metrics(map50: float, grams: float, menu: float, ecustfd: float | None = 0.8) -> dict:
    detection = {"ecustfd": {"map": ecustfd}} if ecustfd is not None else {}
    return {"headline": {"mealtray_map50": map50, "ecustfd_grams_mae_pct": grams,
                         "menu_accuracy": menu, "composed_mask_iou": 0.77},
            "detection": detection}


def write_runs(root: Path, runs: dict[str, dict]) -> None:
    for name, m in runs.items():
        (root / name / "eval").mkdir(parents=True)
        (root / name / "eval" / "metrics.json").write_text(json.dumps(m))
    (root / "unfinished-s9").mkdir()  # a run still training has no evaluation yet


def test_recipe_of_strips_the_seed_only() -> None:
    assert recipes.recipe_of("mask240-s12") == "mask240"
    assert recipes.recipe_of("plain") == "plain"
    assert recipes.recipe_of("s1-run") == "s1-run"


def test_figures_reads_the_evaluation_and_marks_missing_sections() -> None:
    figs = recipes.figures(metrics(0.82, 12.5, 0.93, ecustfd=None))
    assert figs["mealtray mAP@0.5"] == 0.82 and figs["grams MAE %"] == 12.5
    assert math.isnan(figs["ECUSTFD mAP@0.5"])


def test_means_standard_deviations_and_targets(tmp_path: Path) -> None:
    write_runs(tmp_path, {"plain-s1": metrics(0.80, 12.0, 0.92),
                          "plain-s2": metrics(0.86, 14.0, 0.96),
                          "mask-s1": metrics(0.88, 16.0, 0.89, ecustfd=None)})
    runs = recipes.load_runs(tmp_path)
    assert list(runs) == ["mask-s1", "plain-s1", "plain-s2"]
    stats = recipes.summarise(runs)
    mean, sd, n = stats["plain"]["mealtray mAP@0.5"]
    assert (mean, n) == (pytest.approx(0.83), 2)
    assert sd == pytest.approx(math.sqrt(2 * 0.03**2))  # sample sd of 0.80, 0.86
    assert math.isnan(stats["mask"]["grams MAE %"][1])  # one run: no spread
    assert stats["mask"]["ECUSTFD mAP@0.5"][2] == 0  # missing everywhere: no value counted
    assert recipes.meets("mealtray mAP@0.5", 0.83) == "no"
    assert recipes.meets("grams MAE %", 13.0) == "yes"
    assert recipes.meets("mask IoU", 0.9) == ""
    table = recipes.markdown(runs)
    assert "| plain | 0.830 ± 0.042 (2) no |" in table
    assert "| mask | 0.880 ± – (1) yes | – ± – (0) | 16.0 ± – (1) no |" in table


def test_cli_prints_the_table_and_refuses_an_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_runs(tmp_path / "runs", {"plain-s1": metrics(0.80, 12.0, 0.92)})
    recipes.main([str(tmp_path / "runs")])
    assert "| plain-s1 | 0.800 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no run folder"):
        recipes.main([str(tmp_path / "runs" / "unfinished-s9")])
