"""tests/remembering.py: a repeat is answered from memory with what the network said, a new
photo still runs, the limit holds, and `fresh()` runs everything."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from model.infer.images import load_image
from model.infer.runtime import TrayModel
from serve.core.settings import REPO_ROOT
from tests.remembering import RememberingTrayModel

SHIPPED = REPO_ROOT / "model" / "artifacts" / "traylens.onnx"


def test_repeats_come_from_memory_and_equal_the_network(fixtures_dir: Path) -> None:
    photos = [load_image(p) for p in sorted(
        (fixtures_dir / "ecustfd" / "JPEGImages").glob("*.JPG"))[:3]]
    model = RememberingTrayModel(SHIPPED, limit=2)
    plain = TrayModel(SHIPPED)

    first, scales = model.run(photos[:1])
    again, again_scales = model.run(photos[:1])
    assert model.network_runs == 1 and again_scales == scales
    for a, b, c in zip(first, again, plain.run(photos[:1])[0], strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)

    model.run(photos[1:3])  # two new photos: the oldest is dropped (limit 2)
    assert model.network_runs == 3
    model.run(photos[:1])  # dropped, so it runs again (and drops photo 1)
    assert model.network_runs == 4

    with model.fresh():
        model.run(photos[:1])
    assert model.network_runs == 5
    predicted = model.predict(photos[2:3])[0].items  # remembered: predict reads the memory
    assert model.network_runs == 5
    expected = plain.predict(photos[2:3])[0].items
    assert [(it.label, it.box) for it in predicted] == [(it.label, it.box) for it in expected]
