"""MFDS 음식 standard data 2023-12-27, plus 2025-04-08 macro rows for codes 2023 lacks."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from nutrition_db.density import GroupDensity
from nutrition_db.schema import ANALYSED, COMPANY, RECIPE, Food
from nutrition_db.sources.common import RawDataError, nutrients_from, read_csv

STANDARD_FILE = Path("kr_mfds/mfds_food_standard_2023-12-27.csv")
MACROS_FILE = Path("kr_mfds/mfds_food_db_2025-04-08_macros.csv")

COLUMNS = {
    "energy_kcal": "에너지(kcal)", "water_g": "수분(g)", "protein_g": "단백질(g)",
    "fat_g": "지방(g)", "saturated_fat_g": "포화지방산(g)", "trans_fat_g": "트랜스지방산(g)",
    "carbohydrate_g": "탄수화물(g)", "sugars_g": "당류(g)", "fiber_g": "식이섬유(g)",
    "cholesterol_mg": "콜레스테롤(mg)", "sodium_mg": "나트륨(mg)", "potassium_mg": "칼륨(mg)",
    "calcium_mg": "칼슘(mg)", "phosphorus_mg": "인(mg)", "iron_mg": "철(mg)",
    "vitamin_a_ug_rae": "비타민 A(μg RAE)", "thiamin_mg": "티아민(mg)",
    "riboflavin_mg": "리보플라빈(mg)", "niacin_mg": "니아신(mg)", "vitamin_c_mg": "비타민 C(mg)",
    "vitamin_d_ug": "비타민 D(μg)",
}
MACRO_COLUMNS = {
    "energy_kcal": "에너지(kcal)", "protein_g": "단백질(g)", "fat_g": "지방(g)",
    "carbohydrate_g": "탄수화물(g)", "sugars_g": "당류(g)", "sodium_mg": "나트륨(mg)",
}
# Canteen recipes (school and company 급식) carry this word in their 식품기원명.
CANTEEN_MARK = "급식"
_SERVING = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*(g|ml|m)?\s*$")


def trust_of(origin: str) -> str:
    """Trust from the origin: company-declared, computed from recipes, or lab-analysed."""
    # '업체 제공' (company-supplied), not just '업체': 산업체급식 (company canteens) contains it.
    if "업체 제공" in origin or "프랜차이즈" in origin:
        return COMPANY
    if "산출" in origin:
        return RECIPE
    if "분석" in origin:
        return ANALYSED
    raise RawDataError(f"unknown MFDS 식품기원: {origin!r}")


def parse_serving(text: str, basis_ml: bool) -> tuple[float, bool] | None:
    """(amount, is_ml) from 식품중량 like '400g', '180ml'; a bare number takes the basis unit."""
    match = _SERVING.match(text)
    if not match or float(match.group(1)) <= 0:
        return None
    unit = match.group(2)
    # 'm' is a truncated 'ml' (4 rows); bare numbers are cut-off values on the row's basis.
    is_ml = unit in ("ml", "m") or (unit is None and basis_ml)
    return float(match.group(1)), is_ml


# Physical limits of 100 g of food: at most 100 g of protein + fat + carbohydrate and the
# energy of pure fat (the tables give oils up to 921 kcal). A density that would break them
# is too low for that row.
MAX_MACROS_G, MAX_KCAL = 100.0, 925.0


def least_density(nutrients: dict[str, float | None]) -> float:
    """The smallest g/ml at which a per-100 ml row stays physically possible per 100 g."""
    macros = sum(nutrients.get(k) or 0.0 for k in ("protein_g", "fat_g", "carbohydrate_g"))
    least = max(macros / MAX_MACROS_G, (nutrients.get("energy_kcal") or 0.0) / MAX_KCAL)
    return math.ceil(least * 10_000) / 10_000


def row_density(food: Food, basis_ml: bool, group: GroupDensity) -> tuple[float, str]:
    """The group density, raised to the physical minimum where the row needs it."""
    note = f"MFDS gives none; {group.note}"
    least = least_density(food.nutrients) if basis_ml else 0.0
    if least <= group.density:
        return group.density, note
    return least, (f"{note}; raised to {least:g} g/ml, the least density at which this row's "
                   f"per-100 ml values fit in 100 g (<= {MAX_MACROS_G:g} g macronutrients, "
                   f"<= {MAX_KCAL:g} kcal)")


def to_per_100g(food: Food, basis_ml: bool, serving: tuple[float, bool] | None,
                group: GroupDensity | None) -> Food:
    """Converts a per-100 ml row (and a serving in ml) to grams with the group density."""
    amount, serving_ml = serving if serving else (None, False)
    if not basis_ml and not serving_ml:
        return replace(food, serving_g=amount)
    if group is None:
        raise RawDataError(f"no density for {food.food_id}")
    d, density_note = row_density(food, basis_ml, group)
    nutrients = food.nutrients
    basis = "per 100 g as published"
    if basis_ml:
        nutrients = {k: None if v is None else round(v / d, 4) for k, v in nutrients.items()}
        basis = f"MFDS gives per 100 ml; converted to per 100 g with {d:g} g/ml (value / {d:g})"
    serving_g = round(amount * d, 1) if amount is not None and serving_ml else amount
    return replace(food, nutrients=nutrients, basis_note=basis, serving_g=serving_g,
                   density_g_per_ml=d, density_note=density_note)


def _basis_ml(text: str, code: str) -> bool:
    """True for a '100ml' basis, False for '100g'; anything else is a data error."""
    if text.strip() not in ("100g", "100ml"):
        raise RawDataError(f"{code}: unexpected 영양성분함량기준량 {text!r}")
    return text.strip() == "100ml"


def _food(code: str, name: str, category: str | None, origin: str,
          nutrients: dict[str, float | None]) -> Food:
    """A Food for an MFDS row before unit conversion."""
    return Food(food_id=f"mfds:{code}", name_ko=name.strip(), name_en=None, source="mfds",
                category=category, trust=trust_of(origin), serving_g=None,
                density_g_per_ml=None, density_note=None, basis_note="per 100 g as published",
                nutrients=nutrients, origin=origin)


def _same(seen: dict[str, str], key: str, name: str, code: str) -> str:
    """Records that a code digit means `name`; RawDataError if it meant another before."""
    known = seen.setdefault(key, name)
    if known != name:
        raise RawDataError(f"{code}: code digits {key!r} mean {known!r} in other rows")
    return known


def read(raw: Path, densities: Mapping[str, GroupDensity]) -> list[Food]:
    """MFDS 2023 rows, then 2025 macro rows whose codes 2023 lacks (other nutrients None)."""
    foods: list[Food] = []
    # The 2025 file has no group or origin columns: its rows take the names that the same
    # code digits (식품코드 = D + origin digit + 2-digit group + ...) have in the 2023 file,
    # where the digits and the named columns agree on every row (checked here).
    groups: dict[str, str] = {}
    origins: dict[str, str] = {}
    for row in read_csv(raw / STANDARD_FILE):
        code, group = row["식품코드"].strip(), row["식품대분류코드"].strip()
        if code[2:4] != group:
            raise RawDataError(f"{code}: 식품대분류코드 {group} is not the code's digits")
        category = _same(groups, group, row["식품대분류명"].strip(), code)
        origin = _same(origins, code[1:2], row["식품기원명"].strip(), code)
        food = _food(code, row["식품명"], category, origin, nutrients_from(row, COLUMNS))
        basis_ml = _basis_ml(row["영양성분함량기준량"], code)
        serving = parse_serving(row["식품중량"], basis_ml)
        foods.append(to_per_100g(food, basis_ml, serving, densities.get(group, densities[""])))
    seen = {f.food_id for f in foods}
    for row in read_csv(raw / MACROS_FILE):
        code = row["식품코드"].strip()
        if f"mfds:{code}" in seen:
            continue
        if code[1:2] not in origins:
            raise RawDataError(f"{code}: unknown origin digit")
        food = _food(code, row["식품명"], groups.get(code[2:4]), origins[code[1:2]],
                     nutrients_from(row, MACRO_COLUMNS))
        basis_ml = _basis_ml(row["영양성분함량기준량"], code)
        foods.append(to_per_100g(food, basis_ml, None, densities.get(code[2:4], densities[""])))
    return foods
