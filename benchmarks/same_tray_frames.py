"""Nothing eaten: frames of one kiosk tray, paired as before and after photos (real photos).

Run: .venv/bin/python benchmarks/same_tray_frames.py [--data ../shared/data] [--model FILE]

The mealtray kiosk shoots each tray several times in a row (one capture run: the tray and
the hands move a little between frames, nothing is eaten). Each run's first full-size frame
(1024x768) is paired with each of its later full-size frames through the service's matching
and leftovers (`match_regions`, `leftovers`), every item recording what its box shows
(`serve.services.pipeline.served_post`, as the service analyses). The truth is "all
left" for every dish, so any `container_emptied` or `fully_eaten` is a false alarm, and the
area ratio (before clipping at 1) shows how much masks alone wander between two shots of
one tray.
Reported for the runs held out of the shipped model's training and for those it trained on.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.model_speed import machine  # noqa: E402
from benchmarks.pairing import SERVED, regions  # noqa: E402
from model.data.importers.mealtray import import_mealtray, shot_number  # noqa: E402
from model.data.splits import group_of, training_split  # noqa: E402
from model.evaluate import split_params  # noqa: E402
from model.infer.images import load_image  # noqa: E402
from model.infer.portion import COIN_LABEL  # noqa: E402
from model.infer.runtime import Item, TrayModel  # noqa: E402
from serve.services.leftovers import LeftoverFlag, leftovers  # noqa: E402
from serve.services.matching import match_regions  # noqa: E402

MODEL = REPO / "model" / "artifacts" / "traylens.onnx"
FULL_SIZE = (1024, 768)  # the kiosk's full frames; the smaller files are crops of them


@dataclass(frozen=True)
class Dish:
    """One dish of a before frame, as its after frame measured it (truth: all left)."""

    held_out: bool
    ratio: float | None  # after / before area before clipping; None: not measured
    flags: tuple[LeftoverFlag, ...]


def frames_by_run(data: Path, model: TrayModel) -> tuple[dict[str, list[Path]], set[str]]:
    """Full-size frames of each capture run in shooting order, and the runs held out of the
    model's training."""
    ds = import_mealtray(data / "images" / "mealtray" / "labeled")
    val_fraction, seed = split_params(model)
    held = {group_of(im) for im in training_split(ds, val_fraction, seed)[1].images}
    runs: dict[str, list[Path]] = defaultdict(list)
    for im in sorted(ds.images, key=lambda i: shot_number(i.file_name)):
        if (im.width, im.height) == FULL_SIZE:
            runs[group_of(im)].append(ds.image_path(im))
    return {g: p for g, p in runs.items() if len(p) >= 2}, held


def foods(model: TrayModel, path: Path) -> list[Item]:
    """The photo's food items as the service finds them."""
    return [it for it in model.predict([load_image(path)], cfg=SERVED)[0].items
            if it.label != COIN_LABEL]


def measure(model: TrayModel, runs: dict[str, list[Path]], held: set[str]) -> list[Dish]:
    """Every run's first frame against each later one."""
    out: list[Dish] = []
    for group, paths in runs.items():
        before = regions(foods(model, paths[0]))
        for path in paths[1:]:
            after = regions(foods(model, path))
            for lo in leftovers(before, after, match_regions(before, after)):
                if lo.before_index is not None:
                    out.append(Dish(group in held, lo.ratio, lo.flags))
    return out


def report(dishes: Sequence[Dish]) -> str:
    """The Markdown table: held-out and trained-on runs."""
    lines = ["| runs | dishes | container_emptied (false) | fully_eaten (false) | "
             "after_exceeds_before | area ratio, off 1 by: median / 90th pct (pts) |",
             "|---|---:|---:|---:|---:|---|"]
    for name, part in (("held out", [d for d in dishes if d.held_out]),
                       ("trained on", [d for d in dishes if not d.held_out])):
        if not part:
            continue
        off = [abs(1 - d.ratio) * 100 for d in part
               if d.ratio is not None and LeftoverFlag.FULLY_EATEN not in d.flags]
        median, p90 = np.percentile(off, [50, 90]) if off else (float("nan"), float("nan"))
        flagged = [sum(flag in d.flags for d in part) for flag in (
            LeftoverFlag.CONTAINER_EMPTIED, LeftoverFlag.FULLY_EATEN,
            LeftoverFlag.AFTER_EXCEEDS_BEFORE)]
        lines.append(f"| {name} | {len(part)} | {' | '.join(map(str, flagged))} | "
                     f"{median:.1f} / {p90:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, pair the frames, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--model", type=Path, default=MODEL)
    args = ap.parse_args(argv)
    if not (args.data / "images" / "mealtray" / "labeled").is_dir():
        print(f"{args.data}: no mealtray photos (is --data the shared data folder?)",
              file=sys.stderr)
        return 2
    model = TrayModel(args.model)
    runs, held = frames_by_run(args.data, model)
    dishes = measure(model, runs, held)
    print(f"model {model.meta.version}; {len(runs)} capture runs, first frame against each later "
          f"one; {machine()}")
    print(report(dishes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
