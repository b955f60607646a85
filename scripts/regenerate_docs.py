"""Regenerate the measured sections of docs/BENCHMARKS.md and docs/RELIABILITY.md.

    make docs-figures                      # every step below, one after another
    python scripts/regenerate_docs.py --dry-run            # print the commands only
    python scripts/regenerate_docs.py --only service model  # some steps

Each step is a benchmark script that measures and, with --write-docs, replaces its own
section of a doc (benchmarks.model_speed.write_section: the heading's section only, the rest
of the doc untouched). A new measured section is one more Step here, for a script that takes
--write-docs; tests/test_regenerate_docs.py checks that every listed script exists or is
reported missing, and takes the flag.

Measurements need a quiet machine: run it when nothing else runs (it prints the load
average first and warns when the machine is busy). It takes tens of minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Step:
    """One script that writes one section of one doc."""

    name: str
    doc: str  # relative to the repository
    section: str  # the heading the script replaces
    script: str  # relative to the repository
    args: tuple[str, ...] = ()

    def command(self, python: str) -> list[str]:
        """The command line that measures and writes the section."""
        return [python, self.script, *self.args, "--write-docs"]


STEPS = (
    Step("model", "docs/BENCHMARKS.md", "## Model", "benchmarks/model_speed.py",
         ("--runs", "100")),
    Step("service", "docs/BENCHMARKS.md", "## Service", "benchmarks/serve_speed.py"),
    # The load figures; the sections above it in RELIABILITY.md (faults, reading the load
    # figures, RSS) are written by hand from the fault tests and analysis runs.
    Step("load", "docs/RELIABILITY.md", "## Load figures (make docs-figures)",
         "benchmarks/load.py"),
)


def busy_warning() -> str | None:
    """A warning when other work would distort the figures."""
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load > 0.5 * cores:
        return (f"warning: 1-min load average {load:.1f} on {cores} cores: other work will "
                "inflate the figures (they say so in the docs, but rerun on a quiet machine)")
    return None


def run(steps: Sequence[Step], *, python: str, dry_run: bool) -> int:
    """Run the steps in order; a missing script is reported and skipped, a failure stops."""
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    warning = busy_warning()
    if warning:
        print(warning, file=sys.stderr)
    for step in steps:
        if not (REPO / step.script).is_file():
            print(f"[{step.name}] skipped: {step.script} is not in this checkout "
                  f"({step.doc} '{step.section}' stays as it is)")
            continue
        command = step.command(python)
        print(f"[{step.name}] {step.doc} '{step.section}': {shlex.join(command)}", flush=True)
        if dry_run:
            continue
        started = time.monotonic()
        done = subprocess.run(command, cwd=REPO, check=False)
        if done.returncode != 0:
            print(f"[{step.name}] failed (exit {done.returncode}); later steps not run",
                  file=sys.stderr)
            return done.returncode
        print(f"[{step.name}] done in {time.monotonic() - started:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Options, then run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in STEPS], metavar="STEP",
                        help=f"some steps: {', '.join(s.name for s in STEPS)}")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run with")
    args = parser.parse_args(argv)
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    return run(steps, python=args.python, dry_run=args.dry_run)


if __name__ == "__main__":
    raise SystemExit(main())
