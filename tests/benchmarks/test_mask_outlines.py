"""benchmarks/mask_outlines.py: a round of outlines picks its photos, and on the shared photos
the table lists every source of the round for each model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.mask_outlines import in_round, main, round_files
from model.data.importers.labelme import import_labelme

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def test_a_round_names_its_files(tmp_path: Path) -> None:
    (tmp_path / "rounds.json").write_text(json.dumps({
        "1": {"files": ["ecustfd/a.json"]}, "2": {"files": ["ecustfd/mix001T(1).json"]}}))
    assert round_files(tmp_path, None) is None
    assert round_files(tmp_path, "2") == {"mix001T(1).json"}
    with pytest.raises(SystemExit, match="no round '3'"):
        round_files(tmp_path, "3")
    drawn = import_labelme(FIXTURES / "labelme")  # the fixture: mix001T(1), drawn by hand
    assert in_round(drawn, None) is drawn
    assert len(in_round(drawn, {"mix001T(1).json"}).images) == 1
    assert len(in_round(drawn, {"a.json"}).images) == 0


@pytest.mark.shared_data
def test_table_of_a_round(capsys: pytest.CaptureFixture[str]) -> None:
    if not (REPO.parent / "shared" / "data" / "images").is_dir():
        pytest.skip("the outlines name their photos in ../shared beside the repo")
    main(["--round", "2"])
    rows = [r for r in capsys.readouterr().out.splitlines() if "traylens.onnx |" in r]
    assert [r.split(" | ")[2] for r in rows] == ["mealtray", "ecustfd"]
    for r in rows:
        photos, foods, iou, ellipse = r.strip(" |").split(" | ")[3:]
        assert int(photos) == (16 if "mealtray" in r else 33) and int(foods) >= int(photos)
        assert 0.3 < float(iou) <= 1.0 and 0.3 < float(ellipse) <= 1.0
