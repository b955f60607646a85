"""Tray layouts: compartments (parsing, JSON) and the image geometry the other modules share.

Images are worked on with the longer side at most `WORK_SIDE`; polygons are (x, y) px.
Imports only numpy, OpenCV and Pillow.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

Point = tuple[float, float]
ImageLike = np.ndarray | Image.Image

# Every image is worked on with its longer side at most this many px: a kiosk photo is
# ~1-12 MP, the tray's ridges stay several px wide at 640, and time and memory stay bounded.
WORK_SIDE = 640
TRAY_MARGIN = 0.04  # no tray outline given: hull of the compartments grown by 4% of its size


class LayoutError(ValueError):
    """A layout that is not usable: no compartments, bad polygons, duplicate slots."""


@dataclass(frozen=True)
class Compartment:
    """A named compartment: its polygon (x, y) in the reference photo's pixels."""

    slot: str
    polygon: tuple[Point, ...]


@dataclass(frozen=True)
class TrayLayout:
    """A kiosk's tray: compartments, optional tray outline (reference px) and size in cm."""

    compartments: tuple[Compartment, ...]
    tray_polygon: tuple[Point, ...] | None = None
    tray_size_cm: tuple[float, float] | None = None


def _as_polygon(points: Any, where: str) -> tuple[Point, ...]:
    """Validated polygon: >= 3 finite points with a non-zero area."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LayoutError(f"{where}: polygon must be [[x, y], ...]") from exc
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3 or not np.isfinite(arr).all():
        raise LayoutError(f"{where}: polygon must be >= 3 finite [x, y] points")
    if abs(cv2.contourArea(arr.astype(np.float32))) < 1.0:
        raise LayoutError(f"{where}: polygon has no area")
    return tuple((float(x), float(y)) for x, y in arr)


def parse_layout(compartments: Sequence[Mapping[str, Any]], tray_polygon: Any = None,
                 tray_size_cm: Sequence[float] | None = None) -> TrayLayout:
    """A TrayLayout from `[{"slot": "rice", "polygon": [[x, y], ...]}, ...]`; LayoutError."""
    if not compartments:
        raise LayoutError("a layout needs at least one compartment")
    out, seen = [], set()
    for i, c in enumerate(compartments):
        slot = c.get("slot") if isinstance(c, Mapping) else None
        if not isinstance(slot, str) or not slot.strip():
            raise LayoutError(f"compartment {i}: 'slot' must be a non-empty string")
        if slot in seen:
            raise LayoutError(f"compartment {i}: duplicate slot {slot!r}")
        seen.add(slot)
        out.append(Compartment(slot, _as_polygon(c.get("polygon"), f"slot {slot!r}")))
    size = None
    if tray_size_cm is not None:
        size = (float(tray_size_cm[0]), float(tray_size_cm[1]))
        if not (np.isfinite(size).all() and min(size) > 0):
            raise LayoutError("tray_size_cm must be two positive numbers")
    tray = None if tray_polygon is None else _as_polygon(tray_polygon, "tray_polygon")
    return TrayLayout(tuple(out), tray, size)


def layout_to_json(layout: TrayLayout) -> list[dict[str, Any]]:
    """The compartments as `[{"slot": ..., "polygon": [[x, y], ...]}, ...]`."""
    return [{"slot": c.slot, "polygon": [[x, y] for x, y in c.polygon]}
            for c in layout.compartments]


def as_rgb(image: ImageLike) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a PIL image or a gray/RGB/RGBA array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return arr[..., :3]
    raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")


def work_scale(size: tuple[int, int], side: int = WORK_SIDE) -> float:
    """Factor bringing an image of size (w, h) to at most `side` px on its longer side."""
    return min(1.0, side / max(size))


def downscale(rgb: np.ndarray, side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """(image with longer side <= side, scale factor); area interpolation when shrinking."""
    s = work_scale((rgb.shape[1], rgb.shape[0]), side)
    if s >= 1.0:
        return rgb, 1.0
    size = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), s


def polygon_mask(polygon: Any, size: tuple[int, int]) -> np.ndarray:
    """Bool mask (h, w) of a polygon (N, 2) in pixel coordinates, filled with 1/16 px accuracy."""
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    pts = np.round(np.asarray(polygon, np.float64) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts.reshape(-1, 1, 2)], 1, cv2.LINE_8, shift=4)
    return mask.astype(bool)


def warp_points(points: Any, homography: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by a 3x3 homography."""
    pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, np.asarray(homography, np.float64)).reshape(-1, 2)


def tray_outline(layout: TrayLayout) -> np.ndarray:
    """The tray polygon (reference px): the given outline, else the compartments' hull grown."""
    if layout.tray_polygon is not None:
        return np.asarray(layout.tray_polygon, np.float64)
    pts = np.concatenate([np.asarray(c.polygon) for c in layout.compartments])
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(axis=0)
    grow = TRAY_MARGIN * float(np.ptp(hull, axis=0).max())
    radial = hull - centre
    norm = np.linalg.norm(radial, axis=1, keepdims=True)
    return hull + radial / np.maximum(norm, 1e-9) * grow


def scaling(s: float) -> np.ndarray:
    """3x3 scaling about the origin."""
    return np.diag([s, s, 1.0])



def rgb_gray(image: ImageLike, side: int) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int]]:
    """(work RGB, work gray, scale, full (w, h)) of an image."""
    rgb = as_rgb(image)
    work, s = downscale(rgb, side)
    return work, cv2.cvtColor(work, cv2.COLOR_RGB2GRAY), s, (rgb.shape[1], rgb.shape[0])


def work_gray(image: ImageLike, side: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """(work gray, scale, full (w, h)) of an image. A photo up to twice the work size goes
    gray first and one channel is shrunk (half the time at 640 -> 360 px); a larger one is
    shrunk first, so no full-size copy is made."""
    rgb = as_rgb(image)
    if work_scale((rgb.shape[1], rgb.shape[0]), side) < 0.5:
        _, gray, s, size = rgb_gray(rgb, side)
        return gray, s, size
    gray, s = downscale(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY), side)
    return gray, s, (rgb.shape[1], rgb.shape[0])
