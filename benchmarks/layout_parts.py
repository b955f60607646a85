"""Layout mode's pieces timed directly (independent of the service): registration (the
service's config, fast path from the kiosk's last pose), fill (the service's FillConfig) and
the service's own layout work (serve.services.layout_mode.analyze_layout less the two),
on one composed 640x480 tray photo (model.data.traybed kiosk 5, fixture crops, JPEG).
Usage: python benchmarks/layout_parts.py [--runs 50]
Medians of --runs calls, interleaved; prints the load average (the CPU is shared).
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.data import traybed as tb  # noqa: E402
from model.infer import tray as T  # noqa: E402
from serve.services.layout_mode import FILL  # noqa: E402
from serve.services.layouts import REGISTRATION  # noqa: E402


def jpeg_rgb(rgb: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    size = (640, 480)
    crops = tb.load_crops(REPO / "tests" / "fixtures", per_label=1,
                          sets=("labelme", "maskpng", "mealtray"))
    kiosk = tb.make_kiosk(5, size)
    pair = tb.make_pair(kiosk, crops, 1)
    photo = jpeg_rgb(pair.before.image)
    comps = [{"slot": s, "polygon": p.tolist()} for s, p in kiosk.compartments.items()]
    ref = T.prepare_reference(jpeg_rgb(kiosk.reference), T.parse_layout(comps), REGISTRATION)
    hint = T.register_tray(ref, photo, REGISTRATION).homography
    times: dict[str, list[float]] = {"register": [], "fill": []}
    for _ in range(3):  # warm-up
        reg = T.register_tray(ref, photo, REGISTRATION, hint=hint)
        T.measure_fill(ref, photo, reg, None, FILL)
    for _ in range(args.runs):
        t0 = time.perf_counter()
        reg = T.register_tray(ref, photo, REGISTRATION, hint=hint)
        t1 = time.perf_counter()
        fills = T.measure_fill(ref, photo, reg, None, FILL)
        t2 = time.perf_counter()
        times["register"].append(t1 - t0)
        times["fill"].append(t2 - t1)
    err = [abs(f.fill - pair.before.fill.get(f.slot, 0.0)) for f in fills]
    print(f"640x480, {args.runs} runs, fast path taken: {reg.fast}, "
          f"fill err mean {np.mean(err):.3f} max {np.max(err):.3f}")
    for k, v in times.items():
        print(f"  {k:8s} p50 {statistics.median(v) * 1000:6.2f} ms  "
              f"min {min(v) * 1000:6.2f} ms")
    total = sum(statistics.median(v) for v in times.values()) * 1000
    print(f"  register + fill p50 {total:.2f} ms")
    print(f"  load average before {' '.join(load)}, "
          f"after {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
