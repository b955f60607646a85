"""Service speed in one run: POST /v1/analyze against the raw model, batch vs single, RSS.

For 1 and 2 uvicorn workers it starts the real service on 127.0.0.1 (a temp SQLite database
and data dir), sends one real tray photo, and prints side by side:
  - p50/p95 of single POST /v1/analyze requests over HTTP vs model.runtime predict on the
    same decoded photo in this process (target: p50 ratio <= 1.3);
  - images/s of POST /v1/analyze/batch vs single requests (sequential and concurrent);
  - RSS of each worker after the load.
Usage: python benchmarks/serve_speed.py [--requests 40] [--workers 1 2] [--write-docs]
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO / "serve" / "samples" / "tray-charcuterie.jpg"
BENCHMARKS_DOC = REPO / "docs" / "BENCHMARKS.md"
SECTION = "## Service"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveService:
    """A real service process on 127.0.0.1 with its own data dir and admin key."""

    process: subprocess.Popen[bytes]
    url: str
    admin_key: str
    data_dir: Path
    log_path: Path

    def worker_pids(self) -> list[int]:
        """The processes that answer requests: uvicorn's spawned workers, or the one process."""
        children = [
            pid for pid in _child_pids(self.process.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        return children or [self.process.pid]

    def log_tail(self, lines: int = 30) -> str:
        """The end of the service's log, for error messages."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _child_pids(parent: int) -> list[int]:
    """Direct children of a process, from /proc (Linux)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def service_env(data_dir: Path, admin_key: str, extra: dict[str, str] | None = None
                ) -> dict[str, str]:
    """Environment for a fresh service: temp data dir and SQLite file, bootstrap admin key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYLENS_")}
    env.update(
        TRAYLENS_DATA_DIR=str(data_dir),
        TRAYLENS_DATABASE_URL=f"sqlite:///{data_dir / 'traylens.db'}",
        TRAYLENS_BOOTSTRAP_ADMIN_KEY=admin_key,
    )
    env.update(extra or {})
    return env


def _wait_ready(service: LiveService, timeout_s: float) -> None:
    """Poll /readyz until the service answers 200; raise with its log if it dies or stalls."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"the service exited at startup:\n{service.log_tail()}")
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise RuntimeError(f"the service was not ready after {timeout_s:.0f} s:\n{service.log_tail()}")


@contextmanager
def running_service(workers: int = 1, env: dict[str, str] | None = None,
                    timeout_s: float = 120.0) -> Iterator[LiveService]:
    """Start `uvicorn serve.main:create_app` in a subprocess, yield it ready, stop it after."""
    with tempfile.TemporaryDirectory(prefix="traylens-live-") as tmp:
        data_dir = Path(tmp) / "data"
        admin_key = secrets.token_urlsafe(32)
        port = free_port()
        log_path = Path(tmp) / "service.log"
        command = [sys.executable, "-m", "uvicorn", "serve.main:create_app", "--factory",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                   "--log-level", "warning"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                       env=service_env(data_dir, admin_key, env))
        service = LiveService(process, f"http://127.0.0.1:{port}", admin_key, data_dir, log_path)
        try:
            _wait_ready(service, timeout_s)
            yield service
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---- measurements -------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds per call of fn, after warm-up calls that are not counted."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def raw_model_times(model_path: Path, image_bytes: bytes, repeats: int, warmup: int
                    ) -> dict[str, list[float]]:
    """model.runtime on the photo in this process: predict alone, and decode + predict."""
    from model.runtime import TrayModel, load_image

    model = TrayModel(str(model_path))
    image = load_image(image_bytes)
    return {
        "predict": timed(lambda: model.predict([image]), repeats, warmup),
        "decode+predict": timed(lambda: model.predict([load_image(image_bytes)]), repeats, warmup),
    }


def _post_analyze(client: httpx.Client, image_bytes: bytes) -> None:
    """One POST /v1/analyze; any answer but 201 Created stops the benchmark with the service's answer."""
    answer = client.post("/v1/analyze", files={"image": ("tray.jpg", image_bytes, "image/jpeg")})
    if answer.status_code != 201:
        raise RuntimeError(f"/v1/analyze answered {answer.status_code}: {answer.text[:500]}")


def _post_batch(client: httpx.Client, image_bytes: bytes, size: int) -> None:
    """One POST /v1/analyze/batch with `size` copies of the photo."""
    files = [("images", (f"tray{i}.jpg", image_bytes, "image/jpeg")) for i in range(size)]
    answer = client.post("/v1/analyze/batch", files=files)
    if answer.status_code != 200:
        raise RuntimeError(f"/v1/analyze/batch answered {answer.status_code}: {answer.text[:500]}")


def concurrent_rate(url: str, key: str, image_bytes: bytes, total: int, clients: int) -> float:
    """Images/s of single requests sent by `clients` threads at once (total requests)."""
    def worker(count: int) -> None:
        with _client(url, key) as client:
            for _ in range(count):
                _post_analyze(client, image_bytes)

    shares = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, shares))
    return total / (time.perf_counter() - start)


def _client(url: str, key: str) -> httpx.Client:
    """A keep-alive HTTP client with the API key."""
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


@dataclass
class WorkerRun:
    """Figures for one worker count."""

    workers: int
    single: list[float]
    sequential_ips: float
    concurrent_ips: float
    batch_ips: float
    rss_mib: list[float]


def measure_service(workers: int, image_bytes: bytes, args: argparse.Namespace) -> WorkerRun:
    """Start the service with `workers` workers and measure it."""
    with running_service(workers=workers) as service, \
            _client(service.url, service.admin_key) as client:
        single = timed(lambda: _post_analyze(client, image_bytes), args.requests, args.warmup)
        # Each worker has its own model session: a short concurrent round warms them all.
        concurrent_rate(service.url, service.admin_key, image_bytes, 2 * workers, 2 * workers)
        concurrent = concurrent_rate(service.url, service.admin_key, image_bytes,
                                     args.requests, 2 * workers)
        batch_times = timed(lambda: _post_batch(client, image_bytes, args.batch_size),
                            args.batches, 1)
        rss = [rss_mib(pid) for pid in service.worker_pids()]
    return WorkerRun(
        workers=workers,
        single=single,
        sequential_ips=1 / statistics.mean(single),
        concurrent_ips=concurrent,
        batch_ips=args.batch_size / statistics.mean(batch_times),
        rss_mib=rss,
    )


# ---- report -------------------------------------------------------------------------


def machine_line() -> str:
    """CPU model and count, for the figures' context."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} logical CPUs"


def _ms(times: Sequence[float], q: float) -> str:
    """The q-th percentile of durations in seconds, as milliseconds."""
    return f"{percentile(times, q) * 1000:.1f}"


def report(raw: dict[str, list[float]], runs: list[WorkerRun], args: argparse.Namespace
           ) -> str:
    """The figures as a Markdown section."""
    image = args.image.resolve()
    shown = image.relative_to(REPO) if image.is_relative_to(REPO) else image
    lines = [
        SECTION, "",
        f"Measured by `python benchmarks/serve_speed.py` on {time.strftime('%Y-%m-%d')}: "
        f"{machine_line()}; photo `{shown}`; {args.requests} timed requests after "
        f"{args.warmup} warm-up ones; batch endpoint {args.batches} x {args.batch_size} "
        "images; SQLite; ONNX Runtime default threads.",
        "",
        "| | p50 ms | p95 ms |",
        "|---|---:|---:|",
    ]
    for name, times in raw.items():
        lines.append(f"| model.runtime {name} (in process) | {_ms(times, 50)} | {_ms(times, 95)} |")
    for run in runs:
        lines.append(f"| POST /v1/analyze, {run.workers} worker(s) | {_ms(run.single, 50)} "
                     f"| {_ms(run.single, 95)} |")
    lines += ["", "| workers | analyze p50 / raw predict p50 | single images/s (sequential) "
              "| single images/s (concurrent clients) | batch images/s | RSS per worker MiB |",
              "|---:|---:|---:|---:|---:|---|"]
    raw_p50 = percentile(raw["predict"], 50)
    for run in runs:
        ratio = percentile(run.single, 50) / raw_p50
        rss = ", ".join(f"{value:.0f}" for value in run.rss_mib)
        lines.append(f"| {run.workers} | {ratio:.2f} | {run.sequential_ips:.1f} | "
                     f"{run.concurrent_ips:.1f} ({2 * run.workers} clients) | {run.batch_ips:.1f} "
                     f"| {rss} |")
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace (or append) this script's section of docs/BENCHMARKS.md, keeping the others."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        rest = text[end + 1:] if end >= 0 else ""
        text = text[:start] + section + ("\n" + rest if rest else "")
    doc.write_text(text, encoding="utf-8")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (all loops are bounded by these)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a real tray photo")
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX file for the raw timing (default: the service's setting)")
    parser.add_argument("--requests", type=int, default=40, help="timed single requests")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch request")
    parser.add_argument("--batches", type=int, default=5, help="timed batch requests")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--write-docs", action="store_true",
                        help=f"replace the '{SECTION}' section of docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    for name in ("requests", "warmup", "batch_size", "batches"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            parser.error(f"--{name.replace('_', '-')} is too small")
    if not args.image.is_file():
        parser.error(f"no such photo: {args.image}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run every measurement in one go and print (optionally save) the figures."""
    args = parse_args(argv)
    from serve.settings import load_settings

    model_path = args.model or load_settings().model_path
    image_bytes = args.image.read_bytes()
    print(f"raw model: {model_path}", flush=True)
    raw = raw_model_times(model_path, image_bytes, args.requests, args.warmup)
    runs = []
    for workers in args.workers:
        print(f"service with {workers} worker(s)...", flush=True)
        runs.append(measure_service(workers, image_bytes, args))
    section = report(raw, runs, args)
    print(section)
    if args.write_docs:
        write_section(BENCHMARKS_DOC, section)
        print(f"wrote the '{SECTION}' section of {BENCHMARKS_DOC}")


if __name__ == "__main__":
    main()
