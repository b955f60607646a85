"""benchmarks/leftover_outlines.py: outlined foods find their regions one to one, and on the
LabelMe fixture (an apple and an orange drawn by hand) the after photos measure what was
left, with the model's masks and refined ones alike."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.leftover_outlines import errors, holders, main, measure
from model.infer.runtime import Item, TrayModel
from serve.core.settings import SHIPPED_MODEL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _item(box: tuple[float, float, float, float]) -> Item:
    return Item(box=box, label="Plate", label_index=0, score=0.9, class_scores=np.ones(1),
                mask=None, polygon=None, area_px=1.0, embedding=np.ones(4, np.float32))


def test_holders_are_one_optimal_assignment() -> None:
    a = np.zeros((100, 100), bool)
    a[10:30, 10:30] = True  # wholly inside both boxes
    b = np.zeros((100, 100), bool)
    b[10:30, 40:60] = True  # half inside the big box only
    c = np.zeros((100, 100), bool)
    c[80:90, 80:90] = True  # in no box
    items = [_item((0, 0, 50, 50)), _item((5, 5, 35, 35))]
    # One to one, the most held in all: a in the small box leaves the big one to b.
    assert holders([a, b, c], items) == [1, 0, None]
    assert holders([b, a], items) == [0, 1]
    assert holders([a], items) in ([0], [1]) and holders([c], items) == [None]
    a_only = holders([a, a.copy()], items)  # two outlines, two boxes: each gets one
    assert sorted(a_only) == [0, 1]  # type: ignore[type-var]


def _outlines(tmp_path: Path) -> Path:
    """data/outlines-style folder: the LabelMe fixture, its photo by a relative path."""
    folder = tmp_path / "outlines" / "ecustfd"
    folder.mkdir(parents=True)
    doc = json.loads((FIXTURES / "labelme" / "mix001T(1).json").read_text())
    doc["imagePath"] = os.path.relpath(FIXTURES / "ecustfd" / "JPEGImages" / "mix001T(1).JPG",
                                       folder)
    (folder / "mix001T(1).json").write_text(json.dumps(doc))
    return folder.parent


@pytest.mark.slow
def test_leftovers_against_drawn_outlines(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL}")
    model, outlines = TrayModel(SHIPPED_MODEL), _outlines(tmp_path)
    # Nothing eaten: both fruits are found again in the moved photo, at their own size.
    kept = measure(model, outlines, ["ecustfd"], cases=2, seed=0, shares=[1.0])
    assert len(kept) == 2 * 2 * 2  # 2 fruits x 2 after photos x 2 kinds of mask
    assert all(f.true_left == 1.0 and f.measured is not None for f in kept)
    assert errors(kept)[0] < 10 and not any(f.false_alarm for f in kept)
    # Half of each eaten: the truth is the outline's share left, about a half.
    half = measure(model, outlines, ["ecustfd"], cases=2, seed=0, shares=[0.5])
    assert all(0.4 < f.true_left <= 0.55 for f in half)
    # Fruits lie on the plate with no container of their own: no state, the same leftovers.
    boxed = measure(model, outlines, ["ecustfd"], cases=2, seed=0, shares=[0.5],
                    containers=True)
    assert [f.measured for f in boxed] == [f.measured for f in half]
    assert main(["--outlines", str(outlines), "--sources", "ecustfd", "--cases", "1"]) == 0
    table = capsys.readouterr().out
    assert "| ecustfd | all | 2 |" in table and "refined masks" in table
    (outlines / "rounds.json").write_text(json.dumps({"1": {"files": ["ecustfd/x.json"]}}))
    assert main(["--outlines", str(outlines), "--sources", "ecustfd", "--round", "1",
                 "--containers"]) == 2  # the round holds none of the folder's outlines
    assert main(["--outlines", str(tmp_path / "none"), "--sources", "ecustfd"]) == 2
