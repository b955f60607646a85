"""benchmarks.model_speed: the docs-section writer shared by the benchmark scripts."""
from __future__ import annotations

import itertools
from pathlib import Path

from benchmarks.model_speed import (
    REFINED,
    Timing,
    int8_instructions,
    refine_cost,
    time_in_blocks,
    write_section,
)

DOC = """# Benchmarks

## Service core: what the service adds

### Service

core figures

## Service

old service figures

## Model

model figures
"""


def test_a_section_replaces_only_its_own_heading(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(DOC, encoding="utf-8")
    write_section(doc, "## Service\n\nnew service figures\n", heading="## Service")
    text = doc.read_text(encoding="utf-8")
    assert "old service figures" not in text and text.count("new service figures") == 1
    assert "core figures" in text and "model figures" in text
    assert text.count("## Service core") == 1 and text.count("\n## Service\n") == 1
    assert "### Service\n\ncore figures" in text
    write_section(doc, "## Service\n\nnewer\n", heading="## Service")  # idempotent shape
    assert doc.read_text(encoding="utf-8").count("\n## ") == 3


def test_a_missing_section_is_appended(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Service core\n\ncore\n", encoding="utf-8")
    write_section(doc, "## Service\n\nfigures\n", heading="## Service")
    assert doc.read_text(encoding="utf-8").endswith("core\n\n## Service\n\nfigures\n")


def test_engines_are_timed_in_blocks_of_consecutive_runs() -> None:
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    timings = time_in_blocks(calls, runs=25, warmup=1, block=10)
    assert set(timings) == {"a", "b", "c"}
    assert order[:3] == ["a", "b", "c"]  # warm-up round
    timed = order[3:]
    assert all(timed.count(name) == 25 + 3 for name in "abc")  # + one hand-over per block
    runs = [(name, len(list(group))) for name, group in itertools.groupby(timed)]
    assert runs[:3] == [("a", 11), ("b", 11), ("c", 11)]  # 1 untimed + 10 timed each
    assert runs[3][0] == "b"  # the next round starts one engine later
    assert all(t.median_ms >= 0 and t.p95_ms >= t.median_ms for t in timings.values())


def test_refine_cost_is_the_added_photo_time_over_the_network() -> None:
    t = {"ORT fp32": {"network": Timing(40.0, 50.0), "end_to_end": Timing(60.0, 70.0)},
         REFINED: {"network": Timing(41.0, 50.0), "end_to_end": Timing(80.0, 95.0)}}
    assert refine_cost(t) == 0.5  # (80 - 60) / 40
    assert refine_cost({"ORT fp32": t["ORT fp32"]}) is None


def test_int8_instructions_from_cpu_flags() -> None:
    # What INT8 gains depends on them (1.5.0's INT8: 0.72 of fp32 on a Zen 3 with AVX2 only).
    line = "processor\t: 0\nflags\t\t: fpu sse4_2 avx2 {}\n"
    assert int8_instructions(line.format("avx512bw avx512_vnni")) == "AVX-512 VNNI"
    assert int8_instructions(line.format("avx_vnni")) == "AVX-VNNI"
    assert int8_instructions(line.format("avx512bw")) == "AVX-512, no VNNI"
    assert int8_instructions(line.format("")) == "AVX2, no VNNI"
    assert int8_instructions("processor\t: 0\n") == "no AVX2"
