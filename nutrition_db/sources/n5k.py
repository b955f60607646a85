"""Nutrition5k ingredients (kcal, fat, carb, protein per gram) and its 5,006 dishes."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from nutrition_db.schema import ANALYSED, Food
from nutrition_db.sources.common import RawDataError, nutrients_from, parse_number, read_csv

FOLDER = Path("nutrition5k")
DISH_FILES = ("dish_metadata_cafe1.csv", "dish_metadata_cafe2.csv")
COLUMNS = {"energy_kcal": "cal/g", "fat_g": "fat(g)", "carbohydrate_g": "carb(g)",
           "protein_g": "protein(g)"}
_DISH_FIELDS, _INGREDIENT_FIELDS = 6, 7


def read(raw: Path) -> list[Food]:
    """The 555 ingredients, scaled from per gram to per 100 g."""
    foods = []
    for row in read_csv(raw / FOLDER / "ingredients_metadata.csv"):
        per_gram = nutrients_from(row, COLUMNS)
        foods.append(Food(
            food_id=f"n5k:{int(row['id'])}", name_ko=None, name_en=row["ingr"].strip(),
            source="n5k", category=None, trust=ANALYSED, serving_g=None,
            density_g_per_ml=None, density_note=None,
            basis_note="Nutrition5k gives per gram; multiplied by 100",
            nutrients={k: None if v is None else round(v * 100, 4) for k, v in per_gram.items()},
            origin="Nutrition5k ingredients_metadata",
        ))
    return foods


@dataclass(frozen=True)
class Dish:
    """A Nutrition5k dish: published totals and its (n5k food id, grams) ingredients."""

    dish_id: str
    calories: float
    mass_g: float
    fat_g: float
    carb_g: float
    protein_g: float
    ingredients: tuple[tuple[str, float], ...]


def _number(cell: str, where: str) -> float:
    """A required number in a dish row."""
    value = parse_number(cell)
    if value is None:
        raise RawDataError(f"missing number in {where}")
    return value


def parse_dish(cells: list[str]) -> Dish:
    """One headerless dish row: 6 dish fields then 7 fields per ingredient."""
    cells = list(cells)
    while cells and cells[-1] == "":
        cells.pop()
    if len(cells) < _DISH_FIELDS or (len(cells) - _DISH_FIELDS) % _INGREDIENT_FIELDS:
        raise RawDataError(f"malformed dish row: {cells[:3]}")
    dish_id = cells[0]
    kcal, mass, fat, carb, protein = (_number(c, dish_id) for c in cells[1:_DISH_FIELDS])
    ingredients = []
    for i in range(_DISH_FIELDS, len(cells), _INGREDIENT_FIELDS):
        ingr_id, grams = cells[i], _number(cells[i + 2], dish_id)
        if not ingr_id.startswith("ingr_"):
            raise RawDataError(f"{dish_id}: bad ingredient id {ingr_id!r}")
        ingredients.append((f"n5k:{int(ingr_id[5:])}", grams))
    return Dish(dish_id, kcal, mass, fat, carb, protein, tuple(ingredients))


def read_dishes(raw: Path) -> list[Dish]:
    """All dishes of both cafeterias, in file order."""
    dishes: list[Dish] = []
    for name in DISH_FILES:
        path = raw / FOLDER / name
        if not path.is_file():
            raise RawDataError(f"raw table not found: {path}")
        with path.open(encoding="utf-8", newline="") as fh:
            dishes.extend(parse_dish(cells) for cells in csv.reader(fh) if cells)
    return dishes
