"""Analyze in layout mode: a kiosk with a tray layout reports one item per filled compartment.

The photo's tray is registered to the kiosk's empty-tray reference (model.infer.tray); each
compartment's food is what differs from the empty tray; fill = food area / compartment area.
Model items whose centre lies off the tray are dropped (nothing off the tray is food), those
inside a compartment are absorbed by it (the compartment is the region; their embeddings
and class scores describe its food), those on the tray between compartments stay plain
items. No tray found: layout "not_found" and the plain detector's items.

Identity: the menu dish whose tray_slot is the compartment's slot, else the pipeline's
identification (enrolled examples among the menu's dishes, else the model).
Grams: depth map + kiosk scale -> volume x density; else serving_g x fill / standard_fill
(source "layout_fill"), the standard fill learned from the dish's enrolled layout items
(standard_fill) or DEFAULT_STANDARD_FILL.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from model.infer.portion import depth_volume_ml
from model.infer.runtime import Item, mask_polygon
from model.infer.tray import (
    CompartmentFill,
    FillConfig,
    TrayReference,
    WarpedLayout,
    measure_fill,
    register_tray,
    warp_compartments,
)
from serve.core.storage import ImageStore
from serve.db.tables.kiosks import KioskLayout
from serve.services.layouts import POSES, REGISTRATION, prepared_reference
from serve.services.menus import CanteenMenu, DishInfo
from serve.services.nutrients import find_food, item_nutrients
from serve.services.pipeline import (
    DEPTH,
    Alternative,
    Grams,
    Identity,
    ImageRequest,
    ItemResult,
    confidence_of,
    identify_item,
    stored_embedding,
)

if TYPE_CHECKING:
    from model.infer.runtime import Prediction, TrayModel

log = logging.getLogger("traylens")
LAYOUT_FILL = "layout_fill"  # grams source: serving x fill / standard fill
# The fill of a standard serving when no enrolment says otherwise: canteen servers fill a
# well to roughly 60% of its rim area (a heap leaves the wall and the rim free; a full well
# would spill). STANDARD_FILL_SPREAD (+-0.15) is how far that guess may be off; FILL_ERROR
# (+-0.05 absolute) is the fill measurement's error (test bed: mean 0.017, worst 0.073).
DEFAULT_STANDARD_FILL = 0.6
STANDARD_FILL_SPREAD = 0.15
FILL_ERROR = 0.05
# Learned standard fill: the median fill of the dish's enrolled examples that carry one (an
# analysed layout item enrolled as the dish, enrolments.fill), clipped to
# [MIN_STANDARD_FILL, 1]. Its spread shrinks with the examples backing it: the default's
# relative spread (0.15 / 0.6 = 25%) over sqrt(n), at least FILL_ERROR (the fill
# measurement's own error) and at most half the standard (the range stays finite).
MIN_STANDARD_FILL = 0.1
DEPTH_SPREAD = 0.25  # volume x density: +-25% (density and the support plane)
TRAY_SLOT = "tray_slot"  # evidence: the menu dish assigned to the compartment's slot
# Fill settings for the service: 320 px is enough for compartment areas (fill error 0.011
# vs 0.008 at 640, a tenth of the time). The model's foreground is NOT combined: on the
# test bed (6 trays, 36 compartments, the development model) the difference alone gave a
# fill MAE of 0.017, "and" 0.052 (drops dishes the model misses), "or" 0.046 (adds the
# model's blobby masks); FOREGROUND says which one runs ("none" | "and" | "or").
FILL = FillConfig(work_side=320)
FOREGROUND = "none"


@dataclass(frozen=True)
class LayoutMeasure:
    """The photo's own layout work, which needs no model output: where the tray lies and what
    each compartment holds (decode px). warped None: no tray found."""

    warped: WarpedLayout | None
    fills: list[CompartmentFill]
    width: int  # the measured image's width (decode px)


@dataclass(frozen=True)
class LayoutOutcome:
    """Layout mode's answer for one photo."""

    state: str  # "registered" | "not_found"
    items: list[ItemResult]  # one per filled compartment
    plain: list[Item]  # model items left to the plain pipeline (on the tray, off compartments)


@dataclass(frozen=True)
class KioskLayoutMode:
    """The pipeline's LayoutHook for one kiosk: its prepared empty-tray reference."""

    reference: TrayReference
    kiosk_id: str = ""  # whose last pose starts the fast registration ("" : none kept)

    def measure(self, image: Image.Image) -> LayoutMeasure:
        """Register the tray and measure the compartments (the pipeline runs this while the
        model runs: it needs no model output)."""
        return measure_layout(self.reference, image, self.kiosk_id)

    def split(self, model: TrayModel, pred: Prediction, request: ImageRequest,
              foods: list[Item], top_k: int, review_below: float,
              measured: LayoutMeasure) -> LayoutOutcome:
        """Compartment items and the model items left, or not_found with all model items."""
        return analyze_layout(model, pred, request, foods, top_k, review_below, measured)


def kiosk_layout_mode(session: Session, kiosk_id: str, store: ImageStore, max_pixels: int
                      ) -> KioskLayoutMode | None:
    """Layout mode for a kiosk with a usable layout (its reference prepared once, cached)."""
    row = session.get(KioskLayout, kiosk_id)
    if row is None:
        return None
    reference = prepared_reference(row, store, max_pixels)
    if reference is None:
        log.warning("kiosk %s has a layout whose reference photo is gone or unusable: "
                    "analysing without it", kiosk_id)
        return None
    return KioskLayoutMode(reference, kiosk_id)


def _scaled(fills: list[CompartmentFill], k: float, size: tuple[int, int]
            ) -> list[tuple[CompartmentFill, np.ndarray, tuple[int, int]]]:
    """(fill, food mask crop at full px, its offset) per compartment: decode px -> photo px."""
    out = []
    for f in fills:
        x0, y0, x1, y1 = f.box
        if k == 1.0:
            out.append((f, f.mask, (x0, y0)))
            continue
        fx0, fy0 = int(np.floor(x0 * k)), int(np.floor(y0 * k))
        fx1, fy1 = min(size[0], int(np.ceil(x1 * k))), min(size[1], int(np.ceil(y1 * k)))
        mask = cv2.resize(f.mask.astype(np.uint8), (max(1, fx1 - fx0), max(1, fy1 - fy0)),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
        out.append((f, mask, (fx0, fy0)))
    return out


def _place(item: Item, tray: np.ndarray, comps: list[np.ndarray]) -> int | None:
    """-1 off the tray, the compartment index its centre lies in, else None (on the tray)."""
    cx, cy = (item.box[0] + item.box[2]) / 2, (item.box[1] + item.box[3]) / 2
    if cv2.pointPolygonTest(tray.astype(np.float32), (cx, cy), False) < 0:
        return -1
    for i, poly in enumerate(comps):
        if cv2.pointPolygonTest(poly.astype(np.float32), (cx, cy), False) >= 0:
            return i
    return None


def _mean_of(vectors: list[np.ndarray], weights: list[float], norm: bool) -> np.ndarray:
    """Area-weighted mean (L2-normalised when norm)."""
    if len(vectors) == 1:  # the usual compartment: one model item (np.average costs ~0.1 ms)
        v = np.asarray(vectors[0], np.float64)
        return v / max(float(np.linalg.norm(v)), 1e-9) if norm else v / max(float(v.sum()), 1e-9)
    v = np.average(np.stack(vectors), axis=0, weights=np.maximum(weights, 1.0))
    return v / max(float(np.linalg.norm(v)), 1e-9) if norm else v / max(float(v.sum()), 1e-9)


def _compartment_item(model: TrayModel, fill: CompartmentFill, mask: np.ndarray,
                      offset: tuple[int, int], absorbed: list[Item],
                      embedding: np.ndarray | None) -> Item:
    """A runtime Item for a compartment's food: what the pipeline's identification takes.

    No embedding (a slot dish no model item covers) gives a zero-length one, stored as None.
    """
    bx, by, bw, bh = cv2.boundingRect(mask.view(np.uint8))  # of the nonzero pixels
    box = (float(offset[0] + bx), float(offset[1] + by),
           float(offset[0] + bx + bw), float(offset[1] + by + bh))
    areas = [i.area_px for i in absorbed]
    n = len(model.meta.labels)
    scores = (_mean_of([i.class_scores for i in absorbed], areas, norm=False) if absorbed
              else np.full(n, 1.0 / n))
    if embedding is None and absorbed:
        embedding = _mean_of([i.embedding for i in absorbed], areas, norm=True)
    label = int(np.argmax(scores))
    return Item(box=box, label=model.meta.labels[label], label_index=label, score=fill.score,
                class_scores=scores, mask=mask[by:by + bh, bx:bx + bw],
                polygon=mask_polygon(mask, offset), area_px=float(mask.sum()),
                embedding=(np.asarray(embedding, np.float32) if embedding is not None
                           else np.zeros(0, np.float32)))


def _slot_dish(request: ImageRequest, slot: str) -> DishInfo | None:
    """The menu dish served in this slot, if the menu says so."""
    if isinstance(request.menu, CanteenMenu):
        return request.menu.slot_dish(slot)
    return None


def standard_fill(fills: Sequence[float]) -> tuple[float, float]:
    """(standard fill, its spread) of a dish: learned from its enrolled fills, else the default."""
    usable = [float(f) for f in fills if f is not None and np.isfinite(f) and f > 0]
    if not usable:
        return DEFAULT_STANDARD_FILL, STANDARD_FILL_SPREAD
    std = float(np.clip(np.median(usable), MIN_STANDARD_FILL, 1.0))
    relative = STANDARD_FILL_SPREAD / DEFAULT_STANDARD_FILL / np.sqrt(len(usable))
    return std, float(min(max(std * relative, FILL_ERROR), std / 2))


def _fill_grams(serving_g: float, fill: float, fills: Sequence[float] = ()) -> Grams:
    """serving x fill / standard fill, its range from the fill error and the standard's spread."""
    std, spread = standard_fill(fills)
    low = serving_g * max(0.0, fill - FILL_ERROR) / (std + spread)
    high = serving_g * (fill + FILL_ERROR) / (std - spread)
    return Grams(round(serving_g * fill / std, 1), round(low, 1), round(high, 1), LAYOUT_FILL)


def _grams(request: ImageRequest, food_id: str | None, serving_g: float | None,
           fills: Sequence[float], fill: float, mask: np.ndarray, offset: tuple[int, int],
           size: tuple[int, int]) -> Grams | None:
    """Depth + kiosk scale -> volume x density; else the fill against a standard serving."""
    food = find_food(food_id)
    density = food.density_g_per_ml if food else None
    if request.depth_mm is not None and request.px_per_cm and density:
        full = np.zeros((size[1], size[0]), bool)
        h, w = mask.shape
        full[offset[1]:offset[1] + h, offset[0]:offset[0] + w] = mask
        grams = depth_volume_ml(full, request.depth_mm, request.px_per_cm) * density
        if grams > 0:
            return Grams(round(grams, 1), round(grams * (1 - DEPTH_SPREAD), 1),
                         round(grams * (1 + DEPTH_SPREAD), 1), DEPTH)
    if serving_g is None and food is not None and food.serving_g:
        serving_g = float(food.serving_g)
    return _fill_grams(serving_g, fill, fills) if serving_g else None


def _result(model: TrayModel, item: Item, fill: CompartmentFill, request: ImageRequest,
            top_k: int, placed: tuple[np.ndarray, tuple[int, int], tuple[int, int]],
            review_below: float,
            ) -> ItemResult:
    """The compartment's ItemResult: slot dish, else the pipeline's identification."""
    dish = _slot_dish(request, fill.slot)
    if dish is not None:  # the canteen's own set-up names it: the slot's dish, for sure
        who = Identity(dish.name or dish.food_id, dish.food_id, 1.0, "menu", dish.dish_id,
                       TRAY_SLOT, [Alternative(dish.name, dish.food_id, 1.0, dish.dish_id)])
        serving: float | None = float(dish.serving_g)
        fills: Sequence[float] = dish.fills
    else:
        who = identify_item(model, item, request.menu, top_k)
        info = (request.menu.dish(who.dish_id)
                if isinstance(request.menu, CanteenMenu) and who.dish_id else None)
        serving = float(info.serving_g) if info else None
        fills = info.fills if info else ()
    food_id, confidence = who.food_id, confidence_of(fill.score, who.probability)
    grams = _grams(request, food_id, serving, fills, fill.fill, *placed)
    food = find_food(food_id)
    return ItemResult(
        label=who.label, label_index=item.label_index, food_id=food_id,
        name_ko=food.name_ko if food else None, name_en=food.name_en if food else None,
        confidence=round(confidence, 4), detection_score=round(fill.score, 4),
        identified_by=who.identified_by, menu_dish_id=who.dish_id,
        alternatives=who.alternatives, evidence=who.evidence,
        box=[round(v, 1) for v in item.box],
        polygon=[[float(x), float(y)] for x, y in (item.polygon or [])],
        area_px=item.area_px, area_cm2=(round(item.area_px / request.px_per_cm**2, 2)
                                        if request.px_per_cm else None),
        grams=grams, nutrients=item_nutrients(food_id, grams.value if grams else None),
        needs_review=who.probability is None or confidence < review_below, tray_slot=fill.slot,
        fill=round(fill.fill, 4),
        embedding=stored_embedding(item.embedding) if item.embedding.size else None)


def measure_layout(reference: TrayReference, image: Image.Image, kiosk_id: str = ""
                   ) -> LayoutMeasure:
    """Register the photo's tray to the reference and measure each compartment's food."""
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    size_px = (rgb.shape[1], rgb.shape[0])
    hint = POSES.get(kiosk_id, reference, size_px) if kiosk_id else None
    reg = register_tray(reference, rgb, REGISTRATION, hint=hint)
    if not reg.found:
        return LayoutMeasure(None, [], size_px[0])
    if kiosk_id and reg.homography is not None:
        POSES.put(kiosk_id, reference, reg.homography, size_px)
    warped = warp_compartments(reference.layout, reg)
    return LayoutMeasure(warped, measure_fill(reference, rgb, reg, None, FILL, warped),
                         size_px[0])


def analyze_layout(model: TrayModel, pred: Prediction, request: ImageRequest,
                   foods: list[Item], top_k: int, review_below: float,
                   measured: LayoutMeasure) -> LayoutOutcome:
    """Turn the measured compartments and the model's items into the photo's items."""
    if measured.warped is None:
        return LayoutOutcome("not_found", [], foods)
    size = (pred.width, pred.height)
    k = pred.width / measured.width  # a reduced decode: its px -> the photo's px
    tray = measured.warped.tray_polygon * k
    comps = [c.polygon * k for c in measured.warped.compartments]
    absorbed: list[list[Item]] = [[] for _ in comps]
    plain = []
    for item in foods:
        where = _place(item, tray, comps)
        if where is None:
            plain.append(item)
        elif where >= 0:
            absorbed[where].append(item)
    full = [(i, f, m, o) for i, (f, m, o) in enumerate(_scaled(measured.fills, k, size))
            if not f.empty and m.any()]
    # An extra model run embeds compartments no model item covers, only where identity needs
    # it (no slot dish): it would cost as much as the detector's own run.
    missing = [(i, m, o) for i, f, m, o in full
               if not absorbed[i] and _slot_dish(request, f.slot) is None]
    embedded = dict(zip([i for i, _, _ in missing], _embed_masks(model, request, missing, size),
                        strict=True))
    items = []
    for i, f, m, o in full:
        item = _compartment_item(model, f, m, o, absorbed[i], embedded.get(i))
        items.append(_result(model, item, f, request, top_k, (m, o, size), review_below))
    return LayoutOutcome("registered", items, plain)


def _embed_masks(model: TrayModel, request: ImageRequest,
                 missing: list[tuple[int, np.ndarray, tuple[int, int]]],
                 size: tuple[int, int]) -> list[np.ndarray]:
    """Embeddings of compartments no model item covers: one extra model run for all."""
    if not missing:
        return []
    masks = []
    for _, m, (x0, y0) in missing:
        full = np.zeros((size[1], size[0]), bool)
        h, w = m.shape
        full[y0:y0 + h, x0:x0 + w] = m[: size[1] - y0, : size[0] - x0]
        masks.append(full)
    return list(model.embed_regions(request.image, masks=masks))
