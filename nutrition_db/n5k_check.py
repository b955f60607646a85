"""Recomputes the Nutrition5k dishes through the table and measures the error to the
published dish totals (a check that ids, units and per-100 g scaling are right)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from nutrition_db.paths import RAW_DIR
from nutrition_db.sources.n5k import Dish, read_dishes
from nutrition_db.table import table

# Published dish field -> table nutrient key (None = mass, the sum of the grams).
QUANTITIES: dict[str, str | None] = {
    "calories": "energy_kcal", "mass_g": None, "fat_g": "fat_g",
    "carb_g": "carbohydrate_g", "protein_g": "protein_g",
}


@dataclass(frozen=True)
class ErrorSummary:
    """Absolute errors of one quantity over all dishes."""

    quantity: str
    dishes: int
    median_abs: float
    p95_abs: float
    max_abs: float
    median_rel: float  # relative to the published total, over dishes with a total >= 1


def recompute(dish: Dish) -> dict[str, float]:
    """The dish's totals from its ingredient list through the table."""
    foods = table().foods
    out = dict.fromkeys(QUANTITIES, 0.0)
    for food_id, grams in dish.ingredients:
        food = foods[food_id]
        out["mass_g"] += grams
        for quantity, key in QUANTITIES.items():
            if key is not None:
                out[quantity] += (food.nutrients[key] or 0.0) * grams / 100.0
    return out


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile (inclusive method) of the values."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def check_dishes(raw: Path = RAW_DIR, published_zero: bool = True) -> list[ErrorSummary]:
    """Error summaries of every published quantity over all 5,006 dishes, or only over those
    with non-zero published calories (240 dishes publish 0 for every nutrient total although
    their ingredient lines have values: gaps in the published totals, not in the table)."""
    dishes = [d for d in read_dishes(raw) if published_zero or d.calories > 0]
    recomputed = [recompute(d) for d in dishes]
    summaries = []
    for quantity in QUANTITIES:
        published = [float(getattr(d, quantity)) for d in dishes]
        errors = [abs(r[quantity] - p) for r, p in zip(recomputed, published, strict=True)]
        rel = [e / p for e, p in zip(errors, published, strict=True) if p >= 1]
        summaries.append(ErrorSummary(
            quantity, len(dishes), statistics.median(errors), _quantile(errors, 0.95),
            max(errors), statistics.median(rel)))
    return summaries
