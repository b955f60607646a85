"""Lookup, search ranking, nutrient arithmetic and bad input on the shipped table."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

import nutrition_db as ndb
from nutrition_db.table import table


def test_whole_table_values_are_finite_non_negative_and_complete() -> None:
    foods = table().foods
    assert len(foods) == ndb.stats()["foods"] == 32899
    for food in foods.values():
        assert set(food.nutrients) == set(ndb.NUTRIENT_KEYS), food.food_id
        assert all(v is None or (math.isfinite(v) and v >= 0) for v in food.nutrients.values())
        assert food.trust in ndb.TRUST_LEVELS
        assert food.density_g_per_ml is None or 0.02 <= food.density_g_per_ml <= 2.5
        assert (food.density_g_per_ml is None) == (food.density_note is None)


def test_nutrients_for_scales_per_100g() -> None:
    values = ndb.nutrients_for("mfds:D105-216010000-0001", 250)
    assert values["energy_kcal"] == pytest.approx(62.5)
    assert values["sodium_mg"] == pytest.approx(892.5)
    assert values["magnesium_mg"] is None  # MFDS has no magnesium: stays unknown, never 0
    assert ndb.nutrients_for("fndds:58150100", 0)["energy_kcal"] == 0.0


@pytest.mark.parametrize("grams", [-1, -0.01, float("nan"), float("inf"), 5000.5, 1e9])
def test_bad_amounts_are_refused(grams: float) -> None:
    with pytest.raises(ndb.InvalidAmountError) as err:
        ndb.nutrients_for("fndds:58150100", grams)
    assert "grams" in str(err.value) or " g " in str(err.value)


@pytest.mark.parametrize("grams", ["100", None, True])
def test_non_numbers_are_refused(grams: object) -> None:
    with pytest.raises(ndb.InvalidAmountError, match="must be a number"):
        ndb.nutrients_for("fndds:58150100", grams)  # type: ignore[arg-type]


def test_unknown_id_suggests_close_ids() -> None:
    with pytest.raises(ndb.UnknownFoodError) as err:
        ndb.get_food("mfds:D105-216010000-001")
    assert err.value.suggestions[0] == "mfds:D105-216010000-0001"
    assert "did you mean" in str(err.value)
    with pytest.raises(ndb.UnknownFoodError) as by_name:
        ndb.get_food("된장국_감자")  # a name, not an id: suggests ids by name
    assert "mfds:D105-216010000-0001" in by_name.value.suggestions
    with pytest.raises(ndb.UnknownFoodError) as nothing:
        ndb.get_food("zz:qqqqqqqqqq")
    assert nothing.value.suggestions == []
    assert isinstance(nothing.value, LookupError)


def test_search_korean_is_tolerant_of_spacing_and_prefers_canteen_rows() -> None:
    spaced = ndb.search("된장 국", limit=10)
    assert [f.food_id for f in spaced] == [f.food_id for f in ndb.search("된장국", limit=10)]
    assert all(f.name_ko and f.name_ko.startswith("된장국") for f in spaced)
    assert spaced[0].origin and "급식" in spaced[0].origin
    # 잡곡밥: the exact name comes first, canteen recipe before the analysed home dish
    # before the restaurant calculation.
    rice = ndb.search("잡곡밥", limit=3)
    assert [f.name_ko for f in rice] == ["잡곡밥"] * 3
    assert [f.food_id[5:7] for f in rice] == ["D7", "D1", "D4"]


def test_search_ranks_franchise_rows_after_analysed_ones() -> None:
    hits = ndb.search("꽈배기", limit=5)
    assert hits[0].food_id == "kfct:빵, 꽈배기"  # analysed, before company-supplied doughnuts
    assert {f.trust for f in hits[1:]} == {"company-supplied"}


def test_search_english_case_words_and_exact_first() -> None:
    assert ndb.search("BIBIMBAP")[0].food_id == "fndds:58150100"
    hits = [f.food_id for f in ndb.search("apple raw", limit=5)]
    assert hits[0] == "fndds:63101000"  # 'Apple, raw' is an exact match
    assert "sr28:09003" in hits  # words in order at word starts
    assert ndb.search("kimchi", limit=1)[0].food_id == "n5k:512"  # exact beats prefix
    assert ndb.search("no such food qqq") == []


@pytest.mark.parametrize("query", ["", "   ", "__"])
def test_empty_search_is_refused(query: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        ndb.search(query)


def test_search_limit_is_checked() -> None:
    assert len(ndb.search("rice", limit=3)) == 3
    with pytest.raises(ValueError, match="limit"):
        ndb.search("rice", limit=0)


def test_stats_coverage_matches_the_table() -> None:
    stats = ndb.stats()
    foods = table().foods.values()
    fndds_sodium = sum(f.nutrients["sodium_mg"] is not None for f in foods if f.source == "fndds")
    assert stats["nutrient_coverage"]["sodium_mg"]["fndds"] == round(fndds_sodium / 5431, 4)
    assert stats["nutrient_coverage"]["energy_kcal"]["all"] == 1.0
    assert stats["nutrient_coverage"]["sodium_mg"]["n5k"] == 0.0
    assert sum(stats["by_trust"].values()) == stats["foods"]


def test_import_is_lazy() -> None:
    code = ("import sys, nutrition_db, nutrition_db.table as t; "
            "assert t._table is None; assert 'torch' not in sys.modules; "
            "assert 'serve' not in sys.modules and 'model' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
