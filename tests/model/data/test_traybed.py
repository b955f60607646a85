"""Composed compartment-tray test bed: determinism and self-consistent truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.data import traybed as tb
from model.data.compose import FoodCrop
from model.infer.tray import polygon_mask, warp_points


@pytest.fixture(scope="module")
def crops(fixtures_dir: Path) -> list[FoodCrop]:
    return tb.load_crops(fixtures_dir, per_label=1, sets=("labelme", "maskpng", "mealtray"))


@pytest.fixture(scope="module")
def kiosk() -> tb.Kiosk:
    return tb.make_kiosk(3)


def test_crops_come_from_the_fixtures_with_their_masks(crops: list[FoodCrop]) -> None:
    labels = {c.label for c in crops}
    assert {"apple", "orange", "lemon"} <= labels and "coin" not in labels
    assert all(c.rgba.shape[2] == 4 and (c.rgba[..., 3] > 127).any() for c in crops)


def test_same_seed_same_pair_other_seed_differs(kiosk: tb.Kiosk, crops: list[FoodCrop]) -> None:
    a, b = tb.make_pair(kiosk, crops, 5), tb.make_pair(kiosk, crops, 5)
    c = tb.make_pair(kiosk, crops, 6)
    assert np.array_equal(a.before.image, b.before.image)
    assert np.array_equal(a.after.image, b.after.image)
    assert a.before.fill == b.before.fill and a.leftover == b.leftover
    assert not np.array_equal(a.before.image, c.before.image)
    assert np.array_equal(tb.make_kiosk(3).reference, kiosk.reference)


def test_kiosk_has_a_rice_a_soup_and_side_wells_inside_the_tray(kiosk: tb.Kiosk) -> None:
    slots = set(kiosk.compartments)
    assert {"rice", "soup", "side1", "side2", "side3"} <= slots and len(slots) in (5, 6)
    tray = polygon_mask(kiosk.tray_polygon, kiosk.size)
    areas = {s: polygon_mask(p, kiosk.size).sum() for s, p in kiosk.compartments.items()}
    assert areas["rice"] > 1.5 * areas["side1"]
    for s, p in kiosk.compartments.items():
        assert (polygon_mask(p, kiosk.size) & ~tray).sum() == 0, s
    # The reference shows the empty steel tray: grey, brighter than it is coloured.
    lab_grey = kiosk.reference[tray].astype(float)
    assert np.abs(lab_grey[:, 0] - lab_grey[:, 2]).mean() < 15


def test_truth_is_consistent(kiosk: tb.Kiosk, crops: list[FoodCrop]) -> None:
    for seed in range(3):
        pair = tb.make_pair(kiosk, crops, seed)
        for shot in (pair.before, pair.after):
            comps = np.zeros(shot.food_mask.shape, bool)
            for s, poly in shot.polygons.items():
                assert np.allclose(poly, warp_points(kiosk.compartments[s], shot.homography))
                comps |= polygon_mask(poly, kiosk.size)
                assert 0.0 <= shot.fill[s] <= 1.0
            # Food lies in the compartments (a rasterisation pixel may differ at the rim).
            assert (shot.food_mask & ~comps).sum() <= 0.01 * shot.food_mask.sum() + 5
        for s, left in pair.leftover.items():
            assert 0.0 <= left <= 1.0
            # Fill is measured per photo, leftover in the tray: they agree up to the pose.
            assert pair.after.fill[s] == pytest.approx(pair.before.fill[s] * left, abs=0.03)


def test_unserved_wells_are_empty_and_at_least_three_served(kiosk: tb.Kiosk,
                                                            crops: list[FoodCrop]) -> None:
    pair = tb.make_pair(kiosk, crops, 1, empty_p=1.0)
    served = [s for s, f in pair.before.fill.items() if f > 0]
    assert len(served) == tb.MIN_SERVED and set(served) == set(pair.leftover)
    assert all(pair.before.fill[s] == 0.0 for s in pair.before.fill if s not in served)


def test_eat_keeps_the_asked_share() -> None:
    mask = np.zeros((80, 90), bool)
    mask[10:70, 20:80] = True
    rng = np.random.default_rng(0)
    for remaining in (0.0, 0.25, 0.6, 1.0):
        keep = tb.eat(mask, remaining, rng)
        assert (mask & keep).sum() / mask.sum() == pytest.approx(remaining, abs=0.02)


def test_stray_food_lies_off_the_tray(kiosk: tb.Kiosk, crops: list[FoodCrop]) -> None:
    pair = tb.make_pair(kiosk, crops, 2, stray=True)
    shot = pair.before
    assert shot.stray_mask.sum() > 500
    tray = polygon_mask(warp_points(kiosk.tray_polygon, shot.homography), kiosk.size)
    assert (shot.stray_mask & tray).sum() == 0


def test_pose_homography_composes_as_documented() -> None:
    size = (640, 480)
    assert np.allclose(tb.pose_homography(size), np.eye(3))
    h = tb.pose_homography(size, (10.0, -5.0), 90.0)
    # Rotating 90 deg about the centre then shifting: the centre only shifts.
    assert np.allclose(warp_points([[320, 240]], h), [[330, 235]])
    assert np.allclose(warp_points([[420, 240]], h), [[330, 335]])


def test_unknown_backdrop_is_refused() -> None:
    with pytest.raises(ValueError, match="backdrop"):
        tb.backdrop("carpet", np.random.default_rng(0), (64, 64))
