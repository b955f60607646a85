"""Compartments carried into a photo, the food in each (fill) and the share left after a meal."""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from model.infer.tray.layout import (
    WORK_SIDE,
    ImageLike,
    TrayLayout,
    as_rgb,
    downscale,
    polygon_mask,
    scaling,
    tray_outline,
    warp_points,
)
from model.infer.tray.register import Registration, TrayReference

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class PlacedCompartment:
    """A compartment in a photo: polygon, box and mask (box crop) in photo px."""

    slot: str
    polygon: np.ndarray  # (N, 2) float64, photo px
    box: Box  # x0, y0, x1, y1 (exclusive), clipped to the photo
    mask: np.ndarray  # bool, shape (y1 - y0, x1 - x0)
    area_px: int  # visible area in the photo
    visible: float  # visible area / whole warped area (< 1 when the tray leaves the frame)


@dataclass(frozen=True, eq=False)
class WarpedLayout:
    """The layout in a photo: compartments and the tray's outline, photo px."""

    compartments: tuple[PlacedCompartment, ...]
    tray_polygon: np.ndarray  # (N, 2) float64, photo px
    photo_size: tuple[int, int]  # (w, h)

    def tray_mask(self) -> np.ndarray:
        """Bool (h, w) mask of the tray: food outside it is not on the tray."""
        return polygon_mask(self.tray_polygon, self.photo_size)


def _crop_mask(polygon: np.ndarray, size: tuple[int, int]) -> tuple[Box, np.ndarray, float]:
    """(clipped box, bool mask of the box, whole polygon area) of a polygon in a photo."""
    w, h = size
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 1
    bx0, by0 = min(w, max(0, int(x0))), min(h, max(0, int(y0)))
    box = (bx0, by0, max(bx0, min(w, int(x1))), max(by0, min(h, int(y1))))  # empty if outside
    bw, bh = box[2] - box[0], box[3] - box[1]
    mask = polygon_mask(polygon - np.array(box[:2]), (bw, bh)) if bw and bh else np.zeros(
        (bh, bw), bool)
    return box, mask, abs(float(cv2.contourArea(polygon.astype(np.float32))))


def warp_compartments(layout: TrayLayout, registration: Registration,
                      photo_size: tuple[int, int] | None = None) -> WarpedLayout:
    """The layout's compartments and tray outline in the photo's pixels (needs found=True)."""
    if not registration.found or registration.homography is None:
        raise ValueError(f"tray not found ({registration.reason}): no compartments to warp")
    size = photo_size or registration.photo_size
    hom = registration.homography
    placed = []
    for c in layout.compartments:
        poly = warp_points(c.polygon, hom)
        box, mask, whole = _crop_mask(poly, size)
        area = int(mask.sum())
        placed.append(PlacedCompartment(c.slot, poly, box, mask, area,
                                        min(1.0, area / whole) if whole else 0.0))
    return WarpedLayout(tuple(placed), warp_points(tray_outline(layout), hom), size)


# --------------------------------------------------------------------------- fill

# Food = what differs from the empty tray. Difference D per pixel, in CIE Lab units (dE):
# colour and brightness outside the reference's range within REF_TOLERANCE_PX (so a few px
# of misregistration or interpolation on the rims do not count), darkening weighted by
# DARK_WEIGHT (shadows and a dimmer lamp darken steel without changing its colour), plus
# TEXTURE_WEIGHT x the local texture (std of L) the photo has beyond the reference's.
REF_TOLERANCE_PX = 2
DARK_WEIGHT = 0.5
TEXTURE_WEIGHT = 1.0
TEXTURE_WINDOW = 5
# dE 12 is a plainly visible difference; steel under new light after the per-compartment
# gain, JPEG and noise stays below ~6, food on steel (even rice, egg white) well above.
DIFF_THRESHOLD = 12.0
RING_PX = 6  # ridge band around a compartment whose steel sets its brightness gain
MIN_RING_PX = 50
MIN_BLOB_FRAC = 0.005  # food blobs smaller than this share of a compartment are noise
EMPTY_FILL = 0.03  # below this fill a compartment counts as empty (crumbs, a sauce smear)
CLEAR_MARGIN = 0.5  # a pixel is clear-cut when |D - threshold| > CLEAR_MARGIN x threshold
# Fill works on the compartments' box grown by this many work px (the frame's other ~half is
# not looked at): beyond the reach of every kernel (steel ring RING_PX + 1, clean-up 4,
# texture and tolerance 2 + 2 + 2, blur 3), so the masks are those of the whole image.
FILL_MARGIN = 16
CLEAN_PAD = 4  # a compartment's window: its box grown beyond the clean-up's 3 and 5 px kernels


@dataclass(frozen=True)
class FillConfig:
    """Food-mask settings: difference threshold and how a model's mask is combined."""

    threshold: float = DIFF_THRESHOLD
    combine: Literal["and", "or"] = "and"  # with a model foreground mask, when one is given
    work_side: int = WORK_SIDE


@dataclass(frozen=True, eq=False)
class CompartmentFill:
    """What lies in one compartment of a photo."""

    slot: str
    polygon: np.ndarray  # (N, 2) float64, photo px
    box: Box  # x0, y0, x1, y1 of the compartment, photo px
    mask: np.ndarray  # bool food mask, shape of box
    area_px: int  # food area, photo px
    compartment_area_px: int  # visible compartment area, photo px
    fill: float  # area_px / compartment_area_px, in [0, 1]
    empty: bool  # fill < EMPTY_FILL
    score: float  # confidence in [0, 1]: clear-cut pixels x registration quality x visible


def _lab(rgb: np.ndarray) -> np.ndarray:
    """Float32 CIE Lab (L 0-100) of a float RGB image in 0-255."""
    return cv2.cvtColor(np.clip(rgb / 255.0, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)


def _local_std(lum: np.ndarray) -> np.ndarray:
    """Local standard deviation of luminance in TEXTURE_WINDOW squares."""
    k = (TEXTURE_WINDOW, TEXTURE_WINDOW)
    mean = cv2.blur(lum, k)
    return np.sqrt(np.maximum(cv2.blur(lum * lum, k) - mean * mean, 0))


def difference_map(photo_rgb: np.ndarray, ref_rgb: np.ndarray) -> np.ndarray:
    """D (dE units, float32) of a photo vs the aligned, brightness-matched empty tray."""
    p, r = _lab(photo_rgb), _lab(ref_rgb)
    kernel = np.ones((2 * REF_TOLERANCE_PX + 1,) * 2, np.uint8)
    lo, hi = cv2.erode(r, kernel), cv2.dilate(r, kernel)
    # Per channel: above the range + below it (darkening of L weighted by DARK_WEIGHT), the
    # norm over L, a, b. OpenCV's per-element ops, float32 throughout.
    above = cv2.max(cv2.subtract(p, hi), 0.0)
    below = cv2.multiply(cv2.max(cv2.subtract(lo, p), 0.0), (DARK_WEIGHT, 1.0, 1.0, 0.0))
    d = cv2.add(above, below)
    colour = cv2.sqrt(cv2.transform(cv2.multiply(d, d), np.ones((1, 3), np.float32)))
    texture = cv2.max(cv2.subtract(_local_std(p[..., 0]),
                                   cv2.dilate(_local_std(r[..., 0]), kernel)), 0.0)
    # A window straddling a food edge is "textured" on the steel side too: keep texture only
    # where the whole window is, so it does not grow the mask by half a window.
    texture = cv2.erode(texture, np.ones((TEXTURE_WINDOW, TEXTURE_WINDOW), np.uint8))
    return cv2.GaussianBlur(cv2.scaleAdd(texture, TEXTURE_WEIGHT, colour), (0, 0), 1.0)


def _gains(photo: np.ndarray, ref: np.ndarray, comp: np.ndarray, steel: np.ndarray
           ) -> np.ndarray:
    """Per-channel gain bringing the photo's light to the reference's, from the steel ring."""
    k = 2 * RING_PX + 1
    win = _window(comp, RING_PX + 1)
    ring = cv2.dilate(comp[win].astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    ring &= steel[win]
    if ring.sum() >= MIN_RING_PX:
        num, den = np.median(ref[win][ring], axis=0), np.median(photo[win][ring], axis=0)
    elif steel.sum() >= MIN_RING_PX:
        num, den = np.median(ref[steel], axis=0), np.median(photo[steel], axis=0)
    else:
        return np.ones(3, np.float32)
    return (num / np.maximum(den, 1.0)).astype(np.float32)


def _window(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    """The bounding box of a bool mask grown by pad px (clipped): where per-compartment work
    is done, so each costs its own size rather than the whole image's."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return (slice(max(0, y - pad), min(mask.shape[0], y + h + pad)),
            slice(max(0, x - pad), min(mask.shape[1], x + w + pad)))


def _clean(food: np.ndarray, comp: np.ndarray) -> np.ndarray:
    """Food mask without specks, with small gaps and holes closed, inside the compartment.

    Both are the compartment's window (_window(comp, CLEAN_PAD)): beyond the 3 and 5 px
    kernels, so the result is the one on the whole image."""
    m = cv2.morphologyEx(food.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < MIN_BLOB_FRAC * max(1, comp.sum()))
    m[np.isin(labels, small[small > 0])] = 0
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(m, contours, -1, 1, thickness=-1)  # a pale spot inside food is food
    return m.astype(bool) & comp


def _upsample(mask: np.ndarray, box: Box, s: float, offset: tuple[int, int] = (0, 0)
              ) -> np.ndarray:
    """The box (photo px) of a work-scale bool mask whose (0, 0) is the work image's offset,
    sampled at photo resolution."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool)
    # Pixel centres: work u = (x + 0.5) * s - 0.5 for photo x.
    ox, oy = offset
    m = np.array([[s, 0, s * x0 + 0.5 * s - 0.5 - ox], [0, s, s * y0 + 0.5 * s - 0.5 - oy]],
                 np.float64)
    out = cv2.warpAffine(mask.astype(np.float32), m, (x1 - x0, y1 - y0),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return out > 0.5


_FLOAT_RGB: weakref.WeakKeyDictionary[TrayReference, tuple[np.ndarray, np.ndarray]] = (
    weakref.WeakKeyDictionary())
_FLOAT_RGB_LOCK = threading.Lock()


def _aligned_reference(reference: TrayReference, hom: np.ndarray, size: tuple[int, int]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(reference RGB float32 warped into the photo's work frame, bool where it is defined)."""
    with _FLOAT_RGB_LOCK:
        prepared = _FLOAT_RGB.get(reference)  # made once per reference
    if prepared is None:
        prepared = (reference.rgb.astype(np.float32), np.ones(reference.gray.shape, np.uint8))
        with _FLOAT_RGB_LOCK:
            _FLOAT_RGB[reference] = prepared
    rgb, ones = prepared
    ref = cv2.warpPerspective(rgb, hom, size, flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(ones, hom, size, flags=cv2.INTER_NEAREST)
    return ref, cv2.erode(valid, np.ones((3, 3), np.uint8)).astype(bool)


def _foreground(mask: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """A caller's bool foreground mask (photo px) at the work size."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype != bool:
        raise ValueError(f"foreground must be a 2-D bool array, got {m.dtype} {m.shape}")
    return cv2.resize(m.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 127


def _work_window(polygons: list[np.ndarray], size: tuple[int, int]) -> Box:
    """The compartments' box (work px) grown by FILL_MARGIN, clipped; the whole image when
    they lie outside it."""
    pts = np.concatenate(polygons)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - FILL_MARGIN
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + FILL_MARGIN + 1
    box = (max(0, int(x0)), max(0, int(y0)), min(size[0], int(x1)), min(size[1], int(y1)))
    return box if box[2] > box[0] and box[3] > box[1] else (0, 0, size[0], size[1])


def measure_fill(reference: TrayReference, photo: ImageLike, registration: Registration,
                 foreground: np.ndarray | None = None, config: FillConfig = FillConfig(),
                 warped: WarpedLayout | None = None) -> list[CompartmentFill]:
    """Per compartment: food mask (what differs from the empty tray), fill, empty, score.

    warped: the caller's warp_compartments(reference.layout, registration), if it has it."""
    warped = warped or warp_compartments(reference.layout, registration)
    rgb = as_rgb(photo)
    if (rgb.shape[1], rgb.shape[0]) != registration.photo_size:
        raise ValueError("photo size differs from the registered photo's")
    work, s = downscale(rgb, config.work_side)
    # Only the compartments' box (and a margin beyond every kernel's reach) is worked on.
    polys = [pc.polygon * s for pc in warped.compartments]
    x0, y0, x1, y1 = _work_window(polys, (work.shape[1], work.shape[0]))
    work, offset, size = work[y0:y1, x0:x1], np.array([x0, y0], np.float64), (x1 - x0, y1 - y0)
    shift = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1.0]])
    hom = shift @ scaling(s) @ np.asarray(registration.homography) @ np.linalg.inv(
        scaling(reference.scale))
    ref, valid = _aligned_reference(reference, hom, size)
    comps = [polygon_mask(p - offset, size) for p in polys]
    any_comp = np.logical_or.reduce(comps)
    grown = cv2.dilate(any_comp.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    steel = polygon_mask(warped.tray_polygon * s - offset, size) & valid & ~grown
    original = work.astype(np.float32)
    light = original.copy()
    for m in comps:
        win = _window(m, 0)
        light[win][m[win]] *= _gains(original, ref, m, steel)
    diff = difference_map(light, ref)
    fg = _foreground(foreground, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)))
    if fg is not None:
        fg = fg[y0:y1, x0:x1]
    quality = 1.0 if registration.quality == "good" else 0.8
    out = []
    for pc, whole in zip(warped.compartments, comps, strict=True):
        win = _window(whole, CLEAN_PAD)  # each compartment's work costs its own size
        m, d = whole[win], diff[win]
        food = _clean((d > config.threshold) & m & valid[win], m)
        if fg is not None:
            food = (food & fg[win]) if config.combine == "and" else (food | fg[win]) & m
        full = _upsample(food, pc.box, s, (x0 + win[1].start, y0 + win[0].start)) & pc.mask
        area = int(full.sum())
        fill = area / pc.area_px if pc.area_px else 0.0
        clear = float((np.abs(d[m] - config.threshold) > CLEAR_MARGIN * config.threshold)
                      .mean()) if m.any() else 0.0
        out.append(CompartmentFill(pc.slot, pc.polygon, pc.box, full, area, pc.area_px,
                                   min(1.0, fill), fill < EMPTY_FILL,
                                   clear * quality * pc.visible))
    return out


def leftover_fraction(before_fill: float, after_fill: float,
                      min_served: float = EMPTY_FILL) -> float | None:
    """Share of the served food left: after / before, clipped to [0, 1].

    None when before_fill < min_served: nothing (measurable) was served, so no share of it
    can be left; the caller reports "not served" rather than a ratio of two noise levels.
    """
    if not (np.isfinite(before_fill) and np.isfinite(after_fill)):
        raise ValueError("fills must be finite")
    if before_fill < min_served:
        return None
    return float(np.clip(after_fill / before_fill, 0.0, 1.0))
