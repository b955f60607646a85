"""Values in the built table checked against the raw source rows."""
from __future__ import annotations

import csv
import math
import shutil
import statistics
from pathlib import Path

import pytest

import nutrition_db as ndb
from nutrition_db.density import CUP_ML, GroupDensity
from nutrition_db.paths import RAW_DIR
from nutrition_db.sources import mfds
from nutrition_db.sources.common import RawDataError, parse_number
from nutrition_db.sources.mfds import parse_serving, trust_of
from nutrition_db.table import table

from .conftest import raw_csv_row


def test_mfds_doenjang_guk_matches_the_issue_and_the_raw_row() -> None:
    food = ndb.get_food("mfds:D105-216010000-0001")
    assert food.name_ko == "된장국_감자"
    assert food.nutrients["energy_kcal"] == 25
    assert food.nutrients["sodium_mg"] == 357
    raw = raw_csv_row("kr_mfds/mfds_food_standard_2023-12-27.csv", "식품코드",
                      "D105-216010000-0001")
    assert food.nutrients["protein_g"] == float(raw["단백질(g)"])
    assert food.nutrients["saturated_fat_g"] == float(raw["포화지방산(g)"])
    assert food.serving_g == 400.0 and raw["식품중량"] == "400g"
    assert food.trust == "analysed" and food.category == "국 및 탕류"
    assert food.basis_note == "per 100 g as published"


def test_fndds_bibimbap() -> None:
    food = ndb.get_food("fndds:58150100")
    assert food.name_en == "Bibimbap, Korean"
    assert food.nutrients["energy_kcal"] == 76
    raw = raw_csv_row("us_fndds/fndds_2021-2023_nutrient_values.csv", "Food code", "58150100")
    assert food.nutrients["sodium_mg"] == float(raw["Sodium (mg)"])
    assert food.nutrients["vitamin_a_ug_rae"] == float(raw["Vitamin A, RAE (mcg_RAE)"])
    assert food.trust == "recipe-calculated"
    # FNDDS 2017-2018 gives '1 cup' = 162 g for this code.
    assert food.density_g_per_ml == pytest.approx(162 / CUP_ML, abs=1e-4)
    assert "1 cup" in (food.density_note or "")


def test_sr28_apple_row_from_abbrev() -> None:
    with (RAW_DIR / "us_sr28/SR28_ABBREV.txt").open(encoding="latin-1") as fh:
        fields = next(line.split("^") for line in fh if line.startswith("~09003~"))
    food = ndb.get_food("sr28:09003")
    assert food.name_en == "Apples, raw, with skin"
    assert food.nutrients["water_g"] == float(fields[2])
    assert food.nutrients["energy_kcal"] == float(fields[3]) == 52
    assert food.nutrients["carbohydrate_g"] == float(fields[7])
    assert food.nutrients["vitamin_c_mg"] == float(fields[20])
    assert food.category == "Fruits and Fruit Juices"
    assert food.trust == "analysed"


def test_kfct_row_missing_and_trace_cells() -> None:
    food = ndb.get_food("kfct:귀리, 겉귀리, 도정, 생것")
    assert food.nutrients["energy_kcal"] == 380
    assert food.nutrients["protein_g"] == 11.40
    assert food.nutrients["sodium_mg"] is None  # the trimmed KFCT file has no sodium
    with (RAW_DIR / "kr_rda/kfct_db10_2025-04-26_macros.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    dash = next(r for r in rows if r["당류(g)"] == "-")
    trace = next(r for r in rows if r["지방(g)"] == "Tr")
    assert ndb.get_food(f"kfct:{dash['식품명']}").nutrients["sugars_g"] is None
    assert ndb.get_food(f"kfct:{trace['식품명']}").nutrients["fat_g"] == 0.0


def test_n5k_ingredient_per_gram_becomes_per_100g() -> None:
    raw = raw_csv_row("nutrition5k/ingredients_metadata.csv", "id", "1")
    food = ndb.get_food("n5k:1")
    assert food.name_en == raw["ingr"] == "cottage cheese"
    assert food.nutrients["energy_kcal"] == pytest.approx(float(raw["cal/g"]) * 100)
    assert food.nutrients["protein_g"] == pytest.approx(float(raw["protein(g)"]) * 100)
    assert food.nutrients["sodium_mg"] is None


def _fndds_soup_cup_median() -> float:
    """Median '1 cup' density of FNDDS WWEIA 3802 (Soups), computed here independently."""
    path = RAW_DIR / "us_fndds/fndds_2017-2018_portions_and_weights.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Food code,"))
    rows = csv.DictReader(lines[start:])
    values = [float(r["Portion weight (g)"]) / CUP_ML for r in rows
              if r["Portion description"] == "1 cup" and r["WWEIA Category number"] == "3802"
              and r["Subcode"] in ("", "0")]
    return statistics.median(values)


def test_mfds_canteen_row_per_100ml_is_converted_to_grams() -> None:
    raw = raw_csv_row("kr_mfds/mfds_food_standard_2023-12-27.csv", "식품코드",
                      "D505-216160000-0001")
    assert raw["영양성분함량기준량"] == "100ml" and raw["식품중량"] == "170ml"
    food = ndb.get_food("mfds:D505-216160000-0001")
    density = food.density_g_per_ml
    assert density is not None
    assert density == pytest.approx(_fndds_soup_cup_median(), abs=1e-4)
    assert 0.95 < density < 1.1  # a broth weighs about as much as water
    assert food.nutrients["energy_kcal"] == pytest.approx(float(raw["에너지(kcal)"]) / density,
                                                          rel=1e-4)
    assert food.nutrients["sodium_mg"] == pytest.approx(float(raw["나트륨(mg)"]) / density,
                                                        rel=1e-4)
    assert food.serving_g == pytest.approx(170 * density, abs=0.1)
    assert "100 ml" in food.basis_note and "3802" in (food.density_note or "")
    assert food.origin is not None and "급식" in food.origin
    assert food.trust == "recipe-calculated"


def test_mfds_empty_cells_are_none_not_zero() -> None:
    with (RAW_DIR / "kr_mfds/mfds_food_standard_2023-12-27.csv").open(encoding="utf-8") as fh:
        row = next(r for r in csv.DictReader(fh) if r["지방(g)"] == "" and r["칼슘(mg)"] == "")
    food = ndb.get_food(f"mfds:{row['식품코드']}")
    assert food.nutrients["fat_g"] is None
    assert food.nutrients["calcium_mg"] is None
    assert food.nutrients["energy_kcal"] is not None
    assert food.trust == "company-supplied"


def test_mfds_2025_rows_only_for_codes_2023_lacks() -> None:
    # 동태국 is in the 2025 macros table only: macros present, the rest unknown.
    raw = raw_csv_row("kr_mfds/mfds_food_db_2025-04-08_macros.csv", "식품코드",
                      "D105-272000000-0001")
    food = ndb.get_food("mfds:D105-272000000-0001")
    assert food.name_ko == raw["식품명"] == "동태국"
    assert food.nutrients["energy_kcal"] == float(raw["에너지(kcal)"])
    assert food.nutrients["calcium_mg"] is None and food.serving_g is None
    assert food.category == "국 및 탕류" and food.trust == "analysed"
    # Codes present in both: the 2023 standard data wins.
    assert ndb.get_food("mfds:D105-216010000-0001").nutrients["water_g"] == 93.4


def test_parsers() -> None:
    assert parse_number("") is None and parse_number("-") is None
    assert parse_number("Tr") == 0.0 and parse_number(" 1,234.5 ") == 1234.5
    with pytest.raises(RawDataError, match="not a number: 'abc'"):
        parse_number("abc")
    assert parse_serving("400g", basis_ml=False) == (400.0, False)
    assert parse_serving("180ml", basis_ml=False) == (180.0, True)
    assert parse_serving("1205.", basis_ml=False) == (1205.0, False)
    assert parse_serving("250m", basis_ml=True) == (250.0, True)
    assert parse_serving("", basis_ml=True) is None
    assert trust_of("초등학교급식(재료량 기반 산출 함량)") == "recipe-calculated"
    assert trust_of("산업체급식(재료량 기반 산출 함량)") == "recipe-calculated"  # not '업체'
    assert trust_of("외식(프랜차이즈 등 업체 제공 영양정") == "company-supplied"
    assert trust_of("외식(분석함량)") == "analysed"
    with pytest.raises(RawDataError, match="unknown MFDS 식품기원: '모름'"):
        trust_of("모름")


def test_every_food_is_well_formed() -> None:
    stats = ndb.stats()
    assert stats["by_source"] == {"mfds": 14853, "kfct": 3270, "fndds": 5431, "sr28": 8790,
                                  "n5k": 555}
    for food in (ndb.get_food(i) for i in ("sr28:01001", "mfds:D202-082000000-0076")):
        assert set(food.nutrients) == set(ndb.NUTRIENT_KEYS)
        assert food.trust in ndb.TRUST_LEVELS
        assert all(v is None or (math.isfinite(v) and v >= 0) for v in food.nutrients.values())


def test_kfct_minus_flag_is_not_a_negative_amount() -> None:
    raw = raw_csv_row("kr_rda/kfct_db10_2025-04-26_macros.csv", "식품명", "과당")
    assert raw["당류(g)"] == "-99.9"
    assert ndb.get_food("kfct:과당").nutrients["sugars_g"] == 99.9


def test_mfds_trust_counts_follow_the_origins() -> None:
    by_origin: dict[str, set[str]] = {}
    for food in table().foods.values():
        if food.source == "mfds":
            by_origin.setdefault(food.origin or "", set()).add(food.trust)
    assert all(len(trusts) == 1 for trusts in by_origin.values()), by_origin
    canteen = {o: t for o, t in by_origin.items() if "급식" in o}
    assert len(canteen) == 3 and all(t == {"recipe-calculated"} for t in canteen.values())


def test_converted_rows_are_physically_possible() -> None:
    converted = [f for f in table().foods.values() if "per 100 ml" in f.basis_note]
    assert len(converted) == 7023
    for food in converted:
        n = food.nutrients
        macros = sum(n[k] or 0.0 for k in ("protein_g", "fat_g", "carbohydrate_g"))
        assert macros <= 100.0 + 1e-3 and (n["energy_kcal"] or 0.0) <= 925.0 + 1e-3, food


def test_density_is_raised_only_where_the_group_median_is_impossible() -> None:
    # 뱅어포튀김 (school canteen, 2025 file): 120 g of macronutrients per 100 ml in the raw
    # row, so the 튀김류 median (0.55 g/ml) would put 219 g of them and 1,332 kcal in 100 g.
    raw = raw_csv_row("kr_mfds/mfds_food_db_2025-04-08_macros.csv", "식품코드",
                      "D512-599000000-0001")
    macros = sum(float(raw[c]) for c in ("단백질(g)", "지방(g)", "탄수화물(g)"))
    food = ndb.get_food("mfds:D512-599000000-0001")
    assert food.density_g_per_ml == pytest.approx(macros / 100, abs=1e-4)
    assert "raised to" in (food.density_note or "")
    fried = ndb.get_food("mfds:D512-587000000-0001")  # 닭강정: the group median fits
    assert fried.density_g_per_ml is not None and fried.density_g_per_ml < 0.6
    assert "raised" not in (fried.density_note or "")


def _mfds_copy(tmp_path: Path, code: str, old: str, new: str) -> Path:
    """A raw folder holding the two MFDS files, with one edit in the row of `code`."""
    folder = tmp_path / "kr_mfds"
    shutil.copytree(RAW_DIR / "kr_mfds", folder)
    path = folder / "mfds_food_standard_2023-12-27.csv"
    lines = path.read_text(encoding="utf-8").split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith(code + ","))
    lines[i] = lines[i].replace(old, new, 1)
    path.write_text("\n".join(lines), encoding="utf-8")
    return tmp_path


def test_mfds_code_digits_must_agree_with_named_columns(tmp_path: Path) -> None:
    densities = {"": GroupDensity(1.0, "test")}
    raw = _mfds_copy(tmp_path, "D105-216010000-0001", "가정식(분석 함량)", "외식(분석함량)")
    with pytest.raises(RawDataError, match="D105-216010000-0001: code digits '1'"):
        mfds.read(raw, densities)
    raw2 = _mfds_copy(tmp_path / "b", "D105-216010000-0001", ",05,국 및 탕류,", ",06,국 및 탕류,")
    with pytest.raises(RawDataError, match="식품대분류코드 06"):
        mfds.read(raw2, densities)
