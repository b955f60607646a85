"""Reference intake lookups (KDRI 2020 and US DRIs) and their data file."""
from __future__ import annotations

import csv

import pytest

import nutrition_db as ndb
from nutrition_db.intakes import read_intakes
from nutrition_db.paths import INTAKES_PATH


def test_kdri_adult_man() -> None:
    ref = ndb.reference_intakes("kdri2020", "male", 25)
    assert ref["energy_kcal"].target == 2600 and ref["energy_kcal"].target_kind == "EER"
    assert ref["protein_g"].target == 65 and ref["protein_g"].target_kind == "RNI"
    assert ref["sodium_mg"].target == 1500 and ref["sodium_mg"].target_kind == "AI"
    assert ref["sodium_mg"].upper == 2300 and ref["sodium_mg"].upper_kind == "CDRR"
    assert ref["vitamin_c_mg"].upper == 2000 and ref["vitamin_c_mg"].unit == "mg"
    assert "2020 한국인 영양소 섭취기준" in ref["protein_g"].citation


def test_kdri_bands_by_age_and_sex() -> None:
    assert ndb.reference_intakes("kdri2020", "female", 29.9)["energy_kcal"].target == 2000
    assert ndb.reference_intakes("kdri2020", "female", 30)["energy_kcal"].target == 1900
    old = ndb.reference_intakes("kdri2020", "female", 80)
    assert old["energy_kcal"].target == 1500 and old["sodium_mg"].upper == 1700
    assert old["vitamin_d_ug"].target == 15
    assert "iron_mg" in old and old["iron_mg"].target is None  # only the UL is given for 65+


def test_school_age_references() -> None:
    girl = ndb.reference_intakes("kdri2020", "female", 13)
    assert girl["energy_kcal"].target == 2000 and girl["iron_mg"].target == 16
    assert girl["sodium_mg"].target == 1500 and girl["sodium_mg"].upper == 2300
    assert "vitamin_c_mg" not in girl  # not given for children here: left out, not guessed
    boy = ndb.reference_intakes("kdri2020", "male", 7)
    assert boy["energy_kcal"].target == 1700 and boy["sodium_mg"].upper == 1900
    us_child = ndb.reference_intakes("us_dri", "male", 10)
    assert us_child["calcium_mg"].target == 1300 and us_child["sodium_mg"].upper == 1800
    assert ndb.reference_intakes("us_dri", "female", 18.5)["iron_mg"].target == 15


def test_us_dri() -> None:
    woman = ndb.reference_intakes("us_dri", "female", 35)
    assert woman["iron_mg"].target == 18 and woman["iron_mg"].target_kind == "RDA"
    assert woman["potassium_mg"].target == 2600
    assert "energy_kcal" not in woman  # US EER depends on activity: left out, not invented
    man = ndb.reference_intakes("us_dri", "male", 75)
    assert man["calcium_mg"].target == 1200 and man["vitamin_d_ug"].target == 20


@pytest.mark.parametrize(("system", "sex", "age", "message"), [
    ("who", "male", 30, "unknown system"),
    ("kdri2020", "other", 30, "sex"),
    ("kdri2020", "male", -1, "non-negative"),
    ("kdri2020", "male", float("nan"), "non-negative"),
    ("kdri2020", "male", 5, "from age 6"),
    ("us_dri", "female", 3, "from age 4"),
])
def test_bad_lookups(system: str, sex: str, age: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ndb.reference_intakes(system, sex, age)


def test_data_file_is_complete_and_cited() -> None:
    rows = read_intakes()
    with INTAKES_PATH.open(encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    keys = {(r.system, r.sex, r.age_min, r.nutrient, r.kind) for r in rows}
    assert len(keys) == len(rows)  # no duplicate facts
    assert all(r.citation and r.value > 0 for r in rows)
    covered = {r.nutrient for r in rows if r.system == "kdri2020"}
    assert {"energy_kcal", "protein_g", "sodium_mg", "calcium_mg", "iron_mg",
            "vitamin_a_ug_rae", "vitamin_c_mg", "vitamin_d_ug", "potassium_mg"} <= covered
