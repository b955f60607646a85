"""Glue from analysed items to nutrition_db: names, typical servings, item and meal nutrients."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from nutrition_db.errors import InvalidAmountError, UnknownFoodError
from nutrition_db.meal import meal_nutrients
from nutrition_db.schema import NUTRIENT_KEYS, Food
from nutrition_db.table import get_food, nutrients_for
from serve.core.errors import ApiError


def find_food(food_id: str | None) -> Food | None:
    """The food for an id, or None when the id is missing or unknown to the table."""
    if food_id is None:
        return None
    try:
        return get_food(food_id)
    except UnknownFoodError:
        return None


class FoodNames(NamedTuple):
    """A food's names for people: Korean and English (either may be missing)."""

    name_ko: str | None
    name_en: str | None


@lru_cache(maxsize=4096)
def food_names(food_id: str | None) -> FoodNames:
    """The names shown beside a food id (both None for a missing or unknown id): the one
    lookup the diary, habits and waste answers use."""
    food = find_food(food_id)
    return FoodNames(None, None) if food is None else FoodNames(food.name_ko, food.name_en)


def require_food(food_id: str) -> Food:
    """The food for a client-supplied id; 422 with suggestions when unknown."""
    try:
        return get_food(food_id)
    except UnknownFoodError as exc:
        raise ApiError(422, "unknown_food", str(exc)) from exc


def item_nutrients(food_id: str | None, grams: float | None) -> dict[str, float | None] | None:
    """Nutrients of one item, or None when its food or amount is unknown or unusable."""
    if food_id is None or grams is None:
        return None
    try:
        return nutrients_for(food_id, grams)
    except (UnknownFoodError, InvalidAmountError):
        return None


@dataclass(frozen=True)
class MealTotals:
    """Summed grams and nutrients over the items that have both a food and an amount."""

    grams: float
    nutrients: dict[str, float | None]
    incomplete: list[str]
    items_counted: int
    items_without_nutrients: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored with the analysis and sent to clients."""
        return {
            "grams": self.grams,
            "nutrients": self.nutrients,
            "incomplete_nutrients": self.incomplete,
            "items_counted": self.items_counted,
            "items_without_nutrients": self.items_without_nutrients,
        }


def meal_totals(items: Iterable[tuple[str | None, float | None]]) -> MealTotals:
    """Totals of (food_id, grams) pairs; items lacking either make every total a lower bound."""
    pairs = list(items)
    usable: list[tuple[str, float]] = []
    for food_id, grams in pairs:
        if food_id is not None and grams is not None and item_nutrients(food_id, grams):
            usable.append((food_id, float(grams)))
    skipped = len(pairs) - len(usable)
    meal = meal_nutrients(usable)
    incomplete = list(NUTRIENT_KEYS) if skipped else list(meal.incomplete)
    return MealTotals(
        grams=round(sum(g for _, g in usable), 1),
        nutrients=dict(meal.totals),
        incomplete=incomplete,
        items_counted=len(usable),
        items_without_nutrients=skipped,
    )
