"""Compare training recipes over seeds: `python -m model.recipes DIR`.

DIR holds one folder per run, named `<recipe>-s<train seed>` (scripts/compare-recipes.sh
writes them), each with `eval/metrics.json` from model.evaluate. Prints a markdown table
of the held-out figures per run, then each recipe's mean and sample standard deviation,
and whether the mean meets issue 3's targets. A single run is one draw; the mean over
seeds is what a recipe is judged by. Torch-free.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# column -> (path into metrics.json, target as (">=" | "<=", value) or None)
FIGURES: dict[str, tuple[tuple[str, ...], tuple[str, float] | None]] = {
    "mealtray mAP@0.5": (("headline", "mealtray_map50"), (">=", 0.85)),
    "ECUSTFD mAP@0.5": (("detection", "ecustfd", "map"), None),
    "grams MAE %": (("headline", "ecustfd_grams_mae_pct"), ("<=", 15.0)),
    "menu mode": (("headline", "menu_accuracy"), (">=", 0.90)),
    "mask IoU": (("headline", "composed_mask_iou"), None),
}


def figures(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The compared figures of one evaluation (NaN where a section is missing)."""
    out = {}
    for name, (path, _) in FIGURES.items():
        value: Any = metrics
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        out[name] = float(value) if isinstance(value, int | float) else float("nan")
    return out


def recipe_of(run: str) -> str:
    """`mask240-s2` -> `mask240`; a name without a seed suffix is its own recipe."""
    return re.sub(r"-s\d+$", "", run)


def load_runs(root: Path) -> dict[str, dict[str, float]]:
    """Figures of every run folder under root that has an evaluation, by folder name."""
    return {d.name: figures(json.loads((d / "eval" / "metrics.json").read_text()))
            for d in sorted(root.iterdir()) if (d / "eval" / "metrics.json").is_file()}


Stats = dict[str, tuple[float, float, int]]  # figure -> (mean, sd, runs)


def summarise(runs: Mapping[str, Mapping[str, float]]) -> dict[str, Stats]:
    """Per recipe and figure: (mean, sample standard deviation or NaN for one run, runs)."""
    by_recipe: dict[str, list[Mapping[str, float]]] = {}
    for run, figs in runs.items():
        by_recipe.setdefault(recipe_of(run), []).append(figs)
    out: dict[str, Stats] = {}
    for recipe, rows in by_recipe.items():
        out[recipe] = {}
        for name in FIGURES:
            values = [r[name] for r in rows if r[name] == r[name]]  # drop NaN
            mean = statistics.fmean(values) if values else float("nan")
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            out[recipe][name] = (mean, sd, len(values))
    return out


def meets(name: str, value: float) -> str:
    """'yes' / 'no' against the figure's target, '' where it has none."""
    target = FIGURES[name][1]
    if target is None or value != value:
        return ""
    op, bound = target
    return "yes" if (value >= bound if op == ">=" else value <= bound) else "no"


def markdown(runs: Mapping[str, Mapping[str, float]]) -> str:
    """The per-run table, then per recipe: mean ± sd (n) and whether the mean meets the target."""
    names = list(FIGURES)
    lines = ["| run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for run, figs in runs.items():
        lines.append(f"| {run} | " + " | ".join(_fmt(n, figs[n]) for n in names) + " |")
    lines += ["", "| recipe (mean ± sd, runs) | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for recipe, stats in summarise(runs).items():
        cells = []
        for n in names:
            mean, sd, k = stats[n]
            verdict = meets(n, mean)
            cell = f"{_fmt(n, mean)} ± {_fmt(n, sd)} ({k})"
            cells.append(f"{cell} {verdict}" if verdict else cell)
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(name: str, value: float) -> str:
    if value != value:
        return "–"
    return f"{value:.1f}" if "%" in name else f"{value:.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m model.recipes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="folder of <recipe>-s<seed> run folders")
    a = p.parse_args(argv)
    runs = load_runs(a.root)
    if not runs:
        raise SystemExit(f"{a.root}: no run folder with eval/metrics.json")
    print(markdown(runs))


if __name__ == "__main__":
    main()
