"""Load and throughput of the real service on loopback (issue 18): bounded, self-stopping.

For each worker count it starts `uvicorn serve.main:create_app` on 127.0.0.1 (a temp SQLite
file and data dir, or --database-url), sets up a canteen with a kiosk, a kiosk key and
diners, warms up, then runs the chosen scenarios for --duration seconds each:

  mixed     closed loop, --concurrency clients: analyze (real sample photos with kiosk_id,
            user_id and before/after) and reads (GET /v1/analyses, one analysis, a diner's
            day, pairs) in the ratio --analyze-share;
  capacity  closed loop, analyze only: photos/s the workers sustain (the rush's ceiling);
  rush      open loop: a canteen of --diners, before + after photo each within
            --window-minutes, as Poisson arrivals at the average rate and at --peak-factor
            times it; latency counts from each photo's arrival time (no coordinated omission).

It prints throughput, p50/p95/p99, errors, the RSS of the server processes before and after
each scenario (sum over workers), the load average, and, for the rush, the headroom
(capacity / peak arrival rate). Every request has a timeout; every run stops at its deadline.

Why asyncio + httpx and not wrk or locust: the rush needs open-loop arrivals at a set rate
(wrk and locust users are closed loops: a slow answer delays the next request and hides the
queueing delay), the analyze requests are multipart uploads with per-diner fields (wrk needs
Lua for that), and httpx is already a dependency (locust would add gevent and a web UI).

Usage: python benchmarks/load.py [--workers 1 2] [--duration 60] [--concurrency 4]
       [--scenarios mixed capacity rush] [--diners 1000] [--database-url URL] [--repeat 1]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import resource
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from any folder

from benchmarks.model_speed import machine, write_section  # noqa: E402
from benchmarks.serve_speed import LiveService, percentile, rss_mib, running_service  # noqa: E402

SAMPLES = [REPO / "serve" / "samples" / name for name in
           ("tray-charcuterie.jpg", "tray-fries.jpg", "plate-apple-banana-coin.jpg")]
REQUEST_TIMEOUT_S = 60.0
MAX_IN_FLIGHT = 256  # open loop: beyond this, arrivals count as errors (the service drowned)
READS = ("list", "one", "day", "pairs")
RELIABILITY_DOC = REPO / "docs" / "RELIABILITY.md"
# The section --write-docs replaces (make docs-figures); "## Load" above it is written by hand.
DOCS_SECTION = "## Load figures (make docs-figures)"


@dataclass
class Sample:
    """One request: what, how it ended, how long from its (scheduled) start."""

    op: str
    ok: bool
    seconds: float


@dataclass
class Tenant:
    """What the load uses: the kiosk's key and id, diners, analyses made so far."""

    headers: dict[str, str]
    kiosk_id: str
    diners: list[str]
    photos: list[bytes]
    analyses: list[str] = field(default_factory=list)
    open_before: list[str] = field(default_factory=list)  # diners with a before, no after
    next_diner: int = 0


@dataclass
class Result:
    """A scenario's figures."""

    scenario: str
    workers: int
    seconds: float
    samples: list[Sample]
    rss_before: float
    rss_after: float
    load_before: float
    load_after: float
    client_cpu_s: float
    offered_rate: float | None = None  # open loop: photos/s arriving

    def latencies(self, op: str | None = None) -> list[float]:
        return [s.seconds for s in self.samples if s.ok and (op is None or s.op == op)]

    @property
    def errors(self) -> int:
        return sum(not s.ok for s in self.samples)

    def row(self) -> str:
        """One markdown table row."""
        lat = self.latencies()
        analyze = self.latencies("analyze")

        def pcts(values: list[float]) -> str:
            if not values:
                return "-"
            return " / ".join(f"{percentile(values, q) * 1000:.0f}" for q in (50, 95, 99))

        rate = f"{self.offered_rate:.2f}/s" if self.offered_rate else "closed"
        return (f"| {self.scenario} | {self.workers} | {rate} | {self.seconds:.0f} | "
                f"{len(self.samples)} | {len(lat) / self.seconds:.1f} | "
                f"{len(analyze) / self.seconds:.2f} | {pcts(lat)} | {pcts(analyze)} | "
                f"{self.errors} | {self.rss_before:.0f} -> {self.rss_after:.0f} | "
                f"{self.load_before:.2f} -> {self.load_after:.2f} | {self.client_cpu_s:.1f} |")


HEADER = (
    "| scenario | workers | arrivals | s | requests | req/s ok | photos/s | "
    "all p50 / p95 / p99 ms | analyze p50 / p95 / p99 ms | errors | server RSS MiB before -> "
    "after | load avg before -> after | client CPU s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def server_rss(service: LiveService) -> float:
    """RSS of the processes that answer requests, summed (MiB)."""
    return sum(rss_mib(pid) for pid in service.worker_pids())


def client_cpu() -> float:
    """CPU seconds this load generator has used (user + system): it shares the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def setup(client: httpx.AsyncClient, admin: dict[str, str], diners: int) -> Tenant:
    """A canteen, a kiosk, a kiosk key and `diners` consenting diners."""
    async def made(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        answer = await client.post(path, json=body, headers=headers)
        if answer.status_code != 201:
            raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text[:300]}")
        created: dict[str, Any] = answer.json()
        return created

    canteen = (await made("/v1/canteens", {"name": f"load-{time.time_ns()}"}, admin))["id"]
    key = (await made("/v1/keys", {"name": "kiosk", "role": "kiosk", "canteen_id": canteen},
                      admin))["key"]
    kiosk = await made("/v1/kiosks", {"name": "line 1", "canteen_id": canteen}, admin)
    headers = {"Authorization": f"Bearer {key}"}
    users = []
    for start in range(0, diners, 50):  # bounded concurrency for the set-up too
        batch = [made("/v1/users", {}, headers) for _ in range(min(50, diners - start))]
        users += [u["id"] for u in await asyncio.gather(*batch)]
    return Tenant(headers, kiosk["id"], users, [p.read_bytes() for p in SAMPLES])


def next_photo(tenant: Tenant, rng: random.Random) -> dict[str, str]:
    """A diner's next photo: an after for one with a before (half the time), else a before."""
    if tenant.open_before and (rng.random() < 0.5 or tenant.next_diner >= len(tenant.diners)):
        return {"user_id": tenant.open_before.pop(0), "meal_state": "after"}
    diner = tenant.diners[tenant.next_diner % len(tenant.diners)]
    tenant.next_diner += 1
    tenant.open_before.append(diner)
    return {"user_id": diner, "meal_state": "before"}


async def analyze(client: httpx.AsyncClient, tenant: Tenant, rng: random.Random) -> bool:
    """POST /v1/analyze of a sample photo at the kiosk for a diner."""
    form = {"kiosk_id": tenant.kiosk_id, **next_photo(tenant, rng)}
    image = rng.choice(tenant.photos)
    answer = await client.post("/v1/analyze", data=form, headers=tenant.headers,
                               files={"image": ("tray.jpg", image, "image/jpeg")})
    if answer.status_code == 201:
        tenant.analyses.append(answer.json()["id"])
        return True
    return False


async def read(client: httpx.AsyncClient, tenant: Tenant, rng: random.Random, op: str) -> bool:
    """One of the reads: recent analyses, one analysis, a diner's day, recent pairs."""
    if op == "one" and tenant.analyses:
        path = f"/v1/analyses/{rng.choice(tenant.analyses)}"
    elif op == "day":
        path = f"/v1/users/{rng.choice(tenant.diners)}/days/{dt.date.today().isoformat()}"
    elif op == "pairs":
        path = "/v1/pairs?limit=20"
    else:
        path = "/v1/analyses?limit=20"
    answer = await client.get(path, headers=tenant.headers)
    return answer.status_code == 200


async def timed(samples: list[Sample], op: str, start: float,
                call: Coroutine[Any, Any, bool]) -> None:
    """Run one request, recording it; a transport error or timeout is an error too."""
    try:
        ok = await call
    except httpx.HTTPError:
        ok = False
    samples.append(Sample(op, ok, time.perf_counter() - start))


async def closed_loop(client: httpx.AsyncClient, tenant: Tenant, seconds: float,
                      concurrency: int, analyze_share: float, seed: int) -> list[Sample]:
    """`concurrency` clients, each sending its next request when the last one is answered."""
    samples: list[Sample] = []
    deadline = time.perf_counter() + seconds

    async def user(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            if rng.random() < analyze_share:
                await timed(samples, "analyze", start, analyze(client, tenant, rng))
            else:
                op = rng.choice(READS)
                await timed(samples, op, start, read(client, tenant, rng, op))

    await asyncio.gather(*(user(n) for n in range(concurrency)))
    return samples


async def open_loop(client: httpx.AsyncClient, tenant: Tenant, seconds: float, rate: float,
                    seed: int) -> list[Sample]:
    """Photos arriving as a Poisson process of `rate`/s, each sent at its arrival time
    whatever the earlier ones are doing; latency counts from the arrival."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    begin = time.perf_counter()
    arrival = begin
    while True:
        arrival += rng.expovariate(rate)
        if arrival - begin >= seconds:
            break
        await asyncio.sleep(max(0.0, arrival - time.perf_counter()))
        if len(tasks) >= MAX_IN_FLIGHT:
            samples.append(Sample("analyze", False, 0.0))
            continue
        task = asyncio.create_task(timed(samples, "analyze", arrival,
                                         analyze(client, tenant, rng)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.sleep(max(0.0, begin + seconds - time.perf_counter()))  # the whole window
    if tasks:
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 5)
    return samples


@dataclass(frozen=True)
class Plan:
    """What one run does, from the command line."""

    scenarios: tuple[str, ...]
    seconds: float
    concurrency: int
    analyze_share: float
    diners: int
    rush_rates: tuple[float, ...]
    seed: int
    repeat: int = 1  # the scenario list again on the same service: does RSS keep growing?


async def run_scenarios(service: LiveService, workers: int, plan: Plan) -> list[Result]:
    """Set up, warm up, then each scenario with RSS and load average around it."""
    admin = {"Authorization": f"Bearer {service.admin_key}"}
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=service.url, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as client:
        tenant = await setup(client, admin, plan.diners)
        # Warm-up (not counted): ONNX Runtime's arena, SQLite's cache, each worker once.
        await closed_loop(client, tenant, min(5.0, plan.seconds), 2 * workers, 0.5, plan.seed)
        results = []
        runs: list[tuple[str, float | None]] = []
        for scenario in plan.scenarios * plan.repeat:
            if scenario == "rush":
                runs += [("rush", rate) for rate in plan.rush_rates]
            else:
                runs.append((scenario, None))
        for scenario, rate in runs:
            rss_before, load_before, cpu_before = server_rss(service), os.getloadavg()[0], \
                client_cpu()
            start = time.perf_counter()
            if scenario == "mixed":
                samples = await closed_loop(client, tenant, plan.seconds, plan.concurrency,
                                            plan.analyze_share, plan.seed)
            elif scenario == "capacity":
                samples = await closed_loop(client, tenant, plan.seconds, plan.concurrency,
                                            1.0, plan.seed)
            else:
                assert rate is not None
                samples = await open_loop(client, tenant, plan.seconds, rate, plan.seed)
            elapsed = time.perf_counter() - start
            result = Result(scenario, workers, elapsed, samples, rss_before, server_rss(service),
                            load_before, os.getloadavg()[0], client_cpu() - cpu_before, rate)
            print(result.row(), flush=True)
            results.append(result)
        return results


def rush_rates(diners: int, window_minutes: float, peak_factor: float) -> tuple[float, float]:
    """Average and peak photos/s of a canteen rush: two photos per diner in the window."""
    average = 2 * diners / (window_minutes * 60)
    return average, average * peak_factor


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/load.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument("--scenarios", nargs="+", choices=("mixed", "capacity", "rush"),
                        default=["mixed", "capacity", "rush"])
    parser.add_argument("--concurrency", type=int, default=4, help="closed-loop clients")
    parser.add_argument("--analyze-share", type=float, default=0.25,
                        help="share of analyze requests in the mixed scenario")
    parser.add_argument("--diners", type=int, default=1000)
    parser.add_argument("--window-minutes", type=float, default=60.0)
    parser.add_argument("--peak-factor", type=float, default=5.0)
    parser.add_argument("--database-url", help="e.g. an own PostgreSQL; default a temp SQLite")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the scenarios this many times per service (RSS trend)")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"write the figures as '{DOCS_SECTION}' of docs/RELIABILITY.md")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or not 0 <= args.analyze_share <= 1:
        parser.error("--duration > 0, --concurrency >= 1, 0 <= --analyze-share <= 1")
    return args


def main(argv: Sequence[str] | None = None) -> list[Result]:
    args = parse(argv)
    average, peak = rush_rates(args.diners, args.window_minutes, args.peak_factor)
    plan = Plan(tuple(args.scenarios), args.duration, args.concurrency, args.analyze_share,
                args.diners, (average, peak), args.seed, max(1, args.repeat))
    env = {"TRAYLENS_DATABASE_URL": args.database_url} if args.database_url else None
    heading = [
        f"machine: {machine()}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"command: python benchmarks/load.py {' '.join(sys.argv[1:] if argv is None else argv)}",
        f"rush: {args.diners} diners x 2 photos in {args.window_minutes:.0f} min = "
        f"{average:.2f} photos/s average, {peak:.2f} at {args.peak_factor:g}x peak\n"]
    print("\n".join(heading))
    print(HEADER, flush=True)
    results: list[Result] = []
    for workers in args.workers:
        with running_service(workers, env) as service:
            results += asyncio.run(run_scenarios(service, workers, plan))
    summary = []
    for workers in args.workers:
        ran = {r.scenario: r for r in results if r.workers == workers and r.scenario != "rush"}
        if "capacity" in ran:
            capacity = len(ran["capacity"].latencies("analyze")) / ran["capacity"].seconds
            summary.append(f"{workers} worker(s): capacity {capacity:.1f} photos/s = "
                           f"{capacity / peak:.1f}x the peak rush ({peak:.2f}/s), "
                           f"{capacity / average:.0f}x the average ({average:.2f}/s)")
            print("\n" + summary[-1])
    if args.write_docs:
        section = "\n\n".join([
            DOCS_SECTION,
            "Written by `make docs-figures` (scripts/regenerate_docs.py); how to read the "
            "columns and the limits of a run: \"Load\" above. " + "; ".join(heading).strip(),
            HEADER.rstrip("\n") + "\n" + "\n".join(r.row() for r in results),
            *(f"- {line}" for line in summary)]) + "\n"
        write_section(RELIABILITY_DOC, section, DOCS_SECTION)
        print(f"wrote '{DOCS_SECTION}' in {RELIABILITY_DOC}")
    return results


if __name__ == "__main__":
    outcome = main()
    raise SystemExit(1 if any(r.errors for r in outcome) else 0)
