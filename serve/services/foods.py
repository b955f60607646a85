"""Food search and lookup in the nutrient database (nutrition_db): the ranking is the CLI's
(`python -m nutrition_db search`), so the page, the API and the CLI agree."""
from __future__ import annotations

from typing import Any

from nutrition_db.errors import UnknownFoodError
from nutrition_db.schema import NUTRIENTS, Food
from nutrition_db.table import get_food, search
from serve.core.errors import ApiError, unprocessable

MAX_LIMIT = 50
MAX_QUERY = 100


def food_payload(food: Food) -> dict[str, Any]:
    """A food as clients see it (serve.schemas.foods.FoodPublic)."""
    return {
        "food_id": food.food_id, "name": food.name, "name_ko": food.name_ko,
        "name_en": food.name_en, "source": food.source, "category": food.category,
        "trust": food.trust, "serving_g": food.serving_g,
        "density_g_per_ml": food.density_g_per_ml,
        "nutrients": [{"key": n.key, "name_en": n.name_en, "name_ko": n.name_ko,
                       "unit": n.unit, "per_100g": food.nutrients.get(n.key)}
                      for n in NUTRIENTS],
    }


def search_foods(query: str, limit: int) -> list[dict[str, Any]]:
    """Foods whose Korean or English name matches, best first (nutrition_db.search)."""
    if not query.strip():
        raise unprocessable("q must name a food (Korean or English)", code="empty_query")
    try:
        foods = search(query, limit=limit)
    except ValueError as exc:  # a query of punctuation only normalises to nothing
        raise unprocessable(f"q: {exc}", code="empty_query") from exc
    return [food_payload(f) for f in foods]


def food_detail(food_id: str) -> dict[str, Any]:
    """One food; 404 naming close ids when there is none."""
    try:
        return food_payload(get_food(food_id))
    except UnknownFoodError as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
