"""USDA SR28 (Standard Reference release 28): analysed foods, household weights."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from nutrition_db.density import Portion, density_from_portions
from nutrition_db.schema import ANALYSED, Food
from nutrition_db.sources.common import RawDataError, nutrients_from, parse_number

FOLDER = Path("us_sr28")
# ABBREV.txt has no header; its fields, in order, from the SR28 documentation (sr28_doc.pdf).
ABBREV_FIELDS = (
    "NDB_No", "Shrt_Desc", "Water", "Energ_Kcal", "Protein", "Lipid_Tot", "Ash", "Carbohydrt",
    "Fiber_TD", "Sugar_Tot", "Calcium", "Iron", "Magnesium", "Phosphorus", "Potassium",
    "Sodium", "Zinc", "Copper", "Manganese", "Selenium", "Vit_C", "Thiamin", "Riboflavin",
    "Niacin", "Panto_Acid", "Vit_B6", "Folate_Tot", "Folic_Acid", "Food_Folate", "Folate_DFE",
    "Choline_Tot", "Vit_B12", "Vit_A_IU", "Vit_A_RAE", "Retinol", "Alpha_Carot", "Beta_Carot",
    "Beta_Crypt", "Lycopene", "Lut+Zea", "Vit_E", "Vit_D_mcg", "Vit_D_IU", "Vit_K", "FA_Sat",
    "FA_Mono", "FA_Poly", "Cholestrl", "GmWt_1", "GmWt_Desc1", "GmWt_2", "GmWt_Desc2",
    "Refuse_Pct",
)
COLUMNS = {
    "energy_kcal": "Energ_Kcal", "water_g": "Water", "protein_g": "Protein",
    "fat_g": "Lipid_Tot", "saturated_fat_g": "FA_Sat", "carbohydrate_g": "Carbohydrt",
    "sugars_g": "Sugar_Tot", "fiber_g": "Fiber_TD", "cholesterol_mg": "Cholestrl",
    "sodium_mg": "Sodium", "potassium_mg": "Potassium", "calcium_mg": "Calcium",
    "phosphorus_mg": "Phosphorus", "iron_mg": "Iron", "magnesium_mg": "Magnesium",
    "zinc_mg": "Zinc", "vitamin_a_ug_rae": "Vit_A_RAE", "thiamin_mg": "Thiamin",
    "riboflavin_mg": "Riboflavin", "niacin_mg": "Niacin", "vitamin_c_mg": "Vit_C",
    "vitamin_d_ug": "Vit_D_mcg",
}
SOURCE_LABEL = "SR28 WEIGHT"


def read_caret(path: Path) -> Iterator[list[str]]:
    """Fields of an SR28 caret-delimited file; text fields lose their ~ quotes."""
    if not path.is_file():
        raise RawDataError(f"raw table not found: {path}")
    with path.open(encoding="latin-1") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if line:
                yield [field.strip("~") for field in line.split("^")]


def read_weights(raw: Path) -> dict[str, list[Portion]]:
    """NDB_No -> household measures in file order (Seq)."""
    weights: dict[str, list[Portion]] = defaultdict(list)
    for f in read_caret(raw / FOLDER / "SR28_WEIGHT.txt"):
        amount, grams = parse_number(f[2]), parse_number(f[4])
        if amount is not None and grams is not None:
            weights[f[0]].append(Portion(f[3], amount, grams))
    return dict(weights)


def read(raw: Path) -> list[Food]:
    """All SR28 foods with their long English names and food groups."""
    groups = {f[0]: f[1] for f in read_caret(raw / FOLDER / "SR28_FD_GROUP.txt")}
    described = {f[0]: (f[1], f[2]) for f in read_caret(raw / FOLDER / "SR28_FOOD_DES.txt")}
    weights = read_weights(raw)
    foods = []
    for fields in read_caret(raw / FOLDER / "SR28_ABBREV.txt"):
        if len(fields) != len(ABBREV_FIELDS):
            raise RawDataError(f"SR28_ABBREV row with {len(fields)} fields: {fields[:2]}")
        row = dict(zip(ABBREV_FIELDS, fields, strict=True))
        ndb = row["NDB_No"]
        group, long_name = described.get(ndb, ("", row["Shrt_Desc"]))
        mine = weights.get(ndb, [])
        density = density_from_portions(mine, SOURCE_LABEL)
        serving = mine[0].grams if mine else None  # SR's first (most common) measure
        foods.append(Food(
            food_id=f"sr28:{ndb}", name_ko=None, name_en=long_name, source="sr28",
            category=groups.get(group), trust=ANALYSED,
            serving_g=round(serving, 2) if serving else None,
            density_g_per_ml=density[0] if density else None,
            density_note=density[1] if density else None,
            basis_note="per 100 g as published",
            nutrients=nutrients_from(row, COLUMNS), origin="USDA SR28",
        ))
    return foods
