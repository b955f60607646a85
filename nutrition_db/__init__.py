"""TrayLens nutrient database: Korean and US food composition behind one schema.

Importing is cheap; the food table is read once, on the first lookup.
"""
from __future__ import annotations

from nutrition_db.errors import InvalidAmountError, UnknownFoodError
from nutrition_db.intakes import ReferenceIntake, reference_intakes
from nutrition_db.labels import LabelEntry, LabelMap, label_map, validate_label_map
from nutrition_db.meal import MealItem, MealNutrients, meal_nutrients
from nutrition_db.schema import NUTRIENT_KEYS, NUTRIENTS, TRUST_LEVELS, Food, Nutrient
from nutrition_db.table import MAX_GRAMS, get_food, nutrients_for, search, stats

__all__ = [
    "MAX_GRAMS", "NUTRIENTS", "NUTRIENT_KEYS", "TRUST_LEVELS", "Food", "InvalidAmountError",
    "LabelEntry", "LabelMap", "MealItem", "MealNutrients", "Nutrient", "ReferenceIntake",
    "UnknownFoodError", "get_food", "label_map", "meal_nutrients", "nutrients_for",
    "reference_intakes", "search", "stats", "validate_label_map",
]
