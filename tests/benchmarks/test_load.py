"""benchmarks/load.py keeps working: a few seconds of every scenario with tiny parameters,
on the real service (1 worker, temp SQLite), without errors."""
from __future__ import annotations

import pytest

from benchmarks.load import main
from serve.core.settings import SHIPPED_MODEL


@pytest.mark.slow
def test_load_script_runs_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL}")
    results = main(["--workers", "1", "--duration", "3", "--concurrency", "2",
                    "--diners", "6", "--window-minutes", "1", "--peak-factor", "2"])
    out = capsys.readouterr().out
    assert [r.scenario for r in results] == ["mixed", "capacity", "rush", "rush"]
    assert all(r.errors == 0 for r in results), out
    mixed, capacity = results[0], results[1]
    assert {s.op for s in mixed.samples} & {"list", "one", "day", "pairs"}, out
    assert capacity.latencies("analyze") and capacity.rss_after > 0
    assert "capacity" in out and "x the peak rush" in out
    average, peak = results[2].offered_rate, results[3].offered_rate
    assert average is not None and peak == pytest.approx(2 * average)
