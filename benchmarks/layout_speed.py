"""Layout mode's cost: POST /v1/analyze of one composed tray photo (model.data.traybed, fixture
crops) from a kiosk WITH a tray layout vs the same photo from a kiosk without one, taken
alternately in one in-process app (TestClient, SQLite) so load from other jobs hits both alike.
Target: layout p50 <= 1.2 x plain p50.
Both kiosks' photos name the same menu, whose dishes carry the tray slots.
Usage: python benchmarks/layout_speed.py [--requests 40] [--size 640 480]
Prints the load average before and after (the CPU is shared: compare ratios, not times).
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from any folder

from fastapi.testclient import TestClient  # noqa: E402

from model.data import traybed as tb  # noqa: E402
from serve.core.settings import load_settings  # noqa: E402
from serve.main import create_app  # noqa: E402

ADMIN = "tl_bench_admin_" + "k" * 24


def jpeg(rgb: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480))
    args = parser.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() \
        else ["?"]
    size = (args.size[0], args.size[1])
    crops = tb.load_crops(REPO / "tests" / "fixtures", per_label=1,
                          sets=("labelme", "maskpng", "mealtray"))
    kiosk = tb.make_kiosk(5, size)
    photo = jpeg(tb.make_pair(kiosk, crops, 1).before.image)
    comps = [{"slot": s, "polygon": p.tolist()} for s, p in kiosk.compartments.items()]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(database_url=f"sqlite:///{tmp}/b.db", data_dir=Path(tmp),
                                 bootstrap_admin_key=ADMIN)
        with TestClient(create_app(settings)) as client:
            h = {"Authorization": f"Bearer {ADMIN}"}
            canteen = client.post("/v1/canteens", json={"name": "bench"}, headers=h).json()["id"]
            ids = {}
            for name in ("layout", "plain"):
                ids[name] = client.post("/v1/kiosks", json={"name": name,
                                                            "canteen_id": canteen},
                                        headers=h).json()["id"]
            r = client.put(f"/v1/kiosks/{ids['layout']}/layout", headers=h,
                           data={"compartments": json.dumps(comps)},
                           files={"reference": ("r.jpg", jpeg(kiosk.reference), "image/jpeg")})
            assert r.status_code == 200, r.text
            # The canteen's menu names each compartment's dish (tray_slot), as in production.
            menu = client.post("/v1/menus", headers=h, json={
                "canteen_id": canteen, "date": "2026-11-30", "meal": "lunch",
                "dishes": [{"food_id": "sr28:09003", "tray_slot": c["slot"]} for c in comps]})
            assert menu.status_code == 201, menu.text
            times: dict[str, list[float]] = {"layout": [], "plain": []}
            for i in range(args.requests * 2 + 4):
                name = ("layout", "plain")[i % 2]
                began = time.perf_counter()
                r = client.post("/v1/analyze", headers=h,
                                data={"kiosk_id": ids[name], "menu_id": menu.json()["id"]},
                                files={"image": ("t.jpg", photo, "image/jpeg")})
                elapsed = time.perf_counter() - began
                assert r.status_code == 201, r.text
                if i >= 4:  # warm-up: first runs of each path
                    times[name].append(elapsed)
            assert r.json()["layout"] is None
    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    p95 = {k: sorted(v)[int(0.95 * (len(v) - 1))] * 1000 for k, v in times.items()}
    print(f"photo {size[0]}x{size[1]}, {args.requests} requests each, alternating")
    for k in ("plain", "layout"):
        print(f"  {k:6s} POST /v1/analyze p50 {p50[k]:.1f} ms  p95 {p95[k]:.1f} ms")
    print(f"  layout / plain p50: {p50['layout'] / p50['plain']:.2f} (target <= 1.20)")
    load_after = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() \
        else ["?"]
    print(f"  load average before {' '.join(load_before)}, after {' '.join(load_after)}")


if __name__ == "__main__":
    main()
