"""Nutrient database speed: import, first load, a 6-item meal lookup and whole-table search.

Run: .venv/bin/python benchmarks/nutrition_speed.py [--repeats N]
Prints a Markdown table (median and p95 in one run) for docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# A Korean school-canteen tray plus a US side: six items from four sources.
MEAL = [
    ("mfds:D501-032600000-0001", 210.0), ("mfds:D505-216160000-0001", 180.0),
    ("mfds:D110-465000000-0001", 120.0), ("mfds:D113-586000000-0001", 50.0),
    ("kfct:귀리, 겉귀리, 도정, 생것", 10.0), ("sr28:09003", 150.0),
]
QUERIES = ["된장국", "김치 찌개", "잡곡밥", "제육볶음", "시금치", "apple raw", "bibimbap",
           "chicken breast", "yogurt", "bread french"]
IMPORT_CODE = ("import time; t = time.perf_counter(); import nutrition_db; "
               "print(time.perf_counter() - t)")
LOAD_CODE = ("import nutrition_db, time; from nutrition_db.table import table; "
             "t = time.perf_counter(); table(); print(time.perf_counter() - t)")
# The same load in CPU seconds: on a shared machine wall time also counts waiting for a core.
LOAD_CPU_CODE = LOAD_CODE.replace("perf_counter", "process_time")


def fresh_process_seconds(code: str, runs: int) -> list[float]:
    """Times measured inside `runs` fresh interpreters (cold module state each time)."""
    out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                              capture_output=True, text=True)
        out.append(float(proc.stdout.strip()))
    return out


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds per call for `repeats` calls."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def p95(values: list[float]) -> float:
    """The 95th percentile."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def row(name: str, seconds: list[float]) -> str:
    """One Markdown table row in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return f"| {name} | {len(ms)} | {statistics.median(ms):.2f} | {p95(ms):.2f} |"


def main() -> None:
    """Measures everything in one run and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--fresh", type=int, default=7, help="fresh-process runs")
    args = parser.parse_args()
    import nutrition_db as ndb
    from nutrition_db.table import table

    imports = fresh_process_seconds(IMPORT_CODE, args.fresh)
    loads = fresh_process_seconds(LOAD_CODE, args.fresh)
    load_cpu = fresh_process_seconds(LOAD_CPU_CODE, args.fresh)
    table()
    ndb.search("warm-up")  # builds the search keys once, as the first search in a process does
    meal = timed(lambda: ndb.meal_nutrients(MEAL), args.repeats)
    queries = iter(QUERIES * (args.repeats // len(QUERIES) + 1))
    search = timed(lambda: ndb.search(next(queries), limit=20), args.repeats)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, {len(table().foods)} foods")
    print("| measurement | runs | median ms | p95 ms |\n|---|---|---|---|")
    print(row("`import nutrition_db` (fresh process)", imports))
    print(row("first load of the table (fresh process)", loads))
    print(row("first load of the table, CPU time", load_cpu))
    print(row("6-item meal_nutrients", meal))
    print(row("search over the whole table (limit 20)", search))


if __name__ == "__main__":
    main()
