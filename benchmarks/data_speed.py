"""Data-layer speed: importing the real sets, GrabCut pseudo masks, tray composition.

Run: nice -n 10 .venv/bin/python benchmarks/data_speed.py [--data ../shared/data] [--sample N]
Prints a Markdown table for docs/BENCHMARKS.md. Wall and CPU seconds side by side: on a
shared machine wall time also counts waiting for a core.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.data.compose import compose_dataset, extract_crops  # noqa: E402
from model.data.importers.ecustfd import import_ecustfd  # noqa: E402
from model.data.importers.mealtray import import_mealtray  # noqa: E402
from model.data.pseudo import add_pseudo_masks  # noqa: E402


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def repeat(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    """Median wall and CPU seconds over n calls."""
    runs = [timed(fn)[1:] for _ in range(n)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    """Measure and print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--sample", type=int, default=20, help="images per set for pseudo masks")
    p.add_argument("--compose", type=int, default=20, help="composed images")
    a = p.parse_args()
    imgs = a.data / "images"
    rows: list[tuple[str, str, float, float]] = []
    mt_w, mt_c = repeat(lambda: import_mealtray(imgs / "mealtray" / "labeled"), 3)
    rows.append(("import mealtray (375 images, runs)", "per set", mt_w, mt_c))
    ec_w, ec_c = repeat(lambda: import_ecustfd(imgs / "ecustfd"), 3)
    rows.append(("import ECUSTFD (1,288 XML)", "per set", ec_w, ec_c))
    for name, ds in (("mealtray", import_mealtray(imgs / "mealtray" / "labeled")),
                     ("ECUSTFD", import_ecustfd(imgs / "ecustfd"))):
        ids = {im.id for im in ds.images[:: max(1, len(ds.images) // a.sample)][: a.sample]}
        anns = [x.id for x in ds.annotations if x.image_id in ids]
        _, w, c = timed(partial(add_pseudo_masks, ds, anns))
        rows.append((f"pseudo masks, {name} ({len(anns)} boxes)", "per box",
                     w / len(anns), c / len(anns)))
    ec = import_ecustfd(imgs / "ecustfd")
    crops = extract_crops(ec, per_label=2, seed=0, require_grams=True)
    with tempfile.TemporaryDirectory() as tmp:
        _, w, c = timed(lambda: compose_dataset(crops, tmp, a.compose, seed=0))
    rows.append((f"compose 640x480 ({a.compose} images, {len(crops)} crops)", "per image",
                 w / a.compose, c / a.compose))
    print(f"Python {platform.python_version()}, {platform.machine()}\n")
    print("| step | unit | wall ms | CPU ms |\n|---|---|---|---|")
    for step, unit, w, c in rows:
        print(f"| {step} | {unit} | {w * 1000:.1f} | {c * 1000:.1f} |")


if __name__ == "__main__":
    main()
