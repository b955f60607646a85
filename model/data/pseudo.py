"""Pseudo masks for box-only data (mealtray, ECUSTFD): OpenCV GrabCut seeded by the box.

Marked mask_source="pseudo" so metrics never score against them as truth. Used to train
mask heads and to cut food crops for the tray composer. Round reference objects (the
coin) get the ellipse inscribed in their box, which is what they are.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import cv2
import numpy as np

from model.data.coco import Annotation, CocoDataset, ImageRecord
from model.data.importers.common import SourceFormatError
from model.data.masks import compress_rle, rle_encode

# GrabCut runs on the box plus this margin, scaled so the longer side is WORK_SIDE px:
# masks at that resolution are fine for training and keep a full import to minutes.
MARGIN = 0.15
WORK_SIDE = 200
ITERATIONS = 4
# Below this share of its box, GrabCut has lost the object (e.g. food the colour of the
# plate); the inscribed ellipse is then the better guess.
MIN_FILL = 0.25
ELLIPSE_LABELS = ("coin",)


def ellipse_mask(height: int, width: int, box: list[float]) -> np.ndarray:
    """Bool mask of the ellipse inscribed in a COCO box [x, y, w, h]."""
    x, y, w, h = box
    mask = np.zeros((height, width), dtype=np.uint8)
    centre = (round(x + w / 2), round(y + h / 2))
    axes = (max(1, round(w / 2)), max(1, round(h / 2)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, thickness=-1)
    return mask.astype(bool) & box_mask(height, width, box)


def grabcut_mask(image_bgr: np.ndarray, box: list[float], seed: int = 0) -> np.ndarray:
    """Foreground mask (bool, full image size) of the object in box [x, y, w, h]."""
    h_img, w_img = image_bgr.shape[:2]
    x, y, w, h = box
    mx, my = MARGIN * w, MARGIN * h
    x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
    x1, y1 = min(w_img, int(np.ceil(x + w + mx))), min(h_img, int(np.ceil(y + h + my)))
    crop = image_bgr[y0:y1, x0:x1]
    scale = min(1.0, WORK_SIDE / max(crop.shape[:2]))
    small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    rect = _rect_in(small.shape[:2], (x - x0) * scale, (y - y0) * scale, w * scale, h * scale)
    gc = np.zeros(small.shape[:2], dtype=np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)  # GrabCut's GMM init is random: seed it for reproducible masks
    cv2.grabCut(small, gc, rect, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_RECT)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    fg = cv2.resize(fg, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    mask = np.zeros((h_img, w_img), dtype=bool)
    mask[y0:y1, x0:x1] = fg.astype(bool)
    return _largest_component(mask & box_mask(h_img, w_img, box))


def _rect_in(shape: tuple[int, ...], x: float, y: float, w: float, h: float) -> tuple[int, ...]:
    """Integer rect (x, y, w, h) inside an image of shape, at least 2 px wide and high."""
    hh, ww = shape[0], shape[1]
    rx, ry = max(0, int(x)), max(0, int(y))
    rw, rh = max(2, min(ww - rx, round(w))), max(2, min(hh - ry, round(h)))
    return (rx, ry, rw, rh)


def box_mask(height: int, width: int, box: list[float]) -> np.ndarray:
    """The box itself as a bool mask: a pseudo mask never leaves its box."""
    x, y, w, h = box
    mask = np.zeros((height, width), dtype=bool)
    mask[max(0, int(y)) : int(np.ceil(y + h)), max(0, int(x)) : int(np.ceil(x + w))] = True
    return mask


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected blob: stray background specks are not the object."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.asarray(labels == best)


def pseudo_mask(image_bgr: np.ndarray, box: list[float], label: str) -> np.ndarray:
    """The pseudo mask for one box: ellipse for round references, else GrabCut."""
    h, w = image_bgr.shape[:2]
    if label in ELLIPSE_LABELS:
        return ellipse_mask(h, w, box)
    mask = grabcut_mask(image_bgr, box)
    if mask.sum() < MIN_FILL * box[2] * box[3]:
        return ellipse_mask(h, w, box)
    return mask


def read_bgr(ds: CocoDataset, image: ImageRecord) -> np.ndarray:
    """The image's pixels (BGR, as OpenCV reads them); a clear error when unreadable."""
    path = ds.image_path(image)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceFormatError(f"{path}: image missing or unreadable")
    if img.shape[:2] != (image.height, image.width):
        raise SourceFormatError(
            f"{path}: is {img.shape[1]}x{img.shape[0]}, the dataset says "
            f"{image.width}x{image.height}"
        )
    return img


def add_pseudo_masks(
    ds: CocoDataset, annotation_ids: Iterable[int] | None = None, overwrite: bool = False
) -> CocoDataset:
    """Give box-only annotations (all, or the chosen ids) a pseudo mask, stored as RLE."""
    names = ds.category_names()
    chosen = None if annotation_ids is None else set(annotation_ids)
    by_image = ds.annotations_by_image()
    new: dict[int, Annotation] = {}
    for im in ds.images:
        todo = [a for a in by_image[im.id] if (overwrite or a.segmentation is None)
                and (chosen is None or a.id in chosen)]
        if not todo:
            continue
        img = read_bgr(ds, im)
        for a in todo:
            mask = pseudo_mask(img, a.bbox, names[a.category_id])
            new[a.id] = replace(a, segmentation=compress_rle(rle_encode(mask)),
                                mask_source="pseudo", area=float(mask.sum()))
    return replace(ds, annotations=[new.get(a.id, a) for a in ds.annotations])


def refined_ellipse(image_rgb: np.ndarray, box: list[float]) -> np.ndarray | None:
    """The food inside an annotated box as the service's refinement finds it
    (model.infer.refine), started from the ellipse inscribed in the box instead of a model's
    mask; None where the refinement does not apply (no neutral rim around a coloured core:
    a food with no container, a sealed pot) or loses the item."""
    from model.infer.refine import refine_item_mask

    h, w = image_rgb.shape[:2]
    x, y, bw, bh = box
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(w, int(np.ceil(x + bw))), min(h, int(np.ceil(y + bh)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    seed = ellipse_mask(h, w, box)[y0:y1, x0:x1]
    crop = refine_item_mask(image_rgb, (x, y, x + bw, y + bh), seed)
    if crop is seed:
        return None
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = crop
    return mask


def add_refined_masks(ds: CocoDataset) -> CocoDataset:
    """Give each box-only annotation whose box holds food in a container its refined mask
    (`refined_ellipse`, mask_source "pseudo"); the others stay box-only, so training draws
    their inscribed ellipse as before (model.dataset). Round references keep the ellipse."""
    names = ds.category_names()
    by_image = ds.annotations_by_image()
    new: dict[int, Annotation] = {}
    for im in ds.images:
        todo = [a for a in by_image[im.id]
                if a.segmentation is None and names[a.category_id] not in ELLIPSE_LABELS]
        if not todo:
            continue
        rgb = cv2.cvtColor(read_bgr(ds, im), cv2.COLOR_BGR2RGB)
        for a in todo:
            mask = refined_ellipse(rgb, a.bbox)
            if mask is not None:
                new[a.id] = replace(a, segmentation=compress_rle(rle_encode(mask)),
                                    mask_source="pseudo", area=float(mask.sum()))
    return replace(ds, annotations=[new.get(a.id, a) for a in ds.annotations])
