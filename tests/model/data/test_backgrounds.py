"""Procedural scenes: exact scale, regions inside the image and apart, Korean layout."""
from __future__ import annotations

import numpy as np
import pytest

from model.data.backgrounds import KINDS, SCENE_WIDTH_CM, draw_scene


@pytest.mark.parametrize("kind", KINDS)
def test_scene_scale_and_regions(kind: str) -> None:
    scene = draw_scene(kind, np.random.default_rng(0), (640, 480))
    assert scene.image.shape == (480, 640, 3) and scene.image.dtype == np.uint8
    assert scene.px_per_cm == pytest.approx(640 / SCENE_WIDTH_CM[kind])
    occupied = np.zeros((480, 640), dtype=int)
    for r in scene.regions:
        assert r.x >= 0 and r.y >= 0 and r.x + r.w <= 640 and r.y + r.h <= 480
        assert r.w > 40 and r.h > 40
        occupied[r.y : r.y + r.h, r.x : r.x + r.w] += 1
    assert occupied.max() == 1  # food regions never overlap


def test_korean_tray_has_three_side_wells_over_rice_and_soup() -> None:
    scene = draw_scene("compartment", np.random.default_rng(1), (760, 540))
    slots = {r.slot: r for r in scene.regions}
    assert sorted(slots) == ["rice", "side1", "side2", "side3", "soup"]
    assert all(slots[s].y + slots[s].h < slots["rice"].y for s in ("side1", "side2", "side3"))
    assert slots["rice"].x < slots["soup"].x
    assert slots["rice"].w * slots["rice"].h > 1.5 * slots["side1"].w * slots["side1"].h


def test_scenes_vary_with_the_seed_and_repeat_with_it() -> None:
    a = draw_scene("plain", np.random.default_rng(5), (320, 240)).image
    b = draw_scene("plain", np.random.default_rng(5), (320, 240)).image
    c = draw_scene("plain", np.random.default_rng(6), (320, 240)).image
    assert np.array_equal(a, b) and not np.array_equal(a, c)
