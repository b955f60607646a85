"""The food inside its container: a found item's mask refined with GrabCut (numpy + OpenCV).

The mask head learned ellipses inscribed in annotated boxes, and a canteen's boxes hold the
container: a mealtray "Plate" box is the whole plate, so its mask is plate-shaped, full or
empty, and a leftover measured as the ratio of mask areas (serve.services.leftovers) cannot
see what was eaten. `refine_item_mask` separates the food from what holds it, inside the
item's box, with OpenCV's GrabCut initialised from the model's own mask:

- outside the box (plus a margin): background (the tray, the table);
- the model's mask eroded by CORE_ERODE of the box's shorter side: probable food;
- the rest of the box (a plate's rim, a bowl's side, the corners): probable background.

The colour models then learn the container from its rim and keep what differs from it: the
food on a white plate, the salad in a black bowl. GrabCut runs only where that is what the
box shows (`holds_food`): a neutral rim around a coloured core. A food with no container (a
fruit on the tray, an ECUSTFD food filling its own box: a coloured rim) and a sealed pot or a
bottle (a neutral core) keep the model's mask, as does white food in a white bowl, which no
colour tells apart. Where GrabCut loses the item (less than MIN_KEEP of the model's mask
left), the model's mask stays. At most one GrabCut of a WORK_SIDE crop per found item
(PostConfig.max_items bounds them). Measured on outlines drawn by hand (docs/MODEL_CARD.md,
"Food masks against outlines drawn by hand"): built on half of them, judged on the other.
"""
from __future__ import annotations

import cv2
import numpy as np

# GrabCut works on the box plus MARGIN of its sides, reduced so its longer side is WORK_SIDE px.
WORK_SIDE = 160
MARGIN = 0.1
CORE_ERODE = 0.12  # share of the box's shorter side eroded from the model's mask: the core
ITERATIONS = 3
MIN_KEEP = 0.1  # refined area below this share of the model's: GrabCut lost it
# A container shows as a neutral rim (white plate, black bowl, steel compartment) around food
# that shows colour: HSV saturation below NEUTRAL_SAT (of 255) is neutral. Refined only when
# at least MIN_NEUTRAL_RIM of the mask's rim is neutral (no rim like that: a food with no
# container, e.g. an apple in its own box) and at least MIN_COLOURED_CORE of its core shows
# colour (less: a sealed pot's lid, a bottle; GrabCut would keep only their print).
NEUTRAL_SAT = 50
MIN_NEUTRAL_RIM = 0.1
MIN_COLOURED_CORE = 0.5
MIN_PART = 0.1  # pieces smaller than this share of the largest are specks, not food
# Which masks an item's area and outline come from: the model's own, or refined here. The
# service records it per analysis, and never compares areas of two kinds (a pair's leftover,
# an enrolled example's size).
MODEL_MASKS = "model"
REFINED_MASKS = "refined"
# What an item's box shows (container_state): food in a container, or the container emptied
# (a neutral rim around a core with at most MAX_EMPTY_CORE of its pixels coloured).
FOOD_IN_CONTAINER = "food"
EMPTY_CONTAINER = "empty"
MAX_EMPTY_CORE = 0.15


def mask_kind(refine: bool) -> str:
    """The masks a prediction with PostConfig(refine_masks=refine) measures areas on."""
    return REFINED_MASKS if refine else MODEL_MASKS


def refine_item_mask(rgb: np.ndarray, box: tuple[float, float, float, float],
                     mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The refined mask of one item: a bool crop of its box, as `Item.mask`.

    `rgb`: the decoded photo (H, W, 3) uint8; `box`: the item's (x0, y0, x1, y1) in original
    pixels; `mask`: its bool crop of the rounded box (runtime._item_mask); `scale`: decoded
    pixels per original pixel (a reduced decode: < 1).
    """
    view = _work_view(rgb, box, mask, scale)
    if view is None:
        return mask
    crop, (wx0, wy0, wx1, wy1), model, core = view
    if not holds_food(crop[wy0:wy1, wx0:wx1], model > 0, core > 0):
        return mask
    gc = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    inside = gc[wy0:wy1, wx0:wx1]
    inside[:] = cv2.GC_PR_BGD
    inside[core > 0] = cv2.GC_PR_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's colour-model init is random: the same photo, the same mask
    try:
        # In GC_INIT_WITH_MASK mode the rect is not read: the mask alone initialises.
        cv2.grabCut(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), gc, (0, 0, 1, 1), bgd, fgd,
                    ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a degenerate crop (one colour): nothing to learn from
        return mask
    food = _parts((gc[wy0:wy1, wx0:wx1] == cv2.GC_FGD) | (gc[wy0:wy1, wx0:wx1] == cv2.GC_PR_FGD))
    refined = cv2.resize(food.astype(np.uint8), (mask.shape[1], mask.shape[0]),
                         interpolation=cv2.INTER_NEAREST).astype(bool)
    if refined.sum() < MIN_KEEP * mask.sum():
        return mask
    return refined


def container_state(rgb: np.ndarray, box: tuple[float, float, float, float],
                    mask: np.ndarray, scale: float = 1.0) -> str | None:
    """What an item's box shows, from its own (model) mask: FOOD_IN_CONTAINER (a neutral rim
    around a coloured core, as `holds_food`), EMPTY_CONTAINER (a neutral rim around a core
    with at most MAX_EMPTY_CORE colour), or None (neither: no container, white food, a
    half-eaten plate). Arguments as refine_item_mask's. Pairing reads a container that held
    food before and shows empty after as eaten (serve.services.leftovers)."""
    view = _work_view(rgb, box, mask, scale)
    if view is None:
        return None
    crop, (wx0, wy0, wx1, wy1), model, core = view
    stats = container_stats(crop[wy0:wy1, wx0:wx1], model > 0, core > 0)
    if stats is None or stats[0] < MIN_NEUTRAL_RIM:
        return None
    if stats[1] >= MIN_COLOURED_CORE:
        return FOOD_IN_CONTAINER
    return EMPTY_CONTAINER if stats[1] <= MAX_EMPTY_CORE else None


def _work_view(rgb: np.ndarray, box: tuple[float, float, float, float], mask: np.ndarray,
               scale: float) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray,
                                      np.ndarray] | None:
    """The box plus MARGIN reduced to WORK_SIDE: (that RGB crop, the box inside it as
    (x0, y0, x1, y1), the model's mask and its eroded core at that size as uint8); None when
    the item is too small or its mask has no core."""
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    out_shape = mask.shape
    if not mask.any() or min(out_shape) < 4:
        return None
    height, width = rgb.shape[:2]
    bx0, by0 = box[0] * scale, box[1] * scale
    bx1, by1 = box[2] * scale, box[3] * scale
    mx, my = MARGIN * (bx1 - bx0), MARGIN * (by1 - by0)
    cx0, cy0 = max(0, int(bx0 - mx)), max(0, int(by0 - my))
    cx1, cy1 = min(width, int(np.ceil(bx1 + mx))), min(height, int(np.ceil(by1 + my)))
    work = min(1.0, WORK_SIDE / max(cx1 - cx0, cy1 - cy0))
    crop = cv2.resize(rgb[cy0:cy1, cx0:cx1], None, fx=work, fy=work,
                      interpolation=cv2.INTER_AREA)
    # The box and the model's mask in the work crop's pixels.
    f = scale * work
    wx0, wy0 = round(x0 * f - cx0 * work), round(y0 * f - cy0 * work)
    ww = max(2, round(out_shape[1] * f))
    wh = max(2, round(out_shape[0] * f))
    wx1, wy1 = min(crop.shape[1], wx0 + ww), min(crop.shape[0], wy0 + wh)
    wx0, wy0 = max(0, wx0), max(0, wy0)
    if wx1 - wx0 < 4 or wy1 - wy0 < 4:
        return None
    model = cv2.resize(mask.astype(np.uint8), (wx1 - wx0, wy1 - wy0),
                       interpolation=cv2.INTER_NEAREST)
    k = max(1, round(CORE_ERODE * min(wx1 - wx0, wy1 - wy0)))
    core = cv2.erode(model, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    if not core.any():
        return None
    return crop, (wx0, wy0, wx1, wy1), model, core


def holds_food(crop: np.ndarray, mask: np.ndarray, core: np.ndarray) -> bool:
    """Whether the item looks like food inside a container (the refinement's condition):
    `crop` is the box's RGB pixels, `mask` and `core` bool arrays of its shape."""
    stats = container_stats(crop, mask, core)
    return stats is not None and stats[0] >= MIN_NEUTRAL_RIM and stats[1] >= MIN_COLOURED_CORE


def container_stats(crop: np.ndarray, mask: np.ndarray, core: np.ndarray,
                    ) -> tuple[float, float] | None:
    """(neutral share of the mask's rim, coloured share of its core); None without a rim or
    a core. Arguments as holds_food's."""
    rim = mask & ~core
    if not rim.any() or not core.any():
        return None
    neutral = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2HSV)[..., 1] < NEUTRAL_SAT
    return float(neutral[rim].mean()), 1.0 - float(neutral[core].mean())


def _parts(mask: np.ndarray) -> np.ndarray:
    """The mask without specks: connected pieces of at least MIN_PART of the largest."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= MIN_PART * areas.max()) + 1
    return np.isin(labels, keep)
