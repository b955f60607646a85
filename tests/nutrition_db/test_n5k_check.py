"""The 5,006 real Nutrition5k dishes recomputed through the table."""
from __future__ import annotations

import pytest

from nutrition_db.n5k_check import check_dishes, recompute
from nutrition_db.paths import RAW_DIR
from nutrition_db.sources.common import RawDataError
from nutrition_db.sources.n5k import parse_dish, read_dishes


@pytest.fixture(scope="module")
def summaries() -> dict[str, object]:
    return {s.quantity: s for s in check_dishes()}


def test_all_dishes_read() -> None:
    dishes = read_dishes(RAW_DIR)
    assert len(dishes) == 5006
    assert sum(d.calories == 0 for d in dishes) == 240


def test_recomputed_totals_reproduce_published_totals(summaries: dict) -> None:
    # Measured: median error ~1e-6 kcal / g; the 240 dishes with published all-zero totals
    # are the only ones off by more than 1 kcal (hence the 95th percentile stays tiny).
    for q in ("calories", "fat_g", "carb_g", "protein_g"):
        s = summaries[q]
        assert s.dishes == 5006
        assert s.median_abs < 1e-3 and s.p95_abs < 1e-2, s
        assert s.median_rel < 1e-6
    assert summaries["mass_g"].median_abs == 0.0 and summaries["mass_g"].p95_abs <= 2.0


def test_dishes_with_published_totals_match_exactly() -> None:
    for s in check_dishes(published_zero=False):
        assert s.dishes == 4766
        if s.quantity != "mass_g":  # published mass is the weighed dish, not the sum
            assert s.max_abs < 1e-2, s


def test_one_dish_by_hand() -> None:
    line = ("dish_x,100.5,150,1,2,3,ingr_0000000001,cottage cheese,100,98,4.3,3.4,11,"
            "ingr_0000000002,strawberries,50,16.5,0.15,4,0.35,,,")
    cells = line.split(",")
    dish = parse_dish(cells)
    assert dish.ingredients == (("n5k:1", 100.0), ("n5k:2", 50.0))
    totals = recompute(dish)
    assert totals["calories"] == pytest.approx(98 + 16.5)
    assert totals["mass_g"] == 150


def test_malformed_dish_rows() -> None:
    with pytest.raises(RawDataError, match="malformed"):
        parse_dish(["dish_x", "1", "2", "3", "4", "5", "ingr_0000000001"])
    with pytest.raises(RawDataError, match="bad ingredient"):
        parse_dish(["dish_x", "1", "2", "3", "4", "5", "x1", "a", "1", "1", "1", "1", "1"])
