"""serve.menus' MenuContext as the pipeline's MenuHook, from the database or a menu.json file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.infer.menu_match import Dish as MatchDish
from model.infer.runtime import load_image
from serve.menus import (
    SIZE_REFERENCES,
    DishInfo,
    MenuContext,
    enrolled_region,
    identify,
    label_index_for,
)
from serve.menus import relative_grams as menu_relative_grams
from serve.pipeline import ENROLLED, MENU_SERVING, SERVING_SPREAD, Alternative, Grams, MenuChoice

if TYPE_CHECKING:
    from model.infer.runtime import TrayModel


class CanteenMenu:
    """Identifies items among a menu's dishes and sizes them against the dish's serving."""

    def __init__(self, context: MenuContext) -> None:
        self.context = context
        self._dishes = {d.dish_id: d for d in context.dishes}

    def identify(self, embedding: np.ndarray, class_scores: np.ndarray) -> MenuChoice:
        """The most probable dish and the ranked rest (model.infer.menu_match via serve.menus)."""
        found = identify(self.context, embedding, class_scores)
        alternatives = [
            Alternative(
                label=self._dishes[m.dish_id].name, food_id=self._dishes[m.dish_id].food_id,
                score=round(m.probability, 4), dish_id=m.dish_id,
            )
            for m in found.ranking
        ]
        return MenuChoice(
            found.dish.dish_id, found.dish.food_id, found.probability, found.source, alternatives
        )

    def serving_grams(self, dish_id: str, area_px: float | None) -> Grams | None:
        """Relative to the enrolled examples' area when known, else the standard serving."""
        dish = self._dishes[dish_id]
        rel = menu_relative_grams(dish, area_px)
        if rel is not None:
            return Grams(rel.grams, rel.low, rel.high, ENROLLED)
        g = float(dish.serving_g)
        return Grams(round(g, 1), round(g * (1 - SERVING_SPREAD), 1),
                     round(g * (1 + SERVING_SPREAD), 1), MENU_SERVING)


class MenuFileError(ValueError):
    """A menu.json that cannot be used."""


def _dish_from_json(
    model: TrayModel, entry: dict[str, Any], position: int, base: Path
) -> tuple[DishInfo, MatchDish]:
    """One dish of menu.json: food_id, serving_g, optional name and example photos."""
    try:
        food_id, serving_g = str(entry["food_id"]), float(entry["serving_g"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MenuFileError(f"dish {position}: needs food_id and serving_g ({exc})") from exc
    regions = []
    for example in entry.get("examples", []):
        spec = example if isinstance(example, dict) else {"image": example}
        img = load_image(base / str(spec["image"]))
        regions.append(enrolled_region(model, img, box=spec.get("box")))
    dish_id = str(entry.get("id", f"dish{position}"))
    label = label_index_for(food_id, model.meta.food_ids)
    info = DishInfo(dish_id, food_id, entry.get("name"), serving_g, entry.get("tray_slot"),
                    label, len(regions), 0,
                    tuple(r.area_px for r in regions if r.area_from in SIZE_REFERENCES))
    examples = (np.stack([r.embedding for r in regions]) if regions
                else np.zeros((0, 0), np.float32))
    return info, MatchDish(dish_id, examples, label)


def menu_from_file(model: TrayModel, path: Path) -> CanteenMenu:
    """A menu for offline analysis: {"dishes": [{"food_id", "serving_g", "examples": [...]}]}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        dishes = data["dishes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MenuFileError(f"{path}: not a menu file ({exc})") from exc
    if not isinstance(dishes, list) or not dishes:
        raise MenuFileError(f"{path}: 'dishes' must be a non-empty list")
    built = [_dish_from_json(model, d, i, path.parent) for i, d in enumerate(dishes)]
    context = MenuContext(
        str(data.get("id", path.stem)), "offline", str(model.meta.version),
        tuple(b[0] for b in built), tuple(b[1] for b in built),
    )
    return CanteenMenu(context)
