"""Before/after pairing on real photos: how well the shipped model + serve.services.matching
pair the dishes of a moved tray and measure what is left.

Run: nice -n 10 .venv/bin/python benchmarks/pairing.py [--shared] [--limit 60] [--cases 3]
     [--model FILE]

Each "before" photo is a real one (serve/samples, tests/fixtures; with --shared also the
ECUSTFD and mealtray photos in ../shared/data/images). Each "after" photo is made from it:
every dish the model found keeps a random share (0, 1/4, 1/2, 3/4 or all) of its mask - the
rest is painted out with the inpainted plate around it, cut along a random direction - then
the whole photo is turned (up to 12 degrees) and shifted (up to 6% of its size). The truth
per dish is the share of its before mask left unpainted; its true partner is the after region
that covers most of that kept part (none when nothing is kept). Both photos go through the
model (model/artifacts/traylens.onnx), then `match_regions` and `leftovers`.

Prints, per photo source: dishes, leftover-fraction error (points: |measured - true| x 100)
mean / median / share within 10, the same with the true partner given (what the masks alone
allow), the share of dishes paired correctly, and fully_eaten false alarms (a dish with
food left declared fully eaten; in brackets those whose leftover no after region covers: the
model missed it, pairing could not help) and misses (a removed dish paired with something).
"""
from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.infer.images import load_image  # noqa: E402
from model.infer.runtime import Item, TrayModel, full_item_mask  # noqa: E402
from serve.services.leftovers import LeftoverFlag, leftovers  # noqa: E402
from serve.services.matching import Region, match_regions  # noqa: E402
from serve.services.pipeline import served_post  # noqa: E402

MODEL = REPO / "model" / "artifacts" / "traylens.onnx"
SERVED = served_post()  # as the service analyses: each box's container recorded
SHARED = REPO.parent / "shared" / "data" / "images"
LEFT_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_TURN_DEG, MAX_SHIFT = 12.0, 0.06
# An after region is a dish's true partner when it covers at least this share of the dish's
# kept (moved) pixels.
PARTNER_MIN_COVER = 0.5


def photo_paths(shared: bool, limit: int, seed: int) -> list[tuple[str, Path]]:
    """(source, path) of the before photos: fixtures and samples, plus shared ones."""
    out = [("samples", p) for p in sorted((REPO / "serve" / "samples").glob("*.jpg"))]
    fx = REPO / "tests" / "fixtures"
    out += [("ecustfd", p) for p in sorted((fx / "ecustfd" / "JPEGImages").glob("*.JPG"))]
    out += [("mealtray", p) for p in sorted((fx / "mealtray" / "labeled").glob("*.jpg"))]
    if shared:
        more = [("ecustfd", p) for p in sorted((SHARED / "ecustfd" / "JPEGImages").glob("*.JPG"))]
        more += [("mealtray", p) for p in sorted((SHARED / "mealtray" / "labeled").glob("*.jpg"))]
        random.Random(seed).shuffle(more)
        out += more[:limit]
    return out


def keep_share(mask: np.ndarray, left: float, angle_deg: float) -> np.ndarray:
    """The part of the mask to keep: the `left` share of its pixels on one side of a cut
    across it at `angle_deg` (a half-plane through the photo)."""
    h, w = mask.shape
    if left <= 0:
        return np.zeros_like(mask)
    if left >= 1:
        return np.ones_like(mask)
    t = math.radians(angle_deg)
    proj = np.arange(w)[None, :] * math.cos(t) + np.arange(h)[:, None] * math.sin(t)
    return proj <= np.quantile(proj[mask], left)


def paint_out(img: Image.Image, masks: Sequence[np.ndarray], keeps: Sequence[np.ndarray]
              ) -> tuple[Image.Image, np.ndarray]:
    """Paint each mask (grown a little) out with the plate around it except within its keep
    area; returns the photo and the painted pixels. The plate comes from inpainting the
    whole grown masks, so the eaten part looks like empty plate, not a smear of food."""
    arr = np.asarray(img).copy()
    grown = [cv2.dilate(m.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0 for m in masks]
    if not grown:
        return img, np.zeros(arr.shape[:2], dtype=bool)
    whole = np.logical_or.reduce(grown)
    cut = np.logical_or.reduce([g & ~k for g, k in zip(grown, keeps, strict=True)])
    if cut.any():
        plate = cv2.inpaint(arr, whole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
        arr[cut] = plate[cut]
    return Image.fromarray(arr), cut


def table_colour(img: Image.Image) -> tuple[int, ...]:
    """The median colour of the photo's top and bottom rows (what the tray stands on)."""
    arr = np.asarray(img)
    return tuple(int(v) for v in np.median(np.concatenate([arr[0], arr[-1]]), axis=0))


def move(img: Image.Image, turn_deg: float, shift: tuple[int, int],
         fill: tuple[int, ...] | int) -> Image.Image:
    """The whole photo turned about its centre (counter-clockwise on screen) and shifted."""
    resample = Image.Resampling.NEAREST if img.mode in ("1", "L") else Image.Resampling.BILINEAR
    return img.rotate(turn_deg, resample=resample, translate=shift, fillcolor=fill)


def move_mask(mask: np.ndarray, turn_deg: float, shift: tuple[int, int]) -> np.ndarray:
    """A boolean mask moved like its photo."""
    moved = move(Image.fromarray(mask.astype(np.uint8) * 255, mode="L"), turn_deg, shift, 0)
    return np.asarray(moved) > 127


def regions(items: Sequence[Item]) -> list[Region]:
    """The model's items as matching regions."""
    return [Region(str(k), it.box, it.area_px, it.embedding, it.label, container=it.container)
            for k, it in enumerate(items)]


@dataclass(frozen=True)
class Dish:
    """One dish of one case: truth and what the service measured."""

    source: str
    share: float  # the share of the dish meant to be left (true_left up to overlaps)
    true_left: float
    measured: float | None  # None: not measurable
    oracle: float | None  # area ratio against the true partner (None: no partner)
    paired_right: bool
    false_alarm: bool  # food left, declared fully eaten
    undetected: bool  # food left, but no after region covers it (the model missed it)
    miss: bool  # nothing left, paired with something


def _partner(kept_after: np.ndarray, after_masks: Sequence[np.ndarray]) -> int | None:
    """The after region covering most of the dish's kept pixels (if enough)."""
    total = int(kept_after.sum())
    if total == 0 or not after_masks:
        return None
    cover = [int((m & kept_after).sum()) / total for m in after_masks]
    best = int(np.argmax(cover))
    return best if cover[best] >= PARTNER_MIN_COVER else None


def run_case(model: TrayModel, source: str, img: Image.Image, items: Sequence[Item],
             rng: random.Random) -> list[Dish]:
    """One synthetic after photo of a before photo: the dishes' truth and measurements."""
    masks = [full_item_mask(it, img.size) for it in items]
    lefts = [rng.choice(LEFT_SHARES) for _ in items]
    keeps = [keep_share(m, left, rng.uniform(0, 360)) if m.any() else np.ones_like(m)
             for m, left in zip(masks, lefts, strict=True)]
    eaten = [k for k, left in enumerate(lefts) if left < 1]
    after_img, cut = paint_out(img, [masks[k] for k in eaten], [keeps[k] for k in eaten])
    turn = rng.uniform(-MAX_TURN_DEG, MAX_TURN_DEG)
    shift = (int(rng.uniform(-MAX_SHIFT, MAX_SHIFT) * img.width),
             int(rng.uniform(-MAX_SHIFT, MAX_SHIFT) * img.height))
    after_img = move(after_img, turn, shift, table_colour(img))
    after_items = model.predict([after_img], cfg=SERVED)[0].items
    after_masks = [full_item_mask(it, after_img.size) for it in after_items]
    rb, ra = regions(items), regions(after_items)
    result = leftovers(rb, ra, match_regions(rb, ra))
    out = []
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        kept = mask & ~cut
        true_left = float(kept.sum() / mask.sum())
        partner = _partner(move_mask(kept, turn, shift), after_masks)
        lo = result[i]
        oracle = None
        if partner is not None and items[i].area_px > 0:
            oracle = min(1.0, after_items[partner].area_px / items[i].area_px)
        out.append(Dish(source, lefts[i], true_left, lo.fraction, oracle, lo.after_index == partner,
                        LeftoverFlag.FULLY_EATEN in lo.flags and true_left > 0.05,
                        true_left > 0.05 and partner is None,
                        true_left == 0 and lo.after_index is not None))
    return out


def _errors(values: Sequence[tuple[float, float | None]]) -> tuple[str, str, str]:
    """Mean, median (points) and share within 10 points; unmeasured count as errors."""
    errs = [abs((m if m is not None else 0.0) - t) * 100 for t, m in values]
    if not errs:
        return "-", "-", "-"
    within = sum(e <= 10 for e in errs) / len(errs)
    return f"{statistics.mean(errs):.1f}", f"{statistics.median(errs):.1f}", f"{within:.0%}"


def _row(name: str, ds: Sequence[Dish]) -> str:
    """One table row over these dishes."""
    mean, median, within = _errors([(d.true_left, d.measured) for d in ds])
    with_partner = [d for d in ds if d.oracle is not None]
    o_mean, o_median, o_within = _errors([(d.true_left, d.oracle) for d in with_partner])
    left = [d for d in ds if d.true_left > 0.05]
    gone = [d for d in ds if d.true_left == 0]
    return (f"| {name} | {len(ds)} | {mean} / {median} | {within} | {o_mean} / {o_median}"
            f" / {o_within} (n={len(with_partner)}) | "
            f"{sum(d.paired_right for d in ds) / len(ds):.0%} | "
            f"{sum(d.false_alarm for d in ds)} of {len(left)} "
            f"({sum(d.false_alarm and d.undetected for d in ds)}) | "
            f"{sum(d.miss for d in ds)} of {len(gone)} |")


def report(dishes: Sequence[Dish]) -> None:
    """The Markdown table: one row per source, one per share left, one for all."""
    print("| photos | dishes | error mean / median (pts) | within 10 pts | with true partner: "
          "mean / median / within 10 | paired right | fully_eaten false alarms "
          "(no region found) | misses |")
    print("|---|---|---|---|---|---|---|---|")
    for source in sorted({d.source for d in dishes}):
        print(_row(source, [d for d in dishes if d.source == source]))
    for share in LEFT_SHARES:
        print(_row(f"all, {share:.0%} left", [d for d in dishes if d.share == share]))
    print(_row("all", dishes))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the cases, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", action="store_true", help="add ../shared/data/images photos")
    ap.add_argument("--limit", type=int, default=60, help="shared photos at most")
    ap.add_argument("--cases", type=int, default=3, help="after photos per before photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path, default=MODEL, help="the ONNX file to pair with")
    args = ap.parse_args(argv)
    model = TrayModel(args.model, threads=args.threads)
    rng = random.Random(args.seed)
    dishes: list[Dish] = []
    photos = photo_paths(args.shared, args.limit, args.seed)
    for source, path in photos:
        img = load_image(path)
        items = model.predict([img], cfg=SERVED)[0].items
        for _ in range(args.cases):
            dishes += run_case(model, source, img, items, rng)
    print(f"model {model.meta.version}; {len(photos)} before photos x {args.cases} after "
          f"photos; {platform.machine()} {platform.processor() or ''}".rstrip())
    report(dishes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
