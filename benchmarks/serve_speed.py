"""Service speed in one run: POST /v1/analyze against the raw model, batch vs single, RSS.

For 1 and 2 uvicorn workers it starts the real service on 127.0.0.1 (a temp SQLite database
and data dir), sends one real tray photo, and prints side by side:
  - p50/p95 of single POST /v1/analyze requests over HTTP vs model.infer.runtime on the same
    photo in this process, taken alternately so that load from other jobs hits both alike:
    decode + predict (the model's time for the photo; target: p50 ratio <= 1.3) and, stricter,
    predict on the already decoded photo;
  - images/s of POST /v1/analyze/batch vs single requests (sequential and concurrent);
  - RSS of each worker after the load.
Usage: python benchmarks/serve_speed.py [--requests 80] [--workers 1 2] [--write-docs]
Layout mode's cost (a kiosk with a tray layout vs one without, side by side) is
benchmarks/layout_speed.py; docs/BENCHMARKS.md "Layout mode" has both.
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
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from any folder

# One home for the machine line and the docs-section writer: the model benchmark's.
from benchmarks.model_speed import machine, write_section  # noqa: E402

DEFAULT_IMAGE = REPO / "serve" / "samples" / "tray-charcuterie.jpg"
BENCHMARKS_DOC = REPO / "docs" / "BENCHMARKS.md"
SECTION = "## Service"
PAUSE_S = 0.05  # before each timed call (see alternate)
# How to read the figures (printed under them, the same every run).
METHOD_NOTES = (
    "- Single requests go one after another over one keep-alive connection, so they reach one "
    "worker; the concurrent column uses 2 clients per worker.",
    "- The batch endpoint runs ONNX Runtime on batches of `TRAYLENS_BATCH_SIZE` (default 8); "
    "the RSS after batch requests includes the runtime's memory arena grown for that batch.",
    "- The benchmark migrates the temp database and creates the admin key before starting the "
    "workers: uvicorn workers starting together on a fresh database race on the Alembic upgrade.",
    f"- Each timed call, raw or over HTTP, follows a pause of {PAUSE_S * 1000:.0f} ms, so that "
    "the other process's ONNX Runtime threads have stopped spinning and are not timed against it.",
    "- The target ratio is taken against decode + predict: the model cannot see a photo without "
    "decoding it, and both sides decode the same way (`load_image(..., fit=input size)`, a JPEG "
    "reduced by DCT scaling). Against predict alone the service's decode counts as overhead too.",
)


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
    """This environment (e.g. TRAYLENS_MODEL_PATH) with a fresh data dir, SQLite file, admin key."""
    env = dict(os.environ)
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


def prepare_database(url: str, admin_key: str) -> None:
    """Migrate the database and create the admin key once, as an operator does before scaling
    out: uvicorn workers starting together on a fresh database race on the Alembic upgrade."""
    from serve.core.auth import bootstrap_admin
    from serve.db.migrate import upgrade_database
    from serve.db.session import make_engine, make_session_factory, transaction

    engine = make_engine(url)
    try:
        upgrade_database(engine)
        with transaction(make_session_factory(engine)) as session:
            bootstrap_admin(session, admin_key)
    finally:
        engine.dispose()


@contextmanager
def running_service(workers: int = 1, env: dict[str, str] | None = None,
                    timeout_s: float = 120.0) -> Iterator[LiveService]:
    """Start `uvicorn serve.main:create_app` in a subprocess, yield it ready, stop it after."""
    with tempfile.TemporaryDirectory(prefix="traylens-live-") as tmp:
        data_dir = Path(tmp) / "data"
        admin_key = secrets.token_urlsafe(32)
        port = free_port()
        log_path = Path(tmp) / "service.log"
        service_vars = service_env(data_dir, admin_key, env)
        prepare_database(service_vars["TRAYLENS_DATABASE_URL"], admin_key)
        command = [sys.executable, "-m", "uvicorn", "serve.main:create_app", "--factory",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                   "--log-level", "warning"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                       env=service_vars)
        service = LiveService(process, f"http://127.0.0.1:{port}", admin_key, data_dir, log_path)
        try:
            _wait_ready(service, timeout_s)
            yield service
        except Exception:
            # The client-side error rarely says why: show what the service logged.
            print(f"service log ({log_path.name}):\n{service.log_tail()}", file=sys.stderr)
            raise
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


def time_call(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds per call of fn, after warm-up calls that are not counted."""
    for _ in range(warmup):
        fn()
    return [time_call(fn) for _ in range(repeats)]


class RawModel:
    """model.infer.runtime in this process on the same photo: the baseline to beat."""

    def __init__(self, model_path: Path, image_bytes: bytes) -> None:
        from model.infer.images import load_image
        from model.infer.runtime import TrayModel

        self._load_image = load_image
        self.model_path = model_path
        self.model = TrayModel(str(model_path))
        self.image_bytes = image_bytes
        # Decoded as the service decodes (reduced to the input size), so the baseline is the
        # very model work a request does, not a full-size decode that the service skips.
        self.fit = self.model.meta.input_size
        self.image = load_image(image_bytes, fit=self.fit)

    def predict(self) -> None:
        """The model on the decoded photo (what the service times as inference)."""
        self.model.predict([self.image])

    def decode_predict(self) -> None:
        """Decode the JPEG (as the service does), then the model."""
        self.model.predict([self._load_image(self.image_bytes, fit=self.fit)])


def _post_analyze(client: httpx.Client, image_bytes: bytes) -> None:
    """One POST /v1/analyze; any answer but 201 Created stops the benchmark."""
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


def metric_sums(client: httpx.Client) -> dict[str, tuple[float, float]]:
    """(sum, count) of the service's analyze request and batch-1 inference histograms."""
    wanted = {
        "request": ("traylens_request_seconds", {"method": "POST", "route": "/v1/analyze"}),
        "inference": ("traylens_inference_seconds", {"batch_size": "1"}),
    }
    found = {name: [0.0, 0.0] for name in wanted}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            for name, (metric, labels) in wanted.items():
                if not sample.name.startswith(metric) or any(
                        sample.labels.get(k) != v for k, v in labels.items()):
                    continue
                if sample.name.endswith("_sum"):
                    found[name][0] = sample.value
                elif sample.name.endswith("_count"):
                    found[name][1] = sample.value
    return {name: (total, count) for name, (total, count) in found.items()}


def service_means(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
                  ) -> dict[str, float]:
    """Mean seconds per observation between two scrapes, per histogram."""
    means = {}
    for name in before:
        count = after[name][1] - before[name][1]
        means[name] = (after[name][0] - before[name][0]) / count if count else float("nan")
    return means


@dataclass
class WorkerRun:
    """Figures for one worker count; raw model and HTTP timings taken alternately."""

    workers: int
    raw: dict[str, list[float]]
    single: list[float]
    inside: dict[str, float]
    sequential_ips: float
    concurrent_ips: float
    batch_ips: float
    rss_single: list[float]
    rss_batch: list[float]
    load: tuple[float, float]  # 1-minute load average before and after: other jobs' share


def alternate(raw: RawModel, post: Callable[[], object], repeats: int
              ) -> tuple[dict[str, list[float]], list[float]]:
    """Raw predict, decode+predict and one request in turn, so load drifts hit all alike.

    A short pause before each call lets the other process's ONNX Runtime threads stop
    spinning (they busy-wait after a run), so neither side is timed against the other."""
    times: dict[str, list[float]] = {"predict": [], "decode+predict": []}
    single = []
    for _ in range(repeats):
        for name, call in (("predict", raw.predict), ("decode+predict", raw.decode_predict)):
            time.sleep(PAUSE_S)
            times[name].append(time_call(call))
        time.sleep(PAUSE_S)
        single.append(time_call(post))
    return times, single


def measure_service(workers: int, image_bytes: bytes, raw: RawModel, args: argparse.Namespace
                    ) -> WorkerRun:
    """Start the service with `workers` workers and measure it."""
    load_before = os.getloadavg()[0]
    env = {"TRAYLENS_MODEL_PATH": str(raw.model_path)}
    with running_service(workers=workers, env=env) as service, \
            _client(service.url, service.admin_key) as client:
        def post() -> None:
            _post_analyze(client, image_bytes)

        for _ in range(args.warmup):
            post()
            raw.predict()
        # With one worker every request lands in the process /metrics answers from.
        before = metric_sums(client)
        raw_times, single = alternate(raw, post, args.requests)
        inside = service_means(before, metric_sums(client)) if workers == 1 else {}
        # Each worker has its own model session: a short concurrent round warms them all.
        rss_single = [rss_mib(pid) for pid in service.worker_pids()]
        concurrent_rate(service.url, service.admin_key, image_bytes, 2 * workers, 2 * workers)
        concurrent = concurrent_rate(service.url, service.admin_key, image_bytes,
                                     args.requests, 2 * workers)
        batch_times = timed(lambda: _post_batch(client, image_bytes, args.batch_size),
                            args.batches, 1)
        rss_batch = [rss_mib(pid) for pid in service.worker_pids()]
    return WorkerRun(
        workers=workers, raw=raw_times, single=single, inside=inside,
        sequential_ips=1 / statistics.mean(single), concurrent_ips=concurrent,
        batch_ips=args.batch_size / statistics.mean(batch_times), rss_single=rss_single,
        rss_batch=rss_batch, load=(load_before, os.getloadavg()[0]),
    )


# ---- report -------------------------------------------------------------------------


def _ms(times: Sequence[float], q: float) -> str:
    """The q-th percentile of durations in seconds, as milliseconds."""
    return f"{percentile(times, q) * 1000:.1f}"


def report(runs: list[WorkerRun], args: argparse.Namespace) -> str:
    """The figures as a Markdown section."""
    image = args.image.resolve()
    shown = image.relative_to(REPO) if image.is_relative_to(REPO) else image
    lines = [
        SECTION, "",
        f"Measured by `python benchmarks/serve_speed.py` on {time.strftime('%Y-%m-%d')}: "
        f"{machine()}; photo `{shown}`; per worker count {args.requests} single requests "
        f"over HTTP, each after one in-process runtime predict and decode+predict of the "
        f"same photo (alternating, after {args.warmup} warm-up rounds); batch endpoint "
        f"{args.batches} x {args.batch_size} images; SQLite; ONNX Runtime default threads.",
        "",
        "| workers | raw predict p50 / p95 ms | raw decode+predict p50 / p95 ms "
        "| POST /v1/analyze p50 / p95 ms | analyze p50 / raw decode+predict p50 (target <= 1.3) "
        "| analyze p50 / raw predict p50 (stricter) | load average before / after |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        pred, dec = run.raw["predict"], run.raw["decode+predict"]
        ratio = percentile(run.single, 50) / percentile(pred, 50)
        ratio_decoded = percentile(run.single, 50) / percentile(dec, 50)
        lines.append(f"| {run.workers} | {_ms(pred, 50)} / {_ms(pred, 95)} | {_ms(dec, 50)} / "
                     f"{_ms(dec, 95)} | {_ms(run.single, 50)} / {_ms(run.single, 95)} "
                     f"| {ratio_decoded:.2f} | {ratio:.2f} "
                     f"| {run.load[0]:.1f} / {run.load[1]:.1f} |")
    lines += ["", "| workers | single images/s (sequential) | single images/s (concurrent) "
              "| batch images/s | RSS per worker MiB (after single / after batch requests) |",
              "|---:|---:|---:|---:|---|"]
    for run in runs:
        rss = (", ".join(f"{value:.0f}" for value in run.rss_single) + " / "
               + ", ".join(f"{value:.0f}" for value in run.rss_batch))
        lines.append(f"| {run.workers} | {run.sequential_ips:.1f} | {run.concurrent_ips:.1f} "
                     f"({2 * run.workers} clients) | {run.batch_ips:.1f} | {rss} |")
    lines += [*_breakdown(runs), "", *METHOD_NOTES]
    return "\n".join(lines) + "\n"


def _breakdown(runs: list[WorkerRun]) -> list[str]:
    """Where a single request's time goes, from the 1-worker service's own histograms."""
    run = next((r for r in runs if r.inside), None)
    if run is None:
        return []
    return [
        "", f"Mean of one request with 1 worker: {statistics.mean(run.single) * 1000:.1f} ms at "
        f"the client; {run.inside['request'] * 1000:.1f} ms inside the service (middleware to "
        f"response), of which {run.inside['inference'] * 1000:.1f} ms in runtime predict "
        f"(in this process, alternating: {statistics.mean(run.raw['predict']) * 1000:.1f} ms).",
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (all loops are bounded by these)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a real tray photo")
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX file for both the service and the raw timing "
                        "(default: TRAYLENS_MODEL_PATH or the shipped model)")
    parser.add_argument("--requests", type=int, default=80, help="timed single requests")
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
    from serve.core.settings import load_settings

    model_path = args.model or load_settings().model_path
    image_bytes = args.image.read_bytes()
    print(f"model: {model_path}", flush=True)
    raw = RawModel(model_path, image_bytes)
    runs = []
    for workers in args.workers:
        print(f"service with {workers} worker(s)...", flush=True)
        runs.append(measure_service(workers, image_bytes, raw, args))
    section = report(runs, args)
    print(section)
    if args.write_docs:
        write_section(BENCHMARKS_DOC, section, SECTION)
        print(f"wrote the '{SECTION}' section of {BENCHMARKS_DOC}")


if __name__ == "__main__":
    main()
