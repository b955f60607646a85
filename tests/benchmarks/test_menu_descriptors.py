"""benchmarks/menu_descriptors.py: the backbone descriptor is a unit vector that a mirror of
the photo does not change (it averages both views), `both` averages the two cosines, and
the CLI runs end to end on the fixture photos (too few objects per food for menus: it says
so instead of a figure), with an "unseen" model's embedding on all photos."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.menu_descriptors import (
    Regions,
    backbone_descriptors,
    main,
    trained_net_maps,
)
from model.data.importers.ecustfd import import_ecustfd
from model.infer.images import full_size, load_image
from model.infer.runtime import TrayModel
from model.network import TrayNet
from serve.core.settings import SHIPPED_MODEL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_backbone_descriptor_is_a_mirror_invariant_unit_vector() -> None:
    model = TrayModel(SHIPPED_MODEL)
    net = TrayNet(len(model.meta.labels), pretrained=True).eval()
    img = load_image(FIXTURES / "ecustfd" / "JPEGImages" / "apple003T(1).JPG",
                     fit=model.meta.input_size)
    mirror = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirror.info.update(img.info)
    width = full_size(img)[0]
    box = (200.0, 150.0, 520.0, 430.0)
    maps = trained_net_maps(net)
    plain = backbone_descriptors(maps, model.meta, img, [box, (0.0, 0.0, 50.0, 40.0)])
    flipped = backbone_descriptors(maps, model.meta, mirror, [(width - box[2], box[1],
                                                               width - box[0], box[3])])
    assert plain.shape == (2, 112 + 320)
    assert np.allclose(np.linalg.norm(plain, axis=1), 1.0, atol=1e-5)
    assert float(plain[0] @ flipped[0]) > 0.999
    assert float(plain[0] @ plain[1]) < 0.99  # another region is another vector


def test_both_averages_the_two_cosines() -> None:
    rng = np.random.default_rng(0)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    emb, back = unit(rng.normal(size=(2, 8))), unit(rng.normal(size=(2, 12)))
    both = Regions(emb, back, ["a", "b"], ["1", "2"]).descriptor("both")
    assert float(both[0] @ both[1]) == pytest.approx(
        (float(emb[0] @ emb[1]) + float(back[0] @ back[1])) / 2, abs=1e-6)


@pytest.mark.slow
def test_cli_on_the_fixtures(tmp_path: Path, fixture_data: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "out"), "--data", str(fixture_data),
                 "--menus", "5", "--unseen-model", str(SHIPPED_MODEL)]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {(r["set"], r["descriptor"]): r for r in result["rows"]}
    assert set(rows) == {(s, d) for s in ("held-out split", "all photos")
                         for d in ("embedding", "backbone", "both")}
    photos = len(import_ecustfd(FIXTURES / "ecustfd").images)
    assert rows[("all photos", "backbone")]["photos"] == photos > 0
    assert "needs 5 foods" in rows[("all photos", "backbone")]["k3"]["not_evaluated"]
    assert f"| all photos | {photos} |" in capsys.readouterr().out
