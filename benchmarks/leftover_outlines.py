"""Leftovers from mask areas, against food outlines drawn by hand: the model's own masks
beside masks refined to the food (PostConfig.refine_masks), on the same after photos.

Run: nice -n 10 .venv/bin/python benchmarks/leftover_outlines.py [--outlines data/outlines]
     [--sources mealtray ecustfd] [--cases 3] [--seed 0] [--model FILE] [--round N]
     [--containers]

`--round N`: only the outlines of one round of data/outlines/rounds.json. `--containers`:
each item records what its box shows and a container emptied between the photos reads as
eaten (PostConfig.containers), as the service does since 2026-12-06; without it, the area
ratio alone, as the first tables of docs/BENCHMARKS.md were measured.

Each "before" photo is a held-out photo with food outlines drawn by hand (data/outlines,
docs/DATA.md; they name their photos in ../shared). Each "after" photo is made from it: every
outlined food keeps a random share (0, 1/4, 1/2, 3/4 or all) of its outline, cut along a
random direction, and the rest is painted out with the inpainted plate around it
(benchmarks/pairing.py's painting); then the whole photo is turned (up to 12 degrees) and
shifted (up to 6%). The truth per food is the share of its outline left: the food eaten,
whatever its plate. Unlike benchmarks/pairing.py, whose truth is the share of the model's
own mask, this truth comes from neither mask, so the two can be compared.

Both photos go through the model, once with its own masks and once refined; each outlined
food is the before region whose box holds it (one optimal one-to-one assignment on the share
of the outline inside each box; a food no box holds half of is left out), paired and
measured by `match_regions` and `leftovers` as the service does. Prints per mask kind and
share left: foods, leftover error (points, |measured - true| x 100; not measurable counts as
0 left) mean / median, the share within 10 points, and fully_eaten false alarms (food left,
declared fully eaten).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.mask_outlines import in_round, round_files  # noqa: E402
from benchmarks.model_speed import machine  # noqa: E402
from benchmarks.pairing import (  # noqa: E402
    LEFT_SHARES,
    MAX_SHIFT,
    MAX_TURN_DEG,
    keep_share,
    move,
    paint_out,
    regions,
    table_colour,
)
from model.evaluate import OUTLINES_DIR, drawn_outline_set, food_outlines  # noqa: E402
from model.infer.images import load_image  # noqa: E402
from model.infer.portion import COIN_LABEL  # noqa: E402
from model.infer.runtime import Item, PostConfig, TrayModel  # noqa: E402
from serve.services.leftovers import LeftoverFlag, leftovers  # noqa: E402
from serve.services.matching import match_regions  # noqa: E402

MODEL = REPO / "model" / "artifacts" / "traylens.onnx"
KINDS = ("model", "refined")  # the model's own masks, and refined (PostConfig.refine_masks)
# An outlined food belongs to the before region whose box holds at least this share of it.
MIN_INSIDE = 0.5


@dataclass(frozen=True)
class Food:
    """One outlined food on one after photo, measured with one kind of mask."""

    source: str
    kind: str  # one of KINDS
    share: float  # the share meant to be left
    true_left: float  # the share of the outline left unpainted
    measured: float | None  # the service's leftover fraction (None: not measurable)
    false_alarm: bool  # food left, declared fully eaten


def holders(outlines: Sequence[np.ndarray], items: Sequence[Item]) -> list[int | None]:
    """For each outline, the item whose box holds it: one optimal one-to-one assignment on
    the share of each outline inside each box, a pair counting only at MIN_INSIDE or more;
    None where no box holds it."""
    inside = np.zeros((len(outlines), len(items)))
    for i, m in enumerate(outlines):
        for k, it in enumerate(items):
            x0, y0, x1, y1 = (round(v) for v in it.box)
            inside[i, k] = m[max(0, y0):y1, max(0, x0):x1].sum() / m.sum()
    gain = np.where(inside >= MIN_INSIDE, inside, 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    out: list[int | None] = [None] * len(outlines)
    for i, k in zip(rows, cols, strict=True):
        if gain[i, k] > 0:
            out[int(i)] = int(k)
    return out


def foods_of(model: TrayModel, img: Image.Image, containers: bool = False,
             ) -> dict[str, list[Item]]:
    """The photo's food items with each kind of mask (the same items, other masks); with
    `containers`, each records what its box shows (PostConfig.containers)."""
    posts = {kind: PostConfig(refine_masks=kind == "refined", containers=containers)
             for kind in KINDS}
    return {kind: [it for it in model.predict([img], cfg=post)[0].items
                   if it.label != COIN_LABEL] for kind, post in posts.items()}


def run_case(model: TrayModel, source: str, img: Image.Image, outlines: Sequence[np.ndarray],
             before: dict[str, list[Item]], rng: random.Random,
             shares: Sequence[float] = LEFT_SHARES, containers: bool = False) -> list[Food]:
    """One after photo of a before photo, measured with both kinds of mask."""
    lefts = [rng.choice(shares) for _ in outlines]
    keeps = [keep_share(m, left, rng.uniform(0, 360)) for m, left in zip(outlines, lefts,
                                                                         strict=True)]
    eaten = [i for i, left in enumerate(lefts) if left < 1]
    after_img, cut = paint_out(img, [outlines[i] for i in eaten], [keeps[i] for i in eaten])
    turn = rng.uniform(-MAX_TURN_DEG, MAX_TURN_DEG)
    shift = (int(rng.uniform(-MAX_SHIFT, MAX_SHIFT) * img.width),
             int(rng.uniform(-MAX_SHIFT, MAX_SHIFT) * img.height))
    after = foods_of(model, move(after_img, turn, shift, table_colour(img)), containers)
    held = holders(outlines, before["model"])  # boxes are the same for both kinds
    out = []
    for kind in KINDS:
        rb, ra = regions(before[kind]), regions(after[kind])
        result = leftovers(rb, ra, match_regions(rb, ra))
        for i, k in enumerate(held):
            if k is None:
                continue
            true_left = float((outlines[i] & ~cut).sum() / outlines[i].sum())
            lo = result[k]
            out.append(Food(source, kind, lefts[i], true_left, lo.fraction,
                            LeftoverFlag.FULLY_EATEN in lo.flags and true_left > 0.05))
    return out


def measure(model: TrayModel, outlines_dir: Path, sources: Sequence[str], cases: int,
            seed: int, shares: Sequence[float] = LEFT_SHARES, containers: bool = False,
            round_name: str | None = None) -> list[Food]:
    """Every case of every outlined photo of the sources (of one round of rounds.json, or
    all); `containers`: pairing reads an emptied container as eaten (PostConfig.containers)."""
    rng = random.Random(seed)
    files = round_files(outlines_dir, round_name)
    foods: list[Food] = []
    for source in sources:
        ds = drawn_outline_set(outlines_dir, source)
        if ds is None:
            continue
        ds = in_round(ds, files)
        drawn = food_outlines(ds)
        for im in ds.images:
            img = load_image(ds.image_path(im))
            before = foods_of(model, img, containers)
            masks = [m for _, m in drawn[im.id] if m.any()]
            for _ in range(cases):
                foods += run_case(model, source, img, masks, before, rng, shares, containers)
    return foods


def errors(foods: Sequence[Food]) -> tuple[float, float, float]:
    """Mean and median error (points) and the share within 10 points; not measurable: 0 left."""
    errs = [abs((f.measured if f.measured is not None else 0.0) - f.true_left) * 100
            for f in foods]
    return statistics.mean(errs), statistics.median(errs), sum(e <= 10 for e in errs) / len(errs)


def report(foods: Sequence[Food]) -> str:
    """The Markdown table: per source and share left, the two kinds of mask side by side."""
    lines = ["| foods of | share left | foods | model masks: error mean / median (pts), within "
             "10 | refined masks: error mean / median, within 10 | fully_eaten false alarms "
             "(model / refined) |", "|---|---|---|---|---|---|"]
    groups = [(s, share) for s in sorted({f.source for f in foods})
              for share in [*sorted({f.share for f in foods}), None]]
    for source, share in groups:
        part = [f for f in foods if f.source == source and (share is None or f.share == share)]
        by = {kind: [f for f in part if f.kind == kind] for kind in KINDS}
        if not by["model"]:
            continue
        cells = []
        for kind in KINDS:
            mean, median, within = errors(by[kind])
            cells.append(f"{mean:.1f} / {median:.1f}, {within:.0%}")
        alarms = " / ".join(str(sum(f.false_alarm for f in by[k])) for k in KINDS)
        name = "all" if share is None else f"{share:.0%}"
        lines.append(f"| {source} | {name} | {len(by['model'])} | {cells[0]} | {cells[1]} | "
                     f"{alarms} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the cases, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outlines", type=Path, default=REPO / OUTLINES_DIR,
                    help="outlines drawn on the shared photos, one folder per source")
    ap.add_argument("--sources", nargs="+", default=["mealtray", "ecustfd"])
    ap.add_argument("--cases", type=int, default=3, help="after photos per before photo")
    ap.add_argument("--shares", type=float, nargs="+", default=list(LEFT_SHARES),
                    help="shares of each food left to draw from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path, default=MODEL, help="the ONNX file")
    ap.add_argument("--round", default=None, help="only the outlines of this round "
                    "(data/outlines/rounds.json); default: all")
    ap.add_argument("--containers", action="store_true",
                    help="record what each box shows: an emptied container reads as eaten")
    args = ap.parse_args(argv)
    model = TrayModel(args.model, threads=args.threads)
    foods = measure(model, args.outlines, args.sources, args.cases, args.seed, args.shares,
                    args.containers, args.round)
    if not foods:
        print(f"no outlined food found in {args.outlines} for {args.sources}", file=sys.stderr)
        return 2
    print(f"model {model.meta.version}; {args.cases} after photos per outlined photo; round "
          f"{args.round or 'all'}; containers {'on' if args.containers else 'off'}; "
          f"{machine()}")
    print(report(foods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
