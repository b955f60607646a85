"""Enrolment photos: embed a dish's example (whole photo, box or mask) and measure the area
of food it shows (torch-free).

The area is the reference for grams relative to the dish's standard serving, so it is
measured the way analysed items are: by the model's own mask where the model finds the
food, refined to the food inside its container when analyses refine theirs
(PostConfig.refine_masks). Areas measured on the two kinds of mask are never compared
(size_references). Callers check boxes and masks against the photo first (the service
answers a bad one with a 4xx); this module only measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from model.infer.geometry import pair_iou
from model.infer.refine import MODEL_MASKS, REFINED_MASKS, mask_kind
from model.infer.runtime import PostConfig

if TYPE_CHECKING:
    from model.infer.runtime import TrayModel

Box = tuple[float, float, float, float]
# How an enrolment's area was measured, best first: a mask given (by a client, or an
# analysed item's outline), the model's mask (as the model gives it, or refined to the food),
# the box, the whole photo. A whole-photo area (nothing found to measure) is no food's area,
# so it never serves as the reference for relative grams.
AREA_SOURCES = ("mask", "model_mask", "refined_mask", "box", "image")
# The model's mask area of an enrolment, by the masks analyses measure items on
# (model.infer.refine.mask_kind, analyses' `masks`).
MODEL_AREAS = {MODEL_MASKS: "model_mask", REFINED_MASKS: "refined_mask"}
# The model's item must overlap the given box this much to count as the enrolled food.
MIN_BOX_IOU = 0.5


@dataclass(frozen=True)
class EnrolledRegion:
    """An enrolment photo's embedding and the food area it shows (pixels)."""

    embedding: np.ndarray
    area_px: float
    area_from: str  # one of AREA_SOURCES: how area_px was measured


def model_area_source(refine: bool) -> str:
    """The area_from of an area measured by the model's mask, refined to the food or not."""
    return MODEL_AREAS[mask_kind(refine)]


def size_references(masks: str) -> frozenset[str]:
    """The enrolled areas that may size items measured on `masks` ("model" | "refined").

    A given mask and a box mean the same either way; the model's mask area only when it was
    measured on the same kind of mask as the items: a plate's model mask is the whole plate,
    its refined mask the food on it, so comparing the two would misstate the grams.
    """
    if masks not in MODEL_AREAS:
        raise ValueError(f"masks must be one of {sorted(MODEL_AREAS)}, not {masks!r}")
    return frozenset(("mask", MODEL_AREAS[masks], "box"))


def model_area(model: TrayModel, img: Image.Image, box: Box | None,
               refine: bool = False) -> float | None:
    """Area of the model's mask for the food in the box (or the largest food), if found;
    refined to the food inside its container when `refine`.

    The same model measures analysed items (refined as they are), so its mask area is the
    comparable reference.
    """
    pred = model.predict([img], cfg=PostConfig(refine_masks=refine))[0]
    items = [i for i in pred.items
             if i.area_px > 0 and model.meta.food_ids[i.label_index] is not None]
    if box is not None:
        items = [i for i in items if pair_iou(i.box, box) >= MIN_BOX_IOU]
        items.sort(key=lambda i: -pair_iou(i.box, box))
    else:
        items.sort(key=lambda i: -i.area_px)
    return float(items[0].area_px) if items else None


def enrolled_region(model: TrayModel, img: Image.Image, *, box: Box | None = None,
                    mask: np.ndarray | None = None, refine: bool = False) -> EnrolledRegion:
    """Embed a dish's example photo (whole image, a checked box or a boolean mask of the
    photo's size) and measure its area: the mask's, else the model's mask (refined to the
    food when `refine`, as analyses with refined masks measure items), else the box's."""
    if box is not None and mask is not None:
        raise ValueError("give a box or a mask, not both")
    if mask is not None:
        return EnrolledRegion(model.embed_enrolment(img, masks=[mask])[0], float(mask.sum()),
                              "mask")
    emb = model.embed_enrolment(img, boxes=[box] if box is not None else None)[0]
    area = model_area(model, img, box, refine)
    if area is not None:
        return EnrolledRegion(emb, area, model_area_source(refine))
    if box is not None:
        return EnrolledRegion(emb, (box[2] - box[0]) * (box[3] - box[1]), "box")
    return EnrolledRegion(emb, float(img.width * img.height), "image")
