"""Meal totals, incomplete nutrients and bad meal input."""
from __future__ import annotations

import pytest

import nutrition_db as ndb

MEAL = [
    ("mfds:D501-032600000-0001", 210.0),  # 잡곡밥_보리 (school canteen, per 100 ml converted)
    ("mfds:D505-216160000-0001", 180.0),  # 된장국_미역
    ("mfds:D110-465000000-0001", 120.0),  # 제육볶음 (analysed)
    ("mfds:D113-586000000-0001", 50.0),   # 시금치나물
    ("kfct:귀리, 겉귀리, 도정, 생것", 10.0),  # KFCT: five nutrients only
    ("n5k:2", 80.0),                       # strawberries: no sodium in Nutrition5k
]


def test_meal_totals_are_sums_of_items() -> None:
    meal = ndb.meal_nutrients(MEAL)
    assert [i.food_id for i in meal.items] == [f for f, _ in MEAL]
    for key in ("energy_kcal", "protein_g", "fat_g", "carbohydrate_g"):
        expected = sum(ndb.nutrients_for(f, g)[key] or 0.0 for f, g in MEAL)
        assert meal.totals[key] == pytest.approx(expected)
    assert meal.items[1].nutrients["sodium_mg"] == pytest.approx(
        ndb.nutrients_for("mfds:D505-216160000-0001", 180.0)["sodium_mg"])


def test_incomplete_lists_nutrients_some_item_lacks() -> None:
    meal = ndb.meal_nutrients(MEAL)
    assert "sodium_mg" in meal.incomplete  # KFCT and Nutrition5k rows lack it
    assert "energy_kcal" not in meal.incomplete
    assert "magnesium_mg" in meal.incomplete
    # The sodium total is the sum over the items that have it (a lower bound).
    known = sum(v for i in meal.items if (v := i.nutrients["sodium_mg"]) is not None)
    assert meal.totals["sodium_mg"] == pytest.approx(known)
    only_mfds = ndb.meal_nutrients(MEAL[:1])
    assert only_mfds.totals["magnesium_mg"] is None  # no item knows it


def test_empty_meal() -> None:
    meal = ndb.meal_nutrients([])
    assert meal.items == [] and meal.incomplete == []
    assert meal.totals["energy_kcal"] == 0.0


def test_bad_meal_items() -> None:
    with pytest.raises(ndb.UnknownFoodError, match="unknown food id 'fndds:00000000'"):
        ndb.meal_nutrients([("fndds:58150100", 100), ("fndds:00000000", 100)])
    with pytest.raises(ndb.InvalidAmountError, match="grams cannot be negative, got -5"):
        ndb.meal_nutrients([("fndds:58150100", -5)])
    with pytest.raises(ValueError, match="pairs"):
        ndb.meal_nutrients([("fndds:58150100",)])  # type: ignore[list-item]
