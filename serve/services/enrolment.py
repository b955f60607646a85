"""Enrolment: a dish's example photos, checked, stored and measured by
model.infer.enrolment, and re-embedded when the active model changes (re-measured when the
masks analyses measure items on change: settings.refine_masks)."""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw
from sqlalchemy.orm import Session

from model.infer.enrolment import (
    MODEL_AREAS,
    Box,
    EnrolledRegion,
    enrolled_region,
    model_area_source,
)
from serve.core.errors import ApiError, unprocessable
from serve.core.storage import ImageStore, record_image, sha256_hex
from serve.core.uploads import decode_photo
from serve.db.tables.analyses import Analysis, AnalysisItem
from serve.db.tables.menus import Enrolment, Menu, MenuDish, RegionKind

if TYPE_CHECKING:
    from model.infer.runtime import TrayModel
    from serve.services.model_registry import LoadedModel


def check_box(box: Sequence[float], size: tuple[int, int]) -> Box:
    """A (x0, y0, x1, y1) pixel box inside the image with positive area, else a 422."""
    if len(box) != 4 or not all(np.isfinite(v) for v in box):
        raise unprocessable(f"box must be 4 finite numbers x0,y0,x1,y1; got {list(box)}",
                            code="invalid_box")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]):
        raise unprocessable(f"box {list(box)} must lie inside the {size[0]}x{size[1]} image "
                            "with x0 < x1 and y0 < y1", code="invalid_box")
    return x0, y0, x1, y1


def check_mask(mask: np.ndarray, img: Image.Image) -> np.ndarray:
    """A boolean mask of the photo's size that marks some pixels, else a 422."""
    mask = np.asarray(mask) > 0
    if mask.shape != (img.height, img.width):
        raise unprocessable(f"mask is {mask.shape[1]}x{mask.shape[0]}, the image "
                            f"{img.width}x{img.height}: they must match", code="invalid_mask")
    if not mask.any():
        raise unprocessable("the mask is empty: mark the dish's pixels", code="invalid_mask")
    return mask


def measure_region(model: TrayModel, img: Image.Image, *, box: Sequence[float] | None = None,
                   mask: np.ndarray | None = None, refine: bool = False) -> EnrolledRegion:
    """Check the region a client gave (4xx when unusable), then embed and measure it (on
    refined masks when `refine`: settings.refine_masks, as analyses measure their items)."""
    if box is not None and mask is not None:
        raise unprocessable("give a box or a mask, not both", code="invalid_region")
    if mask is not None:
        return enrolled_region(model, img, mask=check_mask(mask, img))
    return enrolled_region(model, img, box=check_box(box, img.size) if box is not None else None,
                           refine=refine)


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
          max_pixels: int, refine: bool = False) -> tuple[Enrolment, EnrolledRegion]:
    """Embed and store one example photo of a dish (whole image, box or mask); `refine`
    (settings.refine_masks) measures a box or whole photo on refined masks, as analyses
    then measure items (a mask's area is its own)."""
    photo_sha, img = store_photo(session, store, photo, "photo", max_pixels)
    mask_sha, mask_img = (store_photo(session, store, mask, "mask", max_pixels)
                          if mask is not None else (None, None))
    region = measure_region(loaded.model, img, box=box,
                            mask=mask_array(mask_img) if mask_img is not None else None,
                            refine=refine)
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


def item_mask(polygon: Sequence[Sequence[float]], box: Sequence[float],
              size: tuple[int, int]) -> np.ndarray:
    """An analysed item's region as a boolean mask of the photo's (width, height): its
    polygon (the model's mask outline), else its box."""
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    if len(polygon) >= 3:
        draw.polygon([(float(x), float(y)) for x, y in polygon], fill=255)
    if not np.asarray(canvas).any():
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), fill=255)
    return np.asarray(canvas) > 0


def mask_png(mask: np.ndarray) -> bytes:
    """A mask as the PNG an enrolment stores (white = the dish), so it can be re-embedded."""
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def enrol_item(session: Session, *, dish: MenuDish, analysis: Analysis, item: AnalysisItem,
               loaded: LoadedModel, store: ImageStore,
               max_pixels: int) -> tuple[Enrolment, bool]:
    """Enrol an analysed item (its stored photo under its mask) as an example of the dish;
    (the row, whether it is new). The same item enrolled again gives the existing row, and
    its examples on the menu's other dishes go: a corrected item teaches one dish only."""
    if analysis.image_width is None or analysis.image_height is None or len(item.box) != 4:
        raise ApiError(422, "no_region", f"item {item.id} has no region on a photo (a meal "
                       "logged by hand, or an item added without a box): it cannot be enrolled")
    photo = store.get(analysis.image_sha256) if analysis.image_sha256 else None
    if photo is None:
        raise ApiError(410, "image_purged", f"the photo of analysis {analysis.id} is no longer "
                       "stored (retention): it cannot be enrolled")
    png = mask_png(item_mask(item.polygon or [], item.box,
                             (analysis.image_width, analysis.image_height)))
    mask_sha = sha256_hex(png)
    for other in dish.menu.dishes:
        for row in list(other.enrolments):
            if (row.image_sha256, row.mask_sha256) != (analysis.image_sha256, mask_sha):
                continue
            if other.id == dish.id and row.model_version == loaded.version:
                if row.fill is None and item.fill is not None:  # enrolled before fills were kept
                    row.fill = item.fill
                return row, False
            other.enrolments.remove(row)
            session.delete(row)
    row, _ = enrol(session, dish=dish, loaded=loaded, store=store, photo=photo, box=None,
                   mask=png, max_pixels=max_pixels)
    row.fill = item.fill  # a layout item's fill teaches the dish's standard fill
    session.flush()
    return row, True


@dataclass(frozen=True)
class Refresh:
    """What bringing a menu's enrolments up to the active model and masks did."""

    re_embedded: int  # made with another model version: embedded and measured again
    re_measured: int  # this model, its area measured on the other masks: measured again
    # Their photo was purged by retention. Another model's: unused until enrolled again;
    # this model's on the other masks: still identify, but size no item (size_references).
    left_stale: int
    model_version: str


def _outdated(row: Enrolment, version: str, area_from: str) -> bool:
    """Embedded by another model, or measured by the model's mask of the other kind."""
    return row.model_version != version or (row.area_from in MODEL_AREAS.values()
                                            and row.area_from != area_from)


def refresh_enrolments(session: Session, menu: Menu, loaded: LoadedModel, store: ImageStore,
                       max_pixels: int, *, refine: bool) -> Refresh:
    """Re-embed and re-measure, from their stored photos, enrolments made with another model
    version or whose model-mask area was measured on the other masks than `refine`
    (settings.refine_masks) gives: flipping the setting brings the references in line."""
    area_from = model_area_source(refine)
    embedded = measured = left = 0
    for row in (e for d in menu.dishes for e in d.enrolments
                if _outdated(e, loaded.version, area_from)):
        photo = store.get(row.image_sha256)
        mask = store.get(row.mask_sha256) if row.mask_sha256 else None
        if photo is None or (row.mask_sha256 and mask is None):
            left += 1
            continue
        img = decode_photo(photo, max_pixels)[0]
        mask_arr = mask_array(decode_photo(mask, max_pixels)[0]) if mask else None
        region = measure_region(loaded.model, img, box=row.box, mask=mask_arr, refine=refine)
        if row.model_version == loaded.version:
            measured += 1
        else:
            embedded += 1
        row.embedding = [float(v) for v in region.embedding]
        row.area_px, row.area_from = region.area_px, region.area_from
        row.model_version = loaded.version
    session.flush()
    return Refresh(embedded, measured, left, loaded.version)
