"""A meal: per-item nutrients, totals, and which totals are incomplete."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nutrition_db.schema import NUTRIENT_KEYS
from nutrition_db.table import check_grams, get_food, scale


@dataclass(frozen=True)
class MealItem:
    """One item of a meal: its food, amount and nutrients for that amount."""

    food_id: str
    name: str
    grams: float
    nutrients: dict[str, float | None]


@dataclass(frozen=True)
class MealNutrients:
    """Per-item nutrients, totals over the items that have each value, incomplete keys."""

    items: list[MealItem]
    totals: dict[str, float | None]
    incomplete: list[str]


def meal_nutrients(items: Iterable[tuple[str, float]]) -> MealNutrients:
    """Nutrients of a meal given (food_id, grams) pairs; totals sum the known values.

    A nutrient is listed in `incomplete` when at least one item lacks it: its total is then
    a lower bound. A total is None when no item has the value.
    """
    meal = []
    for pair in items:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"meal items are (food_id, grams) pairs, got {pair!r}")
        food_id, grams = pair
        grams = check_grams(grams)
        food = get_food(food_id)
        meal.append(MealItem(food.food_id, food.name, grams, scale(food, grams)))
    totals: dict[str, float | None] = {}
    incomplete = []
    for key in NUTRIENT_KEYS:
        known = [v for item in meal if (v := item.nutrients[key]) is not None]
        totals[key] = float(sum(known)) if known or not meal else None
        if len(known) < len(meal):
            incomplete.append(key)
    return MealNutrients(meal, totals, incomplete)
