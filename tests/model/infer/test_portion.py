"""Portion maths: scale references, log-log fit, held-out ranges, depth volume, metadata form."""
from __future__ import annotations

import math

import numpy as np
import pytest

from model.infer import portion


def test_coin_scale_from_box() -> None:
    # A 25 mm coin 60 px wide and 64 px tall: 62 px per 2.5 cm.
    assert portion.coin_px_per_cm([100, 200, 160, 264]) == pytest.approx(24.8)


def test_reference_scale_uses_longer_side() -> None:
    assert portion.reference_px_per_cm([0, 0, 414, 380], 20.7) == pytest.approx(20.0)


@pytest.mark.parametrize("box", [[10, 10, 10, 40], [10, 40, 30, 10]])
def test_degenerate_coin_box_is_an_error(box: list[float]) -> None:
    with pytest.raises(portion.PortionError, match="no area"):
        portion.coin_px_per_cm(box)


def test_area_conversion_and_bad_scale() -> None:
    assert portion.area_cm2(400.0, 20.0) == pytest.approx(1.0)
    with pytest.raises(portion.PortionError, match="px_per_cm must be > 0"):
        portion.area_cm2(400.0, 0.0)


def test_fit_recovers_a_power_law_and_range_covers_noise() -> None:
    rng = np.random.default_rng(1)
    area = rng.uniform(20, 120, size=200)
    noise = rng.normal(0, 0.1, size=200)
    grams = np.exp(0.5 + 1.3 * np.log(area) + noise)
    fit = portion.fit_class(area, grams)
    assert fit.b == pytest.approx(1.3, abs=0.05)
    assert fit.a == pytest.approx(0.5, abs=0.2)
    # Central 80% of N(0, 0.1) residuals: about +/-0.128.
    assert fit.resid_lo == pytest.approx(-0.128, abs=0.04)
    assert fit.resid_hi == pytest.approx(0.128, abs=0.04)
    g, (lo, hi) = fit.grams(50.0)
    assert lo < g < hi
    assert g == pytest.approx(math.exp(fit.a + fit.b * math.log(50.0)))


def test_fit_needs_enough_objects() -> None:
    with pytest.raises(portion.PortionError, match="need >= 4"):
        portion.fit_class(np.array([10.0, 20.0]), np.array([5.0, 9.0]))


def test_calibration_table_skips_sparse_labels_and_round_trips() -> None:
    labels = ["apple"] * 6 + ["pear"] * 2
    areas = [30, 40, 50, 60, 70, 80, 30, 40]
    grams = [90, 120, 150, 185, 210, 240, 80, 100]
    table = portion.fit_calibration(labels, areas, grams, densities={"apple": 0.8})
    assert set(table) == {"apple"}
    assert table["apple"].density_g_per_ml == 0.8
    back = portion.calibration_from_json(portion.calibration_to_json(table))
    assert back == table
    with pytest.raises(portion.PortionError, match="apple"):
        portion.calibration_from_json({"apple": {"a": 1.0}})


def test_depth_volume_of_a_cylinder() -> None:
    # A 3 cm tall cylinder of radius 4 cm on a flat surface 500 mm from the camera, 10 px/cm.
    px_per_cm = 10.0
    yy, xx = np.mgrid[0:200, 0:200]
    inside = (xx - 100) ** 2 + (yy - 100) ** 2 <= 40**2
    depth = np.full((200, 200), 500.0)
    depth[inside] = 470.0
    vol = portion.depth_volume_ml(inside, depth, px_per_cm)
    assert vol == pytest.approx(math.pi * 16 * 3, rel=0.02)


def test_depth_volume_ignores_missing_depth_and_checks_shapes() -> None:
    mask = np.zeros((50, 50), bool)
    mask[20:30, 20:30] = True
    depth = np.full((50, 50), 300.0)
    depth[mask] = 280.0
    depth[0, :] = np.nan  # sensor holes outside the item must not move the surface
    assert portion.depth_volume_ml(mask, depth, 5.0) == pytest.approx(100 * 2.0 / 25, rel=1e-6)
    with pytest.raises(portion.PortionError, match="shape"):
        portion.depth_volume_ml(mask, depth[:10], 5.0)


def test_estimate_grams_prefers_depth_when_density_known() -> None:
    fit = portion.ClassFit(a=0.0, b=1.0, resid_lo=-0.2, resid_hi=0.2, n=10, density_g_per_ml=0.9)
    g, rng = portion.estimate_grams(fit, 30.0, volume_ml=100.0)
    assert g == pytest.approx(90.0)
    assert rng == pytest.approx((90 * math.exp(-0.2), 90 * math.exp(0.2)))
    g2, _ = portion.estimate_grams(fit, 30.0)
    assert g2 == pytest.approx(30.0)
    assert portion.estimate_grams(None, 30.0) == (None, None)
    assert portion.estimate_grams(fit, None) == (None, None)


def test_posterior_grams_average_likely_classes_in_log_space() -> None:
    light = portion.ClassFit(a=math.log(2.0), b=1.0, resid_lo=-0.1, resid_hi=0.1, n=10)
    heavy = portion.ClassFit(a=math.log(8.0), b=1.0, resid_lo=-0.2, resid_hi=0.2, n=10)
    table = {"lemon": light, "orange": heavy}
    labels = ["Plate", "lemon", "orange", "coin"]
    one_hot = np.array([0.0, 0.0, 1.0, 0.0])
    assert portion.posterior_grams(table, labels, one_hot, 2, 50.0) == \
        portion.estimate_grams(heavy, 50.0)
    # 50/50 between 100 g and 400 g: the geometric mean, a range spanning both classes.
    g, (lo, hi) = portion.posterior_grams(table, labels, np.array([0, 0.5, 0.5, 0]), 1, 50.0)
    assert g == pytest.approx(200.0)
    assert (lo, hi) == pytest.approx((100 * math.exp(-0.1), 400 * math.exp(0.2)))
    # A class without a fit (a course label) drops out and the rest renormalise.
    g2, _ = portion.posterior_grams(table, labels, np.array([0.5, 0.25, 0.25, 0]), 1, 50.0)
    assert g2 == pytest.approx(200.0)
    # A faint alternative moves the estimate a little but does not widen the range.
    g3, rng3 = portion.posterior_grams(table, labels, np.array([0, 0.05, 0.95, 0]), 2, 50.0)
    assert 300.0 < g3 < 400.0
    assert rng3 == pytest.approx((400 * math.exp(-0.2), 400 * math.exp(0.2)))


def test_posterior_grams_need_a_fit_for_the_top_class_and_an_area() -> None:
    fit = portion.ClassFit(a=0.0, b=1.0, resid_lo=-0.1, resid_hi=0.1, n=10)
    labels = ["Plate", "apple"]
    scores = np.array([0.6, 0.4])
    assert portion.posterior_grams({"apple": fit}, labels, scores, 0, 50.0) == (None, None)
    assert portion.posterior_grams({"apple": fit}, labels, scores, 1, None) == (None, None)


def test_posterior_grams_of_zero_volume_is_zero_not_an_error() -> None:
    fit = portion.ClassFit(a=0.0, b=1.0, resid_lo=-0.1, resid_hi=0.1, n=10, density_g_per_ml=1.0)
    table = {"apple": fit, "pear": fit}
    got = portion.posterior_grams(table, ["apple", "pear"], np.array([0.7, 0.3]), 0, 20.0, 0.0)
    assert got == (0.0, (0.0, 0.0))
