"""benchmarks/new_canteen.py runs end to end on the fixtures and, with nothing enrolled,
names no item (issue 15: a dish never wins by default)."""
from __future__ import annotations

import pytest

from benchmarks.new_canteen import main
from serve.core.settings import SHIPPED_MODEL


def test_new_canteen_table(capsys: pytest.CaptureFixture[str]) -> None:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL}")
    main(["--test-trays", "3"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [r[0].strip() for r in rows] == ["0", "1", "3"]
    zero = [c.strip() for c in rows[0]]
    assert zero[1] == "0/0/0/0/0" and zero[3] == "0.0%" and zero[6] == "0"
    assert all(r[6].strip() == "0" for r in rows)  # never named without evidence
    assert float(rows[2][3].strip().rstrip("%")) > 0  # enrolled examples do name items
