"""Enrolment photos: embed a dish's example (whole photo, box or mask) and measure the area
of food it shows (torch-free).

The area is the reference for grams relative to the dish's standard serving, so it is
measured the way analysed items are: by the model's own mask where the model finds the
food. Callers check boxes and masks against the photo first (the service answers a bad one
with a 4xx); this module only measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from model.infer.geometry import pair_iou

if TYPE_CHECKING:
    from model.infer.runtime import TrayModel

Box = tuple[float, float, float, float]
# How an enrolment's area was measured, best first. A whole-photo area (nothing found to
# measure) is no food's area, so it never serves as the reference for relative grams.
AREA_SOURCES = ("mask", "model_mask", "box", "image")
SIZE_REFERENCES = frozenset(AREA_SOURCES[:3])
# The model's item must overlap the given box this much to count as the enrolled food.
MIN_BOX_IOU = 0.5


@dataclass(frozen=True)
class EnrolledRegion:
    """An enrolment photo's embedding and the food area it shows (pixels)."""

    embedding: np.ndarray
    area_px: float
    area_from: str  # one of AREA_SOURCES: how area_px was measured


def model_area(model: TrayModel, img: Image.Image, box: Box | None) -> float | None:
    """Area of the model's own mask for the food in the box (or the largest food), if found.

    The same model measures analysed items, so its mask area is the comparable reference.
    """
    items = [i for i in model.predict([img])[0].items
             if i.area_px > 0 and model.meta.food_ids[i.label_index] is not None]
    if box is not None:
        items = [i for i in items if pair_iou(i.box, box) >= MIN_BOX_IOU]
        items.sort(key=lambda i: -pair_iou(i.box, box))
    else:
        items.sort(key=lambda i: -i.area_px)
    return float(items[0].area_px) if items else None


def enrolled_region(model: TrayModel, img: Image.Image, *, box: Box | None = None,
                    mask: np.ndarray | None = None) -> EnrolledRegion:
    """Embed a dish's example photo (whole image, a checked box or a boolean mask of the
    photo's size) and measure its area: the mask's, else the model's mask, else the box's."""
    if box is not None and mask is not None:
        raise ValueError("give a box or a mask, not both")
    if mask is not None:
        return EnrolledRegion(model.embed_enrolment(img, masks=[mask])[0], float(mask.sum()),
                              "mask")
    emb = model.embed_enrolment(img, boxes=[box] if box is not None else None)[0]
    area = model_area(model, img, box)
    if area is not None:
        return EnrolledRegion(emb, area, "model_mask")
    if box is not None:
        return EnrolledRegion(emb, (box[2] - box[0]) * (box[3] - box[1]), "box")
    return EnrolledRegion(emb, float(img.width * img.height), "image")
