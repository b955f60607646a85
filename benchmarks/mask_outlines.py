"""Mask IoU of models side by side on the food outlines drawn by hand, one round of drawing
at a time.

Run: .venv/bin/python benchmarks/mask_outlines.py [--models A.onnx B.onnx ...] [--round 2]
     [--refine] [--outlines data/outlines] [--data ../shared/data]

A round (data/outlines/rounds.json) is a set of outlines drawn together, with what was
measured on them: a rule judged on a round is judged on outlines no earlier choice saw. Each
model's food items at the service's operating point are matched one to one to the outlines
of its own held-out photos (`model.evaluate.drawn_outline_section`: greedy on IoU, an outline
no item matches counts 0). Prints per model, mask kind and source: photos, foods, mean mask
IoU and the ellipse inscribed in each found box (the masks' floor).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.model_speed import machine  # noqa: E402
from model.data.coco import CocoDataset  # noqa: E402
from model.evaluate import (  # noqa: E402
    OUTLINES_DIR,
    drawn_outline_section,
    drawn_outline_set,
    held_out_sets,
    split_params,
)
from model.evaluate_common import EvalConfig  # noqa: E402
from model.infer.runtime import TrayModel  # noqa: E402

MODEL = REPO / "model" / "artifacts" / "traylens.onnx"
SOURCES = ("mealtray", "ecustfd")
ROUNDS_FILE = "rounds.json"


def round_files(outlines_dir: Path, name: str | None) -> set[str] | None:
    """The outline file names (no folder) of one round of rounds.json; None: every file."""
    if name is None:
        return None
    rounds = json.loads((outlines_dir / ROUNDS_FILE).read_text())
    if name not in rounds:
        raise SystemExit(f"{outlines_dir / ROUNDS_FILE}: no round {name!r} "
                         f"(rounds: {', '.join(rounds)})")
    return {Path(f).name for f in rounds[name]["files"]}


def in_round(outlines: CocoDataset, files: set[str] | None) -> CocoDataset:
    """The outlined photos whose outline file belongs to the round (files named as photos)."""
    if files is None:
        return outlines
    stems = {Path(f).stem for f in files}
    return outlines.subset([im.id for im in outlines.images
                            if Path(im.file_name).stem in stems])


def measure(model_path: Path, outlines: dict[str, CocoDataset], data: Path,
            refine: bool) -> dict[str, dict[str, float]]:
    """Source -> the drawn-outline section of one model (its own held-out split)."""
    model = TrayModel(model_path)
    held = held_out_sets(data, *split_params(model))
    cfg = EvalConfig(refine_masks=refine)
    out = {}
    for source, ds in outlines.items():
        section = drawn_outline_section(model, ds, held[source], cfg)
        if section is not None:
            out[source] = section
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, nargs="+", default=[MODEL])
    p.add_argument("--round", default=None, help="a round of rounds.json (default: all files)")
    p.add_argument("--refine", action="store_true", help="also each model's refined masks")
    p.add_argument("--outlines", type=Path, default=REPO / OUTLINES_DIR)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    a = p.parse_args(argv)
    files = round_files(a.outlines, a.round)
    outlines = {s: in_round(ds, files) for s in SOURCES
                if (ds := drawn_outline_set(a.outlines, s)) is not None}
    print(f"# {machine()}; round {a.round or 'all'}")
    print("| model | masks | source | photos | foods | mask IoU | box ellipse |")
    print("|---|---|---|---:|---:|---:|---:|")
    for path in a.models:
        for refine in ((False, True) if a.refine else (False,)):
            for source, sec in measure(path, outlines, a.data, refine).items():
                print(f"| {path} | {'refined' if refine else 'model'} | {source} | "
                      f"{sec['photos']} | {sec['n_masks']} | {sec['mean_iou']:.3f} | "
                      f"{sec['box_ellipse_mean_iou']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
