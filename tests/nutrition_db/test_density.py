"""Densities from household-volume portion weights."""
from __future__ import annotations

import pytest

from nutrition_db.density import (
    CUP_ML,
    FL_OZ_ML,
    TBSP_ML,
    Portion,
    density_from_portions,
    group_densities,
)


def test_plain_cup_is_preferred_over_other_measures() -> None:
    portions = [Portion("1 tablespoon", 1, 15.0), Portion("1 cup, chopped", 1, 150.0),
                Portion("1 cup", 1, 240.0), Portion("Quantity not specified", 1, 300.0)]
    density, note = density_from_portions(portions, "FNDDS") or (0.0, "")
    assert density == pytest.approx(240 / CUP_ML, abs=1e-4)
    assert "'1 cup' = 240 g" in note


def test_sr_amounts_and_fallbacks() -> None:
    half_cup = density_from_portions([Portion("cup", 0.5, 120.0)], "SR28")
    assert half_cup is not None and half_cup[0] == pytest.approx(240 / CUP_ML, abs=1e-4)
    assert "x 0.5" in half_cup[1]
    tbsp = density_from_portions([Portion("tbsp", 1, 14.0), Portion("fl oz", 1, 30.0)], "SR28")
    assert tbsp is not None and tbsp[0] == pytest.approx(14 / TBSP_ML, abs=1e-4)
    floz = density_from_portions([Portion("fl oz", 2, 62.0)], "SR28")
    assert floz is not None and floz[0] == pytest.approx(31 / FL_OZ_ML, abs=1e-4)


def test_no_volume_or_implausible_weights_give_no_density() -> None:
    assert density_from_portions([Portion("1 medium", 1, 182.0)], "SR28") is None
    assert density_from_portions([Portion("1 cup", 1, 0.0)], "FNDDS") is None
    assert density_from_portions([Portion("1 cup", 1, 5000.0)], "FNDDS") is None


def test_group_densities_are_medians_of_mapped_categories() -> None:
    groups = group_densities([("3802", 1.0), ("3802", 1.1), ("3802", 0.9), ("6002", 0.5)])
    assert groups["05"].density == 1.0 and "3 foods in WWEIA 3802" in groups["05"].note
    assert groups["22"].density == 0.5  # 과일류 <- WWEIA 60xx fruit
    assert groups[""].density == pytest.approx(0.95)  # fallback: all categories
    assert "01" not in groups  # nothing measured for rice dishes in this input
