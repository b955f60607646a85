"""Menu mode: identify each detected item among a menu's dishes and size it against the dish's
enrolled examples when no physical scale is known.

The ranking itself is model.infer.menu_match (one matcher for the service and the evaluator); this
module turns stored menus and enrolments into its input and its output into dish answers.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from model.infer.geometry import pair_iou
from model.infer.menu_match import Dish as MatchDish
from model.infer.menu_match import DishMatch, MatchConfig, rank_menu
from serve.core.auth import Principal
from serve.core.errors import not_found, unprocessable
from serve.core.storage import ImageStore, record_image
from serve.core.uploads import decode_photo
from serve.db.tables.menus import Enrolment, Menu, MenuDish, RegionKind

if TYPE_CHECKING:
    from model.infer.runtime import TrayModel
    from serve.model_registry import LoadedModel

# Said in each item's provenance when its grams come from the enrolled serving.
RELATIVE_GRAMS_SOURCE = "relative_to_enrolled_serving"
# How an enrolment's area was measured, best first. A whole-photo area (nothing found to
# measure) is no food's area, so it never serves as the reference for relative grams.
AREA_SOURCES = ("mask", "model_mask", "box", "image")
SIZE_REFERENCES = frozenset(AREA_SOURCES[:3])


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
    area_px: tuple[float, ...]  # enrolled example areas: the reference for relative grams


@dataclass(frozen=True)
class MenuContext:
    """A menu ready for identification under one model version."""

    menu_id: str
    canteen_id: str
    model_version: str
    dishes: tuple[DishInfo, ...]
    match_dishes: tuple[MatchDish, ...]


@dataclass(frozen=True)
class Identification:
    """The chosen dish for one item, with the ranked alternatives and the evidence used."""

    dish: DishInfo
    probability: float
    similarity: float | None
    source: str
    ranking: tuple[DishMatch, ...]


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


def _dish_info(dish: MenuDish, model_food_ids: Sequence[str | None],
               model_version: str) -> tuple[DishInfo, MatchDish]:
    """One stored dish as DishInfo plus menu_match input (current-model embeddings only)."""
    current = [e for e in dish.enrolments if e.model_version == model_version]
    label = label_index_for(dish.food_id, model_food_ids)
    info = DishInfo(dish.id, dish.food_id, dish.name, dish.serving_g, dish.tray_slot, label,
                    len(current), len(dish.enrolments) - len(current),
                    tuple(e.area_px for e in current if e.area_from in SIZE_REFERENCES))
    examples = (np.asarray([e.embedding for e in current], dtype=np.float32) if current
                else np.zeros((0, 0), np.float32))
    return info, MatchDish(dish.id, examples, label)


def menu_context(menu: Menu, *, model_food_ids: Sequence[str | None],
                 model_version: str) -> MenuContext:
    """Build the identification context of a stored menu for the given model."""
    if not menu.dishes:
        raise unprocessable(f"menu {menu.id} has no dishes yet: add dishes before analysing "
                            "with it", code="menu_empty")
    built = [_dish_info(d, model_food_ids, model_version) for d in menu.dishes]
    return MenuContext(menu.id, menu.canteen_id, model_version,
                       tuple(b[0] for b in built), tuple(b[1] for b in built))


def get_menu(session: Session, menu_id: str, principal: Principal) -> Menu:
    """A menu the caller may see; 404 for unknown ids and other tenants' menus alike."""
    menu = session.get(Menu, menu_id)
    if menu is None or not principal.can_see_canteen(menu.canteen_id):
        raise not_found("menu", menu_id)
    return menu


def identify(ctx: MenuContext, embedding: Sequence[float] | np.ndarray | None,
             class_scores: Sequence[float] | np.ndarray | None,
             config: MatchConfig | None = None) -> Identification:
    """Rank the menu's dishes for one item (enrolled embeddings, else the model's classes)."""
    ranking = rank_menu(embedding, class_scores, ctx.match_dishes, config)
    best = ranking[0]
    dish = next(d for d in ctx.dishes if d.dish_id == best.dish_id)
    return Identification(dish, best.probability, best.similarity, best.source, tuple(ranking))


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


@dataclass(frozen=True)
class EnrolledRegion:
    """An enrolment photo's embedding and the food area it shows (pixels)."""

    embedding: np.ndarray
    area_px: float
    area_from: str  # one of AREA_SOURCES: how area_px was measured


def check_box(box: Sequence[float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A (x0, y0, x1, y1) pixel box inside the image with positive area, else a 422."""
    if len(box) != 4 or not all(np.isfinite(v) for v in box):
        raise unprocessable(f"box must be 4 finite numbers x0,y0,x1,y1; got {list(box)}",
                            code="invalid_box")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]):
        raise unprocessable(f"box {list(box)} must lie inside the {size[0]}x{size[1]} image "
                            "with x0 < x1 and y0 < y1", code="invalid_box")
    return x0, y0, x1, y1


def _model_area(model: TrayModel, img: Image.Image,
                box: tuple[float, float, float, float] | None) -> float | None:
    """Area of the model's own mask for the food in the box (or the largest food), if found.

    The same model measures analysed items, so its mask area is the comparable reference.
    """
    items = [i for i in model.predict([img])[0].items
             if i.area_px > 0 and model.meta.food_ids[i.label_index] is not None]
    if box is not None:
        items = [i for i in items if pair_iou(i.box, box) >= 0.5]
        items.sort(key=lambda i: -pair_iou(i.box, box))
    else:
        items.sort(key=lambda i: -i.area_px)
    return float(items[0].area_px) if items else None


def enrolled_region(model: TrayModel, img: Image.Image, *,
                    box: Sequence[float] | None = None,
                    mask: np.ndarray | None = None) -> EnrolledRegion:
    """Embed a dish's example photo (whole image, a box or a mask) and measure its area."""
    if box is not None and mask is not None:
        raise unprocessable("give a box or a mask, not both", code="invalid_region")
    if mask is not None:
        mask = np.asarray(mask) > 0
        if mask.shape != (img.height, img.width):
            raise unprocessable(f"mask is {mask.shape[1]}x{mask.shape[0]}, the image "
                                f"{img.width}x{img.height}: they must match", code="invalid_mask")
        if not mask.any():
            raise unprocessable("the mask is empty: mark the dish's pixels", code="invalid_mask")
        return EnrolledRegion(model.embed_enrolment(img, masks=[mask])[0], float(mask.sum()),
                              "mask")
    checked = check_box(box, img.size) if box is not None else None
    emb = model.embed_enrolment(img, boxes=[checked] if checked is not None else None)[0]
    area = _model_area(model, img, checked)
    if area is not None:
        return EnrolledRegion(emb, area, "model_mask")
    if checked is not None:
        return EnrolledRegion(emb, (checked[2] - checked[0]) * (checked[3] - checked[1]), "box")
    return EnrolledRegion(emb, float(img.width * img.height), "image")


def parse_box(text: str) -> list[float]:
    """A box form field: "x0,y0,x1,y1" or a JSON list of four numbers."""
    parts = text.strip().strip("[]").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError as exc:
        raise unprocessable(f"box must be four numbers x0,y0,x1,y1; got {text!r}",
                            code="invalid_box") from exc
    if len(values) != 4:
        raise unprocessable(f"box must be four numbers x0,y0,x1,y1; got {text!r}",
                            code="invalid_box")
    return values


def mask_array(img: Image.Image) -> np.ndarray:
    """Any non-black pixel of a mask image marks the dish."""
    return np.asarray(img).max(axis=2) > 0


def store_photo(session: Session, store: ImageStore, data: bytes, kind: str,
                max_pixels: int) -> tuple[str, Image.Image]:
    """Decode an enrolment photo or mask (JPEG/PNG/WebP, 4xx otherwise), keep it
    content-addressed and record it; returns its hash and the upright RGB image."""
    img, content_type = decode_photo(data, max_pixels)
    digest = store.put(data)
    record_image(session, sha256=digest, kind=kind, content_type=content_type,
                 size_bytes=len(data), width=img.width, height=img.height)
    return digest, img


def enrol(session: Session, *, dish: MenuDish, loaded: LoadedModel, store: ImageStore,
          photo: bytes, box: Sequence[float] | None, mask: bytes | None,
          max_pixels: int) -> tuple[Enrolment, EnrolledRegion]:
    """Embed and store one example photo of a dish (whole image, box or mask)."""
    photo_sha, img = store_photo(session, store, photo, "photo", max_pixels)
    mask_sha, mask_img = (store_photo(session, store, mask, "mask", max_pixels)
                          if mask is not None else (None, None))
    region = enrolled_region(loaded.model, img, box=box,
                             mask=mask_array(mask_img) if mask_img is not None else None)
    kind = (RegionKind.MASK if mask is not None
            else RegionKind.BOX if box is not None else RegionKind.IMAGE)
    row = Enrolment(dish_id=dish.id, image_sha256=photo_sha, mask_sha256=mask_sha,
                    region=kind.value, box=list(box) if box is not None else None,
                    area_px=region.area_px, area_from=region.area_from,
                    embedding=[float(v) for v in region.embedding],
                    model_version=loaded.version)
    session.add(row)
    session.flush()
    return row, region


@dataclass(frozen=True)
class Refresh:
    """What re-embedding a menu's enrolments did."""

    re_embedded: int
    left_stale: int  # their photo was purged by retention: unused until enrolled again
    model_version: str


def refresh_enrolments(session: Session, menu: Menu, loaded: LoadedModel, store: ImageStore,
                       max_pixels: int) -> Refresh:
    """Re-embed enrolments made with another model version from their stored photos."""
    done = left = 0
    for row in (e for d in menu.dishes for e in d.enrolments
                if e.model_version != loaded.version):
        photo = store.get(row.image_sha256)
        mask = store.get(row.mask_sha256) if row.mask_sha256 else None
        if photo is None or (row.mask_sha256 and mask is None):
            left += 1
            continue
        img = decode_photo(photo, max_pixels)[0]
        mask_arr = mask_array(decode_photo(mask, max_pixels)[0]) if mask else None
        region = enrolled_region(loaded.model, img, box=row.box, mask=mask_arr)
        row.embedding = [float(v) for v in region.embedding]
        row.area_px, row.area_from = region.area_px, region.area_from
        row.model_version = loaded.version
        done += 1
    session.flush()
    return Refresh(done, left, loaded.version)


def load_menu_context(session: Session, principal: Principal, menu_id: str,
                      loaded: LoadedModel, store: ImageStore, max_pixels: int) -> MenuContext:
    """What /v1/analyze calls for `menu_id`: the visible menu, enrolments brought up to the
    active model, ready for identify() (call inside a transaction: it may re-embed)."""
    menu = get_menu(session, menu_id, principal)
    refresh_enrolments(session, menu, loaded, store, max_pixels)
    return menu_context(menu, model_food_ids=loaded.model.meta.food_ids,
                        model_version=loaded.version)
