"""The one analysis pipeline: photos in, identified items with grams and nutrients out.

Used by POST /v1/analyze, /v1/analyze/batch and `python -m serve analyze` alike. Grams come
from the best scale available, in this order, and each item says which one it used:
depth map > kiosk calibration (px/cm) > a reference object the model found (coin) >
relative to the menu's enrolled serving > the menu's standard serving > the database's
typical serving.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from model.infer.menu_match import UNIDENTIFIED, MatchConfig
from model.infer.portion import COIN_LABEL
from model.infer.refine import MODEL_MASKS, mask_kind
from model.infer.runtime import PostConfig
from serve.core.settings import DEFAULT_REVIEW_BELOW
from serve.services.nutrients import find_food, item_nutrients, meal_totals

if TYPE_CHECKING:
    from model.infer.runtime import Item, Prediction, TrayModel

# Scale sources, best first (the order of the module docstring).
DEPTH = "depth"
KIOSK = "kiosk_calibration"
REFERENCE = "reference_object"
ENROLLED = "enrolled_serving"
MENU_SERVING = "menu_serving"
TYPICAL = "typical_serving"
# A serving default is not a measurement: its range says so with a wide +/-50 % band.
SERVING_SPREAD = 0.5
# Layout work (OpenCV: tray registration, fills) runs on these threads while ONNX Runtime
# runs the model on its own; the model runs in flight per worker (settings.
# inference_concurrency) bound what is queued here; one thread per core is all it can use.
_LAYOUT_THREADS = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                     thread_name_prefix="layout")


@dataclass(frozen=True)
class Grams:
    """An amount with its range and the source of its scale."""

    value: float
    low: float
    high: float
    source: str


@dataclass(frozen=True)
class Alternative:
    """A runner-up identity for an item."""

    label: str | None
    food_id: str | None
    score: float
    dish_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (dataclasses.asdict: ~5 us against ~0.1 us, for every alternative)."""
        return {"label": self.label, "food_id": self.food_id, "score": self.score,
                "dish_id": self.dish_id}


@dataclass(frozen=True)
class MenuChoice:
    """The menu dish named for an item (dish_id None: unidentified), with every dish ranked."""

    dish_id: str | None
    food_id: str | None
    name: str | None  # the dish's own name (the menu's language)
    probability: float  # the named dish's probability over the menu (0 when unidentified)
    evidence: str  # "embedding" | "class_scores" | "none"
    alternatives: list[Alternative]


class MenuHook(Protocol):
    """What the pipeline needs from a menu (serve.services.menus.CanteenMenu)."""

    def identify(self, embedding: np.ndarray, class_scores: np.ndarray) -> MenuChoice:
        """Name the menu dish for one item, or none when the evidence is too weak."""
        ...

    def serving_grams(self, dish_id: str, area_px: float | None) -> Grams | None:
        """Grams relative to the dish's enrolled serving, else its standard serving."""
        ...


class LayoutOutcomeLike(Protocol):
    """What a layout mode answers for one photo (serve.services.layout_mode.LayoutOutcome)."""

    @property
    def state(self) -> str:
        """"registered" | "not_found"."""
        ...

    @property
    def items(self) -> list[ItemResult]:
        """One per filled compartment."""
        ...

    @property
    def plain(self) -> list[Item]:
        """Model items left to the plain pipeline."""
        ...


class LayoutHook(Protocol):
    """A kiosk's tray layout (serve.services.layout_mode.KioskLayoutMode)."""

    def measure(self, image: Image.Image) -> Any:
        """The photo's own layout work (tray registration, compartment fills): it needs no
        model output, so analyze() runs it while the model runs."""
        ...

    def split(self, model: TrayModel, pred: Prediction, request: ImageRequest,
              foods: list[Item], top_k: int, review_below: float,
              measured: Any) -> LayoutOutcomeLike:
        """Compartment items (from measure's answer) and the model items left to the plain
        pipeline."""
        ...


@dataclass(frozen=True)
class ImageRequest:
    """One photo with the optional context that sharpens its analysis."""

    image: Image.Image
    px_per_cm: float | None = None  # from the kiosk's calibration
    depth_mm: np.ndarray | None = None  # (H, W) camera distance in mm
    menu: MenuHook | None = None
    layout: LayoutHook | None = None  # the kiosk's tray layout: layout mode


@dataclass
class ItemResult:
    """One food on the tray, every number with its provenance."""

    label: str
    label_index: int
    food_id: str | None
    name_ko: str | None
    name_en: str | None
    confidence: float
    detection_score: float
    identified_by: str  # "model" | "menu"
    menu_dish_id: str | None
    alternatives: list[Alternative]
    box: list[float]
    polygon: list[list[float]]
    area_px: float
    area_cm2: float | None
    grams: Grams | None
    nutrients: dict[str, float | None] | None
    needs_review: bool = False
    tray_slot: str | None = None  # layout mode: the compartment this item fills
    fill: float | None = None  # layout mode: food area / compartment area
    embedding: list[float] | None = None  # stored for before/after pairing by appearance
    evidence: str | None = None  # what named it: class_scores | embedding | tray_slot | none
    container: str | None = None  # what its box shows: "food" | "empty" | None (Item.container)


@dataclass
class ImageResult:
    """The analysis of one photo."""

    width: int
    height: int
    items: list[ItemResult]
    totals: dict[str, Any]
    scale_source: str | None
    px_per_cm: float | None
    model_version: str
    layout: str | None = None  # "registered" | "not_found" | None (the kiosk has no layout)
    masks: str = MODEL_MASKS  # model.infer.refine.mask_kind: what its areas were measured on

    @property
    def no_food_found(self) -> bool:
        """The photo yields no food item: nothing found (a coin alone is a scale reference,
        not food), or in layout mode a registered tray with every compartment empty and
        nothing else on it. Its totals are zero because nothing was found."""
        return not self.items


@dataclass(frozen=True)
class BatchTiming:
    """How long one ONNX Runtime run (predict, incl. pre/post-processing) took."""

    batch_size: int
    seconds: float


def _model_alternatives(model: TrayModel, item: Item, top_k: int) -> list[Alternative]:
    """The top-k classes by probability."""
    scores = np.asarray(item.class_scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [
        Alternative(model.meta.labels[i], model.meta.food_ids[i], round(float(scores[i]), 4))
        for i in order
    ]


def _model_grams(model: TrayModel, pred: Prediction, item: Item, had_depth: bool) -> Grams | None:
    """Grams from the runtime's portion model, tagged with the scale it used."""
    if item.grams is None or item.grams_range is None:
        return None
    fit = model.calibration.get(item.label)
    used_depth = had_depth and item.volume_ml is not None and bool(fit and fit.density_g_per_ml)
    source = DEPTH if used_depth else KIOSK if pred.scale_source == "given" else REFERENCE
    low, high = item.grams_range
    return Grams(round(item.grams, 1), round(low, 1), round(high, 1), source)


def serving_band(grams: float, source: str) -> Grams:
    """A serving default (not a measurement) with its wide stated range, +/- SERVING_SPREAD."""
    return Grams(round(grams, 1), round(grams * (1 - SERVING_SPREAD), 1),
                 round(grams * (1 + SERVING_SPREAD), 1), source)


def _typical_serving(food_id: str | None) -> Grams | None:
    """The database's typical serving of the food, with a wide stated range."""
    food = find_food(food_id)
    if food is None or not food.serving_g:
        return None
    return serving_band(float(food.serving_g), TYPICAL)


@dataclass(frozen=True)
class Identity:
    """What an item is called and how sure: probability is None for an unidentified item."""

    label: str
    food_id: str | None
    probability: float | None  # of the label given that the region is food
    identified_by: str  # "model" | "menu"
    dish_id: str | None
    evidence: str  # "class_scores" | "embedding" | "none"
    alternatives: list[Alternative]


def identify_item(model: TrayModel, item: Item, menu: MenuHook | None, top_k: int) -> Identity:
    """Name one item from its own evidence, or call it unidentified (docs/API.md)."""
    if menu is not None:
        choice = menu.identify(item.embedding, item.class_scores)
        if choice.dish_id is None:  # every dish: the reviewer picks among them
            return Identity(UNIDENTIFIED, None, None, "menu", None, "none", choice.alternatives)
        return Identity(choice.name or choice.food_id or choice.dish_id, choice.food_id,
                        choice.probability, "menu", choice.dish_id, choice.evidence,
                        choice.alternatives[:top_k])
    alternatives = _model_alternatives(model, item, top_k)
    probability = float(item.class_scores[item.label_index])
    if not model.is_named(item, MatchConfig().min_class_score):  # names only when sure
        return Identity(UNIDENTIFIED, None, None, "model", None, "none", alternatives)
    return Identity(item.label, model.meta.food_ids[item.label_index], probability, "model",
                    None, "class_scores", alternatives)


def confidence_of(detection_score: float, identity_probability: float | None) -> float:
    """P(the reported label): detection score x identity probability; for an unidentified
    item only the detection score (its claim is just "food")."""
    if identity_probability is None:
        return detection_score
    return detection_score * identity_probability


# Stored embeddings are rounded: 4 decimals keep cosines within 1e-3 at a third of the size.
EMBEDDING_DECIMALS = 4


def stored_embedding(embedding: np.ndarray | None) -> list[float] | None:
    """An item's embedding as the JSON list the database keeps."""
    if embedding is None:
        return None
    return [round(float(v), EMBEDDING_DECIMALS) for v in np.asarray(embedding).ravel()]


def build_item(
    model: TrayModel, pred: Prediction, item: Item, request: ImageRequest, top_k: int,
    review_below: float = DEFAULT_REVIEW_BELOW,
) -> ItemResult:
    """Identify one detected region and give it grams and nutrients."""
    who = identify_item(model, item, request.menu, top_k)
    food_id, dish_id = who.food_id, who.dish_id
    confidence = confidence_of(float(item.score), who.probability)
    grams = _model_grams(model, pred, item, request.depth_mm is not None)
    if grams is None and request.menu is not None and dish_id is not None:
        grams = request.menu.serving_grams(dish_id, item.area_px or None)
    if grams is None:
        grams = _typical_serving(food_id)
    food = find_food(food_id)
    return ItemResult(
        label=who.label,
        label_index=item.label_index,
        food_id=food_id,
        name_ko=food.name_ko if food else None,
        name_en=food.name_en if food else None,
        confidence=round(confidence, 4),
        detection_score=round(float(item.score), 4),
        identified_by=who.identified_by,
        menu_dish_id=dish_id,
        alternatives=who.alternatives,
        box=[round(float(v), 1) for v in item.box],
        polygon=[[float(x), float(y)] for x, y in (item.polygon or [])],
        area_px=float(item.area_px),
        area_cm2=None if item.area_cm2 is None else round(item.area_cm2, 2),
        grams=grams,
        nutrients=item_nutrients(food_id, grams.value if grams else None),
        embedding=stored_embedding(item.embedding),
        needs_review=who.probability is None or confidence < review_below,
        evidence=who.evidence,
        container=item.container,
    )


def result_for(
    model: TrayModel, pred: Prediction, request: ImageRequest, top_k: int,
    review_below: float = DEFAULT_REVIEW_BELOW, measured: Any = None,
    masks: str = MODEL_MASKS,
) -> ImageResult:
    """All food items of one prediction (a coin is a scale reference, not food).

    measured: request.layout.measure's answer for this photo, when the caller ran it already;
    masks: which masks the prediction's areas come from (model.infer.refine.mask_kind).
    """
    foods = [i for i in pred.items if i.label != COIN_LABEL]
    layout, slotted = None, []
    if request.layout is not None:  # layout mode: compartments first (services.layout_mode)
        if measured is None:
            measured = request.layout.measure(request.image)
        outcome = request.layout.split(model, pred, request, foods, top_k, review_below,
                                       measured)
        layout, slotted, foods = outcome.state, outcome.items, outcome.plain
    items = slotted + [build_item(model, pred, i, request, top_k, review_below) for i in foods]
    totals = meal_totals((i.food_id, i.grams.value if i.grams else None) for i in items)
    scale_source = {"given": KIOSK, "coin": REFERENCE}.get(pred.scale_source or "")
    return ImageResult(
        width=pred.width,
        height=pred.height,
        items=items,
        totals=totals.to_dict(),
        scale_source=scale_source,
        px_per_cm=pred.px_per_cm,
        model_version=str(model.meta.version),
        layout=layout,
        masks=masks,
    )


def _layout_work(requests: Sequence[ImageRequest]) -> list[Future[Any] | None]:
    """Start each layout photo's own work (registration, fills) on the layout threads."""
    return [_LAYOUT_THREADS.submit(r.layout.measure, r.image) if r.layout is not None else None
            for r in requests]


def served_post(refine_masks: bool = False) -> PostConfig:
    """The post-processing analyses run (benchmarks that measure the service call it too):
    masks refined when settings.refine_masks says so, and each food's box saying whether it
    shows food in a container or an emptied one, for pairing (docs/BENCHMARKS.md, "An
    emptied container is eaten")."""
    return PostConfig(refine_masks=refine_masks, containers=True)


def analyze(
    model: TrayModel, requests: Sequence[ImageRequest], *, batch_size: int = 8, top_k: int = 5,
    review_below: float = DEFAULT_REVIEW_BELOW, refine_masks: bool = False,
) -> tuple[list[ImageResult], list[BatchTiming]]:
    """Run photos through the model in batches and build every result.

    A kiosk layout's work runs while the model runs (both release the GIL): layout mode
    then costs the request only what does not overlap (benchmarks/layout_speed.py).
    refine_masks (settings.refine_masks): each food's mask refined to the food inside its
    container; every result records which masks it has, since areas measured two ways
    must never be compared (a before/after pair's leftover).
    """
    cfg = served_post(refine_masks)
    masks = mask_kind(refine_masks)
    results: list[ImageResult] = []
    timings: list[BatchTiming] = []
    for start in range(0, len(requests), batch_size):
        chunk = requests[start : start + batch_size]
        pending = _layout_work(chunk)
        try:
            began = time.perf_counter()
            preds = model.predict(
                [r.image for r in chunk],
                px_per_cm=[r.px_per_cm for r in chunk],
                depths=[r.depth_mm for r in chunk],
                cfg=cfg,
            )
            timings.append(BatchTiming(len(chunk), time.perf_counter() - began))
            results.extend(result_for(model, p, r, top_k, review_below,
                                      f.result() if f is not None else None, masks)
                           for p, r, f in zip(preds, chunk, pending, strict=True))
        finally:
            for f in pending:  # the model failed: drop the layout work not yet started
                if f is not None:
                    f.cancel()
    return results, timings
