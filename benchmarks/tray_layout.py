"""Tray layouts on the composed stainless-tray test bed: registration, fill, leftover, not_found.

Run: nice -n 10 .venv/bin/python benchmarks/tray_layout.py [--shared] [--kiosks 6] [--meals 2]
     [--service]  (the service's fast-path registration vs SIFT at 360 px, and its fill)
Prints Markdown tables: registration error (mean distance of the warped compartments'
points to the truth, photo px) per pose family and detector, time per registration, fill
error (percentage points), leftover error on before/after pairs, the share of not_found
on photos that are not this kiosk's tray, and compartment proposals vs the drawn wells.
--shared takes food crops and non-tray photos from ../shared/data/images (fixtures
otherwise). The test bed is synthetic: these figures say the code works, not how well a
real kiosk will do.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.data import traybed as tb  # noqa: E402
from model.data.compose import FoodCrop  # noqa: E402
from model.infer import tray as T  # noqa: E402

# Pose families: each draws a random pose of its kind (shifts in photo fractions).
FAMILIES = {
    "shift <= 6%": tb.PoseRange(0.06, 0.0, 0.0),
    "rotation <= 15 deg": tb.PoseRange(0.0, 15.0, 0.0),
    "tilt <= 0.06": tb.PoseRange(0.0, 0.0, 0.06),
    "all three": tb.PoseRange(0.06, 15.0, 0.06),
}
CONFIGS = {
    "SIFT + ECC": T.RegistrationConfig(detector="sift", refine=True),
    "SIFT": T.RegistrationConfig(detector="sift", refine=False),
    "ORB + ECC": T.RegistrationConfig(detector="orb", refine=True),
}
# --service: the service's registration (serve.services.layouts.REGISTRATION) and the one
# it replaced, at 360 px without ECC; the fast path starts cold here (no kiosk hint).
SERVICE_CONFIGS = {
    "SIFT 360 (service before)": T.RegistrationConfig(work_side=360, refine=False),
    "fast path 360 (service)": T.RegistrationConfig(work_side=360, refine=False, fast=True),
}


def layout_of(kiosk: tb.Kiosk) -> T.TrayLayout:
    """The kiosk's compartments as a TrayLayout."""
    comps = [{"slot": s, "polygon": p.tolist()} for s, p in kiosk.compartments.items()]
    return T.parse_layout(comps, tray_size_cm=kiosk.tray_size_cm)


def corner_error(hom: np.ndarray, kiosk: tb.Kiosk, truth: np.ndarray) -> float:
    """Mean distance (photo px) of the compartments' points warped by hom vs by the truth."""
    pts = np.concatenate(list(kiosk.compartments.values()))
    return float(np.linalg.norm(T.warp_points(pts, hom) - T.warp_points(pts, truth), axis=1)
                 .mean())


def registration_table(kiosks: list[tb.Kiosk], crops: Sequence[FoodCrop], meals: int,
                       configs: dict[str, T.RegistrationConfig] = CONFIGS) -> None:
    """Registration error and time per pose family and detector."""
    print("| detector | poses | found (fast path) | mean err px | p95 err px | max err px | "
          "ms / photo |")
    print("|---|---|---|---|---|---|---|")
    for cname, cfg in configs.items():
        refs = [T.prepare_reference(k.reference, layout_of(k), cfg) for k in kiosks]
        for fname, pose in FAMILIES.items():
            errs, ms, found, n, fast = [], [], 0, 0, 0
            for ki, (k, ref) in enumerate(zip(kiosks, refs, strict=True)):
                for m in range(meals):
                    pair = tb.make_pair(k, crops, 1000 * ki + m, pose=pose)
                    for shot in (pair.before, pair.after):
                        t = time.perf_counter()
                        reg = T.register_tray(ref, shot.image, cfg)
                        ms.append(1000 * (time.perf_counter() - t))
                        n += 1
                        if reg.found and reg.homography is not None:
                            found += 1
                            fast += reg.fast
                            errs.append(corner_error(reg.homography, k, shot.homography))
            e = np.array(errs) if errs else np.array([np.nan])
            print(f"| {cname} | {fname} | {found}/{n} ({fast}) | {e.mean():.2f} | "
                  f"{np.quantile(e, 0.95):.2f} | {e.max():.2f} | {statistics.median(ms):.0f} |")


def fill_table(kiosks: list[tb.Kiosk], crops: Sequence[FoodCrop], meals: int,
               reg_cfg: T.RegistrationConfig | None = None,
               fill_cfg: T.FillConfig | None = None) -> None:
    """Fill error, empty detection and leftover error on before/after pairs."""
    reg_cfg, fill_cfg = reg_cfg or T.RegistrationConfig(), fill_cfg or T.FillConfig()
    fill_err, left_err, empty_ok, fill_ms, n_empty = [], [], [], [], 0
    for ki, k in enumerate(kiosks):
        ref = T.prepare_reference(k.reference, layout_of(k), reg_cfg)
        for m in range(meals):
            pair = tb.make_pair(k, crops, 2000 + 1000 * ki + m, stray=m % 2 == 1)
            fills = []
            for shot in (pair.before, pair.after):
                reg = T.register_tray(ref, shot.image, reg_cfg)
                if not reg.found:
                    continue
                t = time.perf_counter()
                got = {c.slot: c for c in T.measure_fill(ref, shot.image, reg, None, fill_cfg)}
                fill_ms.append(1000 * (time.perf_counter() - t))
                fills.append(got)
                for s, c in got.items():
                    fill_err.append(c.fill - shot.fill[s])
                    truly = shot.fill[s] < T.EMPTY_FILL
                    empty_ok.append(c.empty == truly)
                    n_empty += truly
            if len(fills) < 2:
                continue
            for s, truth in pair.leftover.items():
                est = T.leftover_fraction(fills[0][s].fill, fills[1][s].fill)
                if est is not None:
                    left_err.append(est - truth)
    fe, le = 100 * np.abs(fill_err), np.abs(left_err)
    print("| measure | value |")
    print("|---|---|")
    print(f"| fill MAE (pp), {len(fe)} compartments | {fe.mean():.2f} |")
    print(f"| fill p90 / max abs error (pp) | {np.quantile(fe, 0.9):.2f} / {fe.max():.2f} |")
    print(f"| fill bias (pp, + = too much food) | {100 * np.mean(fill_err):+.2f} |")
    print(f"| empty flag correct ({n_empty} truly empty) | {np.mean(empty_ok):.3f} |")
    print(f"| leftover fraction MAE, {len(le)} served slots | {le.mean():.3f} |")
    print(f"| leftover p90 / max abs error | {np.quantile(le, 0.9):.3f} / {le.max():.3f} |")
    print(f"| measure_fill ms / photo (median) | {statistics.median(fill_ms):.0f} |")


def non_tray_table(kiosks: list[tb.Kiosk], photos: dict[str, list[Path]],
                   cfg: T.RegistrationConfig = CONFIGS["SIFT + ECC"]) -> None:
    """Share of not_found on photos that are not the kiosk's tray, and the reasons."""
    print("| photos | not_found | reasons |")
    print("|---|---|---|")
    refs = [T.prepare_reference(k.reference, layout_of(k), cfg) for k in kiosks]
    sets: dict[str, list[np.ndarray]] = {
        name: [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        for name, paths in photos.items()}
    sets["empty kiosk (backdrop only)"] = [np.clip(k.backdrop, 0, 255).astype(np.uint8)
                                           for k in kiosks]
    sets["another kiosk's tray"] = [k.reference for k in kiosks]
    for name, images in sets.items():
        reasons: dict[str, int] = {}
        n = nf = 0
        for ki, ref in enumerate(refs):
            for ii, img in enumerate(images):
                if name == "another kiosk's tray" and ii == ki:
                    continue
                reg = T.register_tray(ref, img, cfg)
                n += 1
                nf += not reg.found
                key = reg.reason or "FOUND"
                reasons[key] = reasons.get(key, 0) + 1
        text = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda x: -x[1]))
        print(f"| {name} ({len(images)} x {len(refs)} kiosks) | {nf}/{n} = {nf / n:.3f} | "
              f"{text} |")


def proposal_table(seeds: range) -> None:
    """Compartment proposals vs the drawn wells."""
    ious, counts, ms = [], [], []
    for seed in seeds:
        k = tb.make_kiosk(seed)
        t = time.perf_counter()
        props = T.propose_compartments(k.reference)
        ms.append(1000 * (time.perf_counter() - t))
        masks = [T.polygon_mask(p.polygon, k.size) for p in props]
        counts.append(len(props) == len(k.compartments))
        for poly in k.compartments.values():
            truth = T.polygon_mask(poly, k.size)
            ious.append(max(((truth & m).sum() / (truth | m).sum() for m in masks), default=0.0))
    iou = np.array(ious)
    print("| proposals | value |")
    print("|---|---|")
    print(f"| wells with a proposal IoU >= 0.8 ({len(iou)} wells, {len(seeds)} trays) | "
          f"{np.mean(iou >= 0.8):.3f} |")
    print(f"| mean best IoU | {iou.mean():.3f} |")
    print(f"| trays with exactly the right count | {np.mean(counts):.3f} |")
    print(f"| ms / tray (median) | {statistics.median(ms):.0f} |")


def inputs(shared: bool, n_photos: int) -> tuple[list[FoodCrop], dict[str, list[Path]]]:
    """Food crops and non-tray photos: shared data or the committed fixtures."""
    root = REPO.parent / "shared" / "data" / "images" if shared else REPO / "tests" / "fixtures"
    if shared and not root.is_dir():
        raise SystemExit(f"--shared: {root} not found")
    crops = tb.load_crops(root, per_label=3 if shared else 1)
    ec = sorted((root / "ecustfd" / "JPEGImages").glob("*.JPG"))
    mt = sorted((root / "mealtray" / "labeled").glob("*.jpg"))
    return crops, {"ECUSTFD plate photos": spread(ec, n_photos),
                   "mealtray photos (other trays)": spread(mt, n_photos)}


def spread(paths: list[Path], n: int) -> list[Path]:
    """Up to n paths taken evenly from a sorted list."""
    return paths[:: max(1, len(paths) // n)][:n]


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and print the tables."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shared", action="store_true", help="crops and photos from ../shared/data")
    p.add_argument("--kiosks", type=int, default=6)
    p.add_argument("--meals", type=int, default=2, help="before/after pairs per kiosk and family")
    p.add_argument("--photos", type=int, default=40, help="non-tray photos per set (shared)")
    p.add_argument("--size", default="640x480", help="photo size WxH")
    p.add_argument("--service", action="store_true",
                   help="only the service's registration (fast path) vs SIFT at 360 px")
    a = p.parse_args(argv)
    size = tuple(int(v) for v in a.size.split("x"))
    crops, photos = inputs(a.shared, a.photos)
    kiosks = [tb.make_kiosk(100 + i, size) for i in range(a.kiosks)]  # type: ignore[arg-type]
    print(f"# Tray layout benchmark ({platform.processor() or platform.machine()}, "
          f"{'shared data' if a.shared else 'fixtures'}, {len(crops)} crops, photos {a.size}, "
          f"{a.kiosks} kiosks x {a.meals} meals, work side {T.WORK_SIDE})\n")
    if a.service:
        registration_table(kiosks, crops, a.meals, SERVICE_CONFIGS)
        print()
        non_tray_table(kiosks, photos, SERVICE_CONFIGS["fast path 360 (service)"])
        print()
        from serve.services.layout_mode import FILL  # the service's fill settings

        print(f"Fill with the service's registration and fill (work side {FILL.work_side}):\n")
        fill_table(kiosks, crops, a.meals * 2, SERVICE_CONFIGS["fast path 360 (service)"], FILL)
        return
    registration_table(kiosks, crops, a.meals)
    print()
    fill_table(kiosks, crops, a.meals * 2)
    print()
    non_tray_table(kiosks, photos)
    print()
    proposal_table(range(200, 200 + 4 * a.kiosks))


if __name__ == "__main__":
    main()
