"""benchmarks/registry_backbones.py: the input a backbone affords and the rule's reading are
what the model card says, each variant's maps have its own channels at strides 16 and 32,
and the CLI runs end to end on the fixture photos (too few objects per food for menus: it
says so instead of a figure)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.registry_backbones import (
    DescriptorMaps,
    affordable_size,
    describe,
    main,
    parse,
    verdict,
)
from model.data.importers.ecustfd import import_ecustfd
from model.infer.runtime import TrayModel
from model.network import pretrained_lite_state
from serve.core.settings import SHIPPED_MODEL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BIG, MID, SMALL = (512, 384), (448, 320), (384, 288)


def test_affordable_size_is_the_largest_within_the_budget() -> None:
    ms = {(0, BIG): 10.0, (0, MID): 7.0, (0, SMALL): 5.0,
          (1, BIG): 14.0, (1, MID): 10.4, (1, SMALL): 7.5,
          (2, BIG): 30.0, (2, MID): 20.0, (2, SMALL): 11.0}
    sizes = [BIG, MID, SMALL]
    assert affordable_size(ms, 0, sizes) == BIG
    assert affordable_size(ms, 1, sizes) == MID  # 10.4 <= 1.05 x 10
    assert affordable_size(ms, 2, sizes) is None  # 11.0 > 10.5 even at the smallest


def _row(variant: int, size: tuple[int, int], source: str, k3: float | None) -> dict:
    acc = {"mean": k3} if k3 is not None else {"not_evaluated": "too few foods"}
    return {"variant": variant, "size": list(size), "source": source, "k3": acc}


def test_verdict_needs_the_gain_on_every_source() -> None:
    lite0 = [_row(0, BIG, "mealtray", 0.60), _row(0, BIG, "ecustfd", 0.90)]
    both = [*lite0, _row(1, MID, "mealtray", 0.64), _row(1, MID, "ecustfd", 0.93)]
    met = verdict(1, MID, both, BIG)
    assert met["met"] and met["k3_gain"]["mealtray"] == pytest.approx(0.04)
    one = [*lite0, _row(1, MID, "mealtray", 0.70), _row(1, MID, "ecustfd", 0.92)]
    assert not verdict(1, MID, one, BIG)["met"]  # ecustfd +0.02 < 0.03
    unknown = [*lite0, _row(1, MID, "mealtray", None), _row(1, MID, "ecustfd", 0.99)]
    assert not verdict(1, MID, unknown, BIG)["met"]
    assert verdict(2, None, lite0, BIG) == {
        "variant": 2, "met": False, "why": "slower than Lite0 at every input"}


def test_sizes_are_checked() -> None:
    with pytest.raises(SystemExit):
        parse(["--out", "x", "--sizes", "100x96"])  # not a multiple of 32
    with pytest.raises(SystemExit):
        parse(["--out", "x", "--sizes", "384x288", "512x384"])  # the reference is not first
    assert parse(["--out", "x", "--variants", "2"]).variants == [0, 2]  # Lite0 always runs


@pytest.mark.slow
def test_each_variant_describes_boxes_with_its_own_maps() -> None:
    meta = TrayModel(SHIPPED_MODEL).meta
    ds = import_ecustfd(FIXTURES / "ecustfd")
    found = {}
    for variant, channels in ((0, [112, 320]), (2, [120, 352])):
        net = DescriptorMaps(variant)
        assert net.channels() == channels
        assert torch.equal(net.body.state_dict()["conv_stem.weight"],
                           pretrained_lite_state(variant)["conv_stem.weight"])
        with torch.no_grad():
            s16, s32 = net(torch.zeros(1, 3, 96, 128))
        assert s16.shape[2:] == (6, 8) and s32.shape[2:] == (3, 4)
        samples = describe(net, meta, ds)
        assert samples.embeddings.shape == (len(samples.foods), sum(channels))
        assert np.allclose(np.linalg.norm(samples.embeddings, axis=1), 1.0, atol=1e-5)
        found[variant] = samples
    assert found[0].foods == found[2].foods and len(found[0].foods) > 0


@pytest.mark.slow
def test_cli_on_the_fixtures(tmp_path: Path, fixture_data: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "out"), "--data", str(fixture_data),
                 "--variants", "1", "--sizes", "128x96", "--runs", "2",
                 "--warmup", "1", "--menus", "5"]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {(r["variant"], tuple(r["size"])) for r in result["speed"]} == {
        (0, (128, 96)), (1, (128, 96))}
    assert all(r["median_ms"] > 0 for r in result["speed"])
    sources = {r["source"] for r in result["menus_rows"]}
    assert sources == {"mealtray", "ecustfd"}
    assert all("needs 5 foods" in r["k3"]["not_evaluated"] for r in result["menus_rows"])
    assert result["verdicts"][0]["variant"] == 1 and not result["verdicts"][0]["met"]
    assert "Lite1: rule not met" in capsys.readouterr().out
