"""benchmarks.model_speed: the docs-section writer shared by the benchmark scripts."""
from __future__ import annotations

from pathlib import Path

from benchmarks.model_speed import write_section

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
