"""`make docs-figures` (scripts/regenerate_docs.py): its wiring, without measuring anything."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("regenerate_docs",
                                                  REPO / "scripts" / "regenerate_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


regen = _load()


def _no_subprocess(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"a dry run ran {args}")


def test_dry_run_prints_every_step_and_runs_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    assert regen.main(["--dry-run", "--python", "PY"]) == 0
    out = capsys.readouterr().out
    for step in regen.STEPS:
        if (REPO / step.script).is_file():
            assert f"PY {step.script}" in out and f"'{step.section}'" in out
        else:
            assert f"[{step.name}] skipped: {step.script}" in out
    assert out.count("--write-docs") == sum((REPO / s.script).is_file() for s in regen.STEPS)
    docs = {s.doc for s in regen.STEPS}
    assert {"docs/BENCHMARKS.md", "docs/RELIABILITY.md"} <= docs


@pytest.mark.parametrize("step", regen.STEPS, ids=lambda s: s.name)
def test_each_script_writes_its_section(step: Any) -> None:
    """The scripts listed take --write-docs and own the heading they are listed with."""
    path = REPO / step.script
    if not path.is_file():
        pytest.skip(f"{step.script} is not in this checkout")
    source = path.read_text(encoding="utf-8")
    assert '"--write-docs"' in source, f"{step.script} must take --write-docs"
    assert re.search(rf"""["']{re.escape(step.section)}["']""", source), \
        f"{step.script} does not name its heading {step.section!r}"


def test_steps_run_in_order_and_a_failure_stops(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ran: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 3 if "b.py" in command[1] else 0)

    monkeypatch.setattr(regen, "REPO", tmp_path)
    monkeypatch.setattr(subprocess, "run", fake_run)
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.py").write_text("")
    steps = [regen.Step(n, "docs/X.md", f"## {n}", f"{n}.py") for n in ("a", "gone", "b", "c")]
    assert regen.run(steps, python="PY", dry_run=False) == 3
    assert ran == [["PY", "a.py", "--write-docs"], ["PY", "b.py", "--write-docs"]]


def test_make_target() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    target = re.search(r"^docs-figures:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert target and "scripts/regenerate_docs.py" in target.group(1)
    help_text = subprocess.run([sys.executable, str(REPO / "scripts" / "regenerate_docs.py"),
                                "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "--dry-run" in help_text.stdout
