"""USDA FNDDS 2021-2023 foods as eaten; servings and densities from the 2017-2018 portions."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from nutrition_db.density import CUP_ML, Portion, density_from_portions
from nutrition_db.schema import RECIPE, Food
from nutrition_db.sources.common import nutrients_from, parse_number, read_csv

NUTRIENTS_FILE = Path("us_fndds/fndds_2021-2023_nutrient_values.csv")
PORTIONS_FILE = Path("us_fndds/fndds_2017-2018_portions_and_weights.csv")

COLUMNS = {
    "energy_kcal": "Energy (kcal)",
    "water_g": "Water (g)",
    "protein_g": "Protein (g)",
    "fat_g": "Total Fat (g)",
    "saturated_fat_g": "Fatty acids, total saturated (g)",
    "carbohydrate_g": "Carbohydrate (g)",
    "sugars_g": "Sugars, total (g)",
    "fiber_g": "Fiber, total dietary (g)",
    "cholesterol_mg": "Cholesterol (mg)",
    "sodium_mg": "Sodium (mg)",
    "potassium_mg": "Potassium (mg)",
    "calcium_mg": "Calcium (mg)",
    "phosphorus_mg": "Phosphorus (mg)",
    "iron_mg": "Iron (mg)",
    "magnesium_mg": "Magnesium (mg)",
    "zinc_mg": "Zinc (mg)",
    "vitamin_a_ug_rae": "Vitamin A, RAE (mcg_RAE)",
    "thiamin_mg": "Thiamin (mg)",
    "riboflavin_mg": "Riboflavin (mg)",
    "niacin_mg": "Niacin (mg)",
    "vitamin_c_mg": "Vitamin C (mg)",
    "vitamin_d_ug": "Vitamin D (D2 + D3) (mcg)",
}
# FNDDS's own standard amount when a respondent did not say how much.
SERVING_PORTION = "Quantity not specified"
SOURCE_LABEL = "FNDDS 2017-2018"


def read_portions(raw: Path) -> dict[str, list[Portion]]:
    """Food code -> its portions (main food only; subcoded variants are skipped)."""
    portions: dict[str, list[Portion]] = defaultdict(list)
    for row in read_csv(raw / PORTIONS_FILE, header_starts="Food code"):
        grams = parse_number(row["Portion weight (g)"])
        if row["Subcode"].strip() in ("", "0") and grams is not None:
            portions[row["Food code"]].append(Portion(row["Portion description"], 1.0, grams))
    return dict(portions)


def cup_densities(raw: Path) -> list[tuple[str, float]]:
    """(WWEIA category number, g/ml) for every FNDDS food measured by the plain '1 cup'."""
    out = []
    for row in read_csv(raw / PORTIONS_FILE, header_starts="Food code"):
        grams = parse_number(row["Portion weight (g)"])
        if row["Portion description"] == "1 cup" and row["Subcode"].strip() in ("", "0") and grams:
            out.append((row["WWEIA Category number"], grams / CUP_ML))
    return out


def read(raw: Path) -> list[Food]:
    """All FNDDS 2021-2023 foods (recipe-calculated from SR/FoodData ingredients)."""
    portions = read_portions(raw)
    foods = []
    for row in read_csv(raw / NUTRIENTS_FILE, header_starts="Food code"):
        code = row["Food code"].strip()
        mine = portions.get(code, [])
        serving = next((p.grams for p in mine
                        if p.description == SERVING_PORTION and p.grams > 0), None)
        density = density_from_portions(mine, SOURCE_LABEL)
        foods.append(Food(
            food_id=f"fndds:{code}",
            name_ko=None,
            name_en=row["Main food description"].strip(),
            source="fndds",
            category=row["WWEIA Category description"].strip() or None,
            trust=RECIPE,
            serving_g=serving,
            density_g_per_ml=density[0] if density else None,
            density_note=density[1] if density else None,
            basis_note="per 100 g as published",
            nutrients=nutrients_from(row, COLUMNS),
            origin="FNDDS 2021-2023",
        ))
    return foods
