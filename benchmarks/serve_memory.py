"""Worker memory under hostile load, and images/s of 1 vs 2 workers (issue 18).

Starts the real service (uvicorn, temp SQLite) and for each worker count prints:
  - RSS per worker idle (after one warm request), the peak while `--clients` clients send
    big PNGs at once (the issue's 6300x6300, 0.1 MB on the wire, and a 5600x4200 one just
    under the 24 MP limit), the RSS after them, and after one batch request of 16 photos;
  - images/s of single POST /v1/analyze requests from 2 clients per worker.
Usage: python benchmarks/serve_memory.py [--workers 1 2] [--clients 16] [--requests 40]
Run from the repository whose service is measured (it starts `serve` from its own folder).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serve_speed import (  # noqa: E402
    DEFAULT_IMAGE,
    LiveService,
    concurrent_rate,
    rss_mib,
    running_service,
)


def big_png(width: int, height: int) -> bytes:
    """A decodable PNG of this size that is small on the wire (a plate on a tray)."""
    img = Image.new("RGB", (width, height), (200, 190, 170))
    ImageDraw.Draw(img).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4),
                                fill=(150, 90, 40))
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


def peak_mib(pid: int) -> float:
    """VmHWM (peak RSS since the last reset) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def reset_peak(pid: int) -> None:
    """Start a new VmHWM window (Linux: 5 > clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _rss(service: LiveService) -> list[float]:
    return [round(rss_mib(pid)) for pid in service.worker_pids()]


def flood(service: LiveService, data: bytes, clients: int) -> dict[int, int]:
    """`clients` single requests at once; count of answers per status."""
    def post(_: int) -> int:
        with httpx.Client(base_url=service.url, timeout=300, headers={
                "Authorization": f"Bearer {service.admin_key}"}) as client:
            return client.post("/v1/analyze", files={
                "image": ("big.png", data, "image/png")}).status_code
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(post, range(clients)))
    return {s: statuses.count(s) for s in sorted(set(statuses))}


def measure(workers: int, args: argparse.Namespace, photo: bytes) -> None:
    """One service with `workers` workers: memory, then throughput."""
    with running_service(workers=workers, env={"WEB_CONCURRENCY": str(workers)}) as service:
        headers = {"Authorization": f"Bearer {service.admin_key}"}
        with httpx.Client(base_url=service.url, headers=headers, timeout=300) as client:
            for _ in range(2 * workers):
                client.post("/v1/analyze", files={"image": ("t.jpg", photo, "image/jpeg")})
            print(f"workers={workers} idle RSS MiB {_rss(service)}")
            for name, (w, h) in (("6300x6300", (6300, 6300)), ("5600x4200", (5600, 4200))):
                data = big_png(w, h)
                for pid in service.worker_pids():
                    reset_peak(pid)
                for round_ in (1, 2):
                    statuses = flood(service, data, args.clients)
                    peaks = [round(peak_mib(pid)) for pid in service.worker_pids()]
                    time.sleep(1)
                    print(f"  {args.clients} x {name} PNG ({len(data) / 1e3:.0f} KB) round "
                          f"{round_}: {statuses}; peak RSS MiB {peaks}; after {_rss(service)}")
            files = [("images", (f"{n}.jpg", photo, "image/jpeg")) for n in range(16)]
            answer = client.post("/v1/analyze/batch", files=files)
            time.sleep(1)
            print(f"  batch of 16 photos: {answer.status_code}; RSS after MiB {_rss(service)}")
        rate = concurrent_rate(service.url, service.admin_key, photo, args.requests,
                               2 * workers)
        print(f"  images/s, single requests from {2 * workers} clients: {rate:.1f}")


def main() -> None:
    """Parse arguments and measure each worker count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    photo = DEFAULT_IMAGE.read_bytes()
    for workers in args.workers:
        measure(workers, args, photo)


if __name__ == "__main__":
    main()
