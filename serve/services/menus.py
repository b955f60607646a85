"""Menus: identify each detected item among a menu's dishes and size it against the dish's
enrolled examples when no physical scale is known; the menus, dishes and enrolments that
admins and kiosk keys write.

The ranking itself is model.infer.menu_match (one matcher for the service and the
evaluator); this module turns stored menus (or a menu.json file) and enrolments into its
input and its output into dish answers for the pipeline (CanteenMenu is its MenuHook).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from model.infer.enrolment import EnrolledRegion, size_references
from model.infer.images import load_image
from model.infer.menu_match import Decision, DishMatch, MatchConfig, decide, rank_menu
from model.infer.menu_match import Dish as MatchDish
from model.infer.refine import MODEL_MASKS, mask_kind
from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found, unprocessable
from serve.core.storage import ImageStore
from serve.db.access import load_canteen, load_item
from serve.db.tables.core import Role
from serve.db.tables.menus import Enrolment, Menu, MenuDish
from serve.schemas.menus import DishCreate, MenuCreate
from serve.services.common import unique_write
from serve.services.enrolment import enrol, enrol_item, measure_region, refresh_enrolments
from serve.services.nutrients import find_food, require_food
from serve.services.pipeline import (
    ENROLLED,
    MENU_SERVING,
    Alternative,
    Grams,
    MenuChoice,
    serving_band,
)

if TYPE_CHECKING:
    from model.infer.runtime import TrayModel
    from serve.services.model_registry import LoadedModel

# Said in each item's provenance when its grams come from the enrolled serving.
RELATIVE_GRAMS_SOURCE = "relative_to_enrolled_serving"


@dataclass(frozen=True)
class DishInfo:
    """What analyze needs to know about one menu dish."""

    dish_id: str
    food_id: str
    name: str | None
    serving_g: float
    tray_slot: str | None
    label_index: int | None  # the model class that names this food, if any
    enrolled: int  # examples embedded by the current model
    stale: int  # examples embedded by another model version (not used until re-embedded)
    # Enrolled example areas comparable with the analysis's items (size_references of its
    # masks): the reference for relative grams.
    area_px: tuple[float, ...]
    # Fills of enrolled layout items (food / compartment area): layout mode's standard fill.
    fills: tuple[float, ...] = ()


@dataclass(frozen=True)
class MenuContext:
    """A menu ready for identification under one model version, its dishes' size references
    for items measured on `masks`."""

    menu_id: str
    canteen_id: str
    model_version: str
    dishes: tuple[DishInfo, ...]
    match_dishes: tuple[MatchDish, ...]
    masks: str = MODEL_MASKS  # model.infer.refine.mask_kind: what DishInfo.area_px sizes


@dataclass(frozen=True)
class Identification:
    """The top-ranked dish for one item, the ranking, and whether its evidence names it."""

    dish: DishInfo  # ranked first (the ranking is closed-set: some dish always is)
    probability: float
    similarity: float | None
    source: str
    ranking: tuple[DishMatch, ...]
    decision: Decision  # dish_id None: not enough evidence, the item is unidentified

    @property
    def named(self) -> DishInfo | None:
        """The dish the evidence names, or None (unidentified; never the first by default)."""
        return self.dish if self.decision.dish_id is not None else None


@dataclass(frozen=True)
class RelativeGrams:
    """Grams from the item's area against the enrolled examples' areas x standard serving."""

    grams: float
    low: float
    high: float
    source: str = RELATIVE_GRAMS_SOURCE


def label_index_for(food_id: str, model_food_ids: Sequence[str | None]) -> int | None:
    """The first model class mapped to this food id (the class-score fallback), or None."""
    for index, fid in enumerate(model_food_ids):
        if fid == food_id:
            return index
    return None


def _dish_info(dish: MenuDish, model_food_ids: Sequence[str | None], model_version: str,
               masks: str) -> tuple[DishInfo, MatchDish]:
    """One stored dish as DishInfo plus menu_match input (current-model embeddings only;
    areas only where measured as items on `masks` are)."""
    current = [e for e in dish.enrolments if e.model_version == model_version]
    label = label_index_for(dish.food_id, model_food_ids)
    references = size_references(masks)
    info = DishInfo(dish.id, dish.food_id, dish.name, dish.serving_g, dish.tray_slot, label,
                    len(current), len(dish.enrolments) - len(current),
                    tuple(e.area_px for e in current if e.area_from in references),
                    tuple(e.fill for e in dish.enrolments if e.fill is not None))
    examples = (np.asarray([e.embedding for e in current], dtype=np.float32) if current
                else np.zeros((0, 0), np.float32))
    return info, MatchDish(dish.id, examples, label)


def menu_context(menu: Menu, *, model_food_ids: Sequence[str | None], model_version: str,
                 masks: str) -> MenuContext:
    """Build the identification context of a stored menu for the given model and for items
    measured on `masks` (model.infer.refine.mask_kind: the analysis's)."""
    if not menu.dishes:
        raise unprocessable(f"menu {menu.id} has no dishes yet: add dishes before analysing "
                            "with it", code="menu_empty")
    built = [_dish_info(d, model_food_ids, model_version, masks) for d in menu.dishes]
    return MenuContext(menu.id, menu.canteen_id, model_version,
                       tuple(b[0] for b in built), tuple(b[1] for b in built), masks)


def get_menu(session: Session, menu_id: str, principal: Principal) -> Menu:
    """A menu the caller may see; 404 for unknown ids and other tenants' menus alike."""
    menu = session.get(Menu, menu_id)
    if menu is None or not principal.can_see_canteen(menu.canteen_id):
        raise not_found("menu", menu_id)
    return menu


def identify(ctx: MenuContext, embedding: Sequence[float] | np.ndarray | None,
             class_scores: Sequence[float] | np.ndarray | None,
             config: MatchConfig | None = None) -> Identification:
    """Rank the menu's dishes for one item (enrolled embeddings, else the model's classes),
    then name the first only on its own evidence (menu_match.decide)."""
    ranking = rank_menu(embedding, class_scores, ctx.match_dishes, config)
    best = ranking[0]
    dish = next(d for d in ctx.dishes if d.dish_id == best.dish_id)
    decision = decide(ranking, class_scores, ctx.match_dishes, config)
    return Identification(dish, best.probability, best.similarity, best.source, tuple(ranking),
                          decision)


def relative_grams(dish: DishInfo, area_px: float | None) -> RelativeGrams | None:
    """Item area / enrolled area x standard serving; the range spans the enrolled examples.

    Only meaningful when the item and the examples were shot from the same camera geometry
    (a kiosk's own enrolment photos), which is why this is the last resort for a scale.
    """
    if area_px is None or area_px <= 0 or not dish.area_px:
        return None
    areas = np.asarray(dish.area_px, dtype=np.float64)
    ratio = area_px / areas
    return RelativeGrams(grams=round(float(dish.serving_g * area_px / areas.mean()), 1),
                         low=round(float(dish.serving_g * ratio.min()), 1),
                         high=round(float(dish.serving_g * ratio.max()), 1))


def load_menu_context(session: Session, principal: Principal, menu_id: str,
                      loaded: LoadedModel, store: ImageStore, max_pixels: int, *,
                      refine: bool) -> MenuContext:
    """What /v1/analyze calls for `menu_id`: the visible menu, enrolments brought up to the
    active model and to the masks `refine` (settings.refine_masks) gives the analysis, ready
    for identify() (call inside a transaction: it may re-embed)."""
    menu = get_menu(session, menu_id, principal)
    refresh_enrolments(session, menu, loaded, store, max_pixels, refine=refine)
    return menu_context(menu, model_food_ids=loaded.model.meta.food_ids,
                        model_version=loaded.version, masks=mask_kind(refine))


class CanteenMenu:
    """Identifies items among a menu's dishes and sizes them against the dish's serving."""

    def __init__(self, context: MenuContext) -> None:
        self.context = context
        self._dishes = {d.dish_id: d for d in context.dishes}

    def identify(self, embedding: np.ndarray, class_scores: np.ndarray) -> MenuChoice:
        """The dish its evidence names (or none: unidentified) and every dish ranked."""
        found = identify(self.context, embedding, class_scores)
        alternatives = [
            Alternative(
                label=self._dishes[m.dish_id].name, food_id=self._dishes[m.dish_id].food_id,
                score=round(m.probability, 4), dish_id=m.dish_id,
            )
            for m in found.ranking
        ]
        named = found.named
        if named is None:
            return MenuChoice(None, None, None, 0.0, "none", alternatives)
        return MenuChoice(named.dish_id, named.food_id, named.name, found.probability,
                          found.decision.evidence, alternatives)

    def dish(self, dish_id: str) -> DishInfo | None:
        """One dish of the menu."""
        return self._dishes.get(dish_id)

    def slot_dish(self, slot: str) -> DishInfo | None:
        """The dish served in a tray slot (layout mode), if the menu names one."""
        return next((d for d in self.context.dishes if d.tray_slot == slot), None)

    def serving_grams(self, dish_id: str, area_px: float | None) -> Grams | None:
        """Relative to the enrolled examples' area when known, else the standard serving."""
        dish = self._dishes[dish_id]
        rel = relative_grams(dish, area_px)
        if rel is not None:
            return Grams(rel.grams, rel.low, rel.high, ENROLLED)
        return serving_band(float(dish.serving_g), MENU_SERVING)


class MenuFileError(ValueError):
    """A menu.json that cannot be used."""


def _dish_from_json(
    model: TrayModel, entry: dict[str, Any], position: int, base: Path, refine: bool
) -> tuple[DishInfo, MatchDish]:
    """One dish of menu.json: food_id, serving_g, optional name and example photos (measured
    on refined masks when `refine`, as the analysis will measure its items)."""
    try:
        food_id, serving_g = str(entry["food_id"]), float(entry["serving_g"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MenuFileError(f"dish {position}: needs food_id and serving_g ({exc})") from exc
    regions = []
    for example in entry.get("examples", []):
        spec = example if isinstance(example, dict) else {"image": example}
        img = load_image(base / str(spec["image"]))
        regions.append(measure_region(model, img, box=spec.get("box"), refine=refine))
    dish_id = str(entry.get("id", f"dish{position}"))
    label = label_index_for(food_id, model.meta.food_ids)
    return offline_dish(dish_id, food_id, entry.get("name"), serving_g, regions, label=label,
                        tray_slot=entry.get("tray_slot"), masks=mask_kind(refine))


def offline_dish(dish_id: str, food_id: str, name: str | None, serving_g: float,
                 regions: Sequence[EnrolledRegion], *, label: int | None,
                 tray_slot: str | None = None,
                 masks: str = MODEL_MASKS) -> tuple[DishInfo, MatchDish]:
    """A dish held in memory (menu.json, benchmarks) with its enrolled regions; areas size
    items measured on `masks` only where measured the same way (size_references)."""
    food = find_food(food_id)
    references = size_references(masks)
    info = DishInfo(dish_id, food_id, name or (food.name if food else None), serving_g,
                    tray_slot, label, len(regions), 0,
                    tuple(r.area_px for r in regions if r.area_from in references))
    examples = (np.stack([r.embedding for r in regions]) if regions
                else np.zeros((0, 0), np.float32))
    return info, MatchDish(dish_id, examples, label)


def menu_from_file(model: TrayModel, path: Path, *, refine: bool = False) -> CanteenMenu:
    """A menu for offline analysis: {"dishes": [{"food_id", "serving_g", "examples": [...]}]};
    `refine`: the analysis will refine its masks (settings.refine_masks), so the examples'
    areas are measured on refined masks too."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        dishes = data["dishes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MenuFileError(f"{path}: not a menu file ({exc})") from exc
    if not isinstance(dishes, list) or not dishes:
        raise MenuFileError(f"{path}: 'dishes' must be a non-empty list")
    built = [_dish_from_json(model, d, i, path.parent, refine) for i, d in enumerate(dishes)]
    context = MenuContext(
        str(data.get("id", path.stem)), "offline", str(model.meta.version),
        tuple(b[0] for b in built), tuple(b[1] for b in built), mask_kind(refine),
    )
    return CanteenMenu(context)


# --- the menus, dishes and enrolments clients write ------------------------------------


def writable_menu(session: Session, principal: Principal, menu_id: str) -> Menu:
    """A menu the caller may change: admins and the canteen's kiosk keys."""
    principal.require_role(Role.KIOSK)
    return get_menu(session, menu_id, principal)


def _new_dish(menu: Menu, body: DishCreate, position: int) -> MenuDish:
    """A dish row; the food must exist and a serving must be known or given."""
    food = require_food(body.food_id)
    serving = body.serving_g or food.serving_g
    if serving is None or serving <= 0:
        raise unprocessable(f"food {food.food_id} has no typical serving: give serving_g",
                            code="serving_required")
    return MenuDish(menu_id=menu.id, position=position, food_id=food.food_id,
                    name=body.name or food.name, serving_g=float(serving),
                    tray_slot=body.tray_slot)


def create_menu(session: Session, principal: Principal, body: MenuCreate) -> Menu:
    """A new menu with its dishes (409 if the canteen's meal already has one)."""
    principal.require_role(Role.KIOSK)
    canteen_id = principal.tenant_for_write(body.canteen_id)

    def write(session: Session) -> Menu:
        """The menu row, then its dishes (they need its id)."""
        load_canteen(session, principal, canteen_id)
        menu = Menu(canteen_id=canteen_id, date=body.date, meal=body.meal.value, name=body.name)
        session.add(menu)
        session.flush()
        for n, dish in enumerate(body.dishes):
            session.add(_new_dish(menu, dish, n))
        session.flush()
        session.refresh(menu)
        return menu

    return unique_write(session, write, ApiError(
        409, "duplicate_menu",
        f"canteen {canteen_id} already has a {body.meal.value} menu on {body.date}"))


def list_menus(session: Session, principal: Principal, *, date: Any, meal: str | None,
               canteen_id: str | None) -> list[Menu]:
    """The menus the caller may see, filtered by date, meal and (admins) canteen."""
    query = select(Menu).order_by(Menu.date, Menu.meal, Menu.id)
    if not principal.is_admin:
        query = query.where(Menu.canteen_id == principal.canteen_id)
    elif canteen_id is not None:
        query = query.where(Menu.canteen_id == canteen_id)
    if date is not None:
        query = query.where(Menu.date == date)
    if meal is not None:
        query = query.where(Menu.meal == meal)
    return list(session.scalars(query))


def add_dish(session: Session, principal: Principal, menu_id: str, body: DishCreate) -> MenuDish:
    """A new dish at the end of the menu."""
    menu = writable_menu(session, principal, menu_id)
    last = session.scalar(select(func.max(MenuDish.position)).where(MenuDish.menu_id == menu.id))
    dish = _new_dish(menu, body, 0 if last is None else last + 1)
    session.add(dish)
    session.flush()
    session.refresh(dish)
    return dish


def dish_of(menu: Menu, dish_id: str) -> MenuDish:
    """A dish of this menu; 404 otherwise."""
    dish = next((d for d in menu.dishes if d.id == dish_id), None)
    if dish is None:
        raise not_found("dish", dish_id)
    return dish


def add_enrolment(session: Session, principal: Principal, menu_id: str, dish_id: str, *,
                  loaded: LoadedModel, store: ImageStore, photo: bytes,
                  box: Sequence[float] | None, mask: bytes | None,
                  max_pixels: int, refine: bool) -> Enrolment:
    """Enrol an example photo of a writable menu's dish, measured on the masks analyses use
    (`refine`: settings.refine_masks)."""
    dish = dish_of(writable_menu(session, principal, menu_id), dish_id)
    row, _ = enrol(session, dish=dish, loaded=loaded, store=store, photo=photo, box=box,
                   mask=mask, max_pixels=max_pixels, refine=refine)
    return row


def enrol_from_item(session: Session, principal: Principal, menu_id: str, dish_id: str, *,
                    analysis_id: str, item_id: str, loaded: LoadedModel, store: ImageStore,
                    max_pixels: int) -> tuple[Enrolment, bool]:
    """Enrol an analysed item of the menu's own canteen as an example of the dish; 404 for
    anything the caller may not see or another canteen's analysis."""
    dish = dish_of(writable_menu(session, principal, menu_id), dish_id)
    item = load_item(session, principal, analysis_id, item_id)
    if item.analysis.canteen_id != dish.menu.canteen_id:
        raise not_found("analysis", analysis_id)
    return enrol_item(session, dish=dish, analysis=item.analysis, item=item, loaded=loaded,
                      store=store, max_pixels=max_pixels)


def delete_enrolment(session: Session, principal: Principal, menu_id: str, dish_id: str,
                     enrolment_id: str) -> None:
    """Remove one enrolled example."""
    dish = dish_of(writable_menu(session, principal, menu_id), dish_id)
    row = next((e for e in dish.enrolments if e.id == enrolment_id), None)
    if row is None:
        raise not_found("enrolment", enrolment_id)
    session.delete(row)
