"""Procedural tray backgrounds: plain canteen trays, Korean 5-compartment trays, plates, bowls.

Each scene is drawn at a known physical size, so it has a true px_per_cm, and comes with
the regions where food may be placed (a compartment, the well of a plate or bowl).
Texture, colour and light vary with the seed; nothing is downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("plain", "compartment", "plate", "bowl")
# Physical widths of the scene (cm): a canteen tray ~40 cm, a Korean steel tray (식판)
# ~36 cm, a dinner plate ~26 cm on a table view of 34 cm, a bowl ~16 cm in a 24 cm view.
SCENE_WIDTH_CM = {"plain": 42.0, "compartment": 38.0, "plate": 34.0, "bowl": 24.0}


@dataclass(frozen=True)
class Region:
    """A rectangle (pixels) food may fill; `slot` names it (e.g. 'rice', 'side1')."""

    x: int
    y: int
    w: int
    h: int
    slot: str


@dataclass
class Scene:
    """A drawn background, its scale and where food goes."""

    image: np.ndarray  # H x W x 3 uint8, RGB
    px_per_cm: float
    regions: list[Region]
    kind: str


def _noise(rng: np.random.Generator, h: int, w: int, scale: int, amp: float) -> np.ndarray:
    """Smooth value noise in [-amp, amp]: coarse random grid upsampled."""
    small = rng.uniform(-amp, amp, (max(2, h // scale), max(2, w // scale))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _table(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A wood-like or laminate table top."""
    base = np.array(rng.choice([[150, 105, 70], [185, 150, 110], [120, 120, 125],
                                [200, 195, 185]]), np.float32)
    grain = _noise(rng, h, w // 8, 4, 18.0)
    grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)
    img = base[None, None, :] + grain[..., None] + _noise(rng, h, w, 40, 10.0)[..., None]
    return np.clip(img, 0, 255)


def _rounded_rect(mask: np.ndarray, x0: int, y0: int, x1: int, y1: int, r: int) -> None:
    """Fill a rounded rectangle into a uint8 mask."""
    r = max(1, min(r, (x1 - x0) // 2, (y1 - y0) // 2))
    cv2.rectangle(mask, (x0 + r, y0), (x1 - r, y1), 1, -1)
    cv2.rectangle(mask, (x0, y0 + r), (x1, y1 - r), 1, -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(mask, (cx, cy), r, 1, -1)


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, texture: np.ndarray) -> None:
    """Paint colour + texture where mask is set, in place."""
    m = mask.astype(bool)
    img[m] = np.clip(colour[None, :] + texture[m][:, None], 0, 255)


def _shade_recess(img: np.ndarray, mask: np.ndarray, depth: float) -> None:
    """Darken a recess towards its rim, as a pressed compartment or bowl well looks."""
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    rim = np.clip(dist / 12.0, 0, 1)
    m = mask.astype(bool)
    img[m] *= (1.0 - depth * (1.0 - rim[m]))[:, None]


def draw_plain(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[Region]]:
    """A plain rectangular canteen tray, speckled like the French kiosk's, on a table."""
    img = _table(rng, h, w)
    m = np.zeros((h, w), np.uint8)
    mx, my = int(w * 0.04), int(h * 0.05)
    _rounded_rect(m, mx, my, w - mx, h - my, int(w * 0.04))
    colour = np.array(rng.choice([[170, 172, 178], [60, 62, 66], [150, 60, 50],
                                  [190, 180, 150], [70, 110, 150]]), np.float32)
    speckle = rng.normal(0, 14, (h, w)).astype(np.float32) + _noise(rng, h, w, 60, 8.0)
    _paint(img, m, colour, speckle)
    cols, rows = 3, 2
    cw, ch = (w - 2 * mx) // cols, (h - 2 * my) // rows
    regions = [Region(mx + c * cw + 6, my + r * ch + 6, cw - 12, ch - 12, f"cell{r * cols + c}")
               for r in range(rows) for c in range(cols)]
    return img, regions


def draw_compartment(
    rng: np.random.Generator, h: int, w: int
) -> tuple[np.ndarray, list[Region]]:
    """A Korean steel tray: three side-dish wells on top, rice and soup wells below."""
    img = _table(rng, h, w)
    tray = np.zeros((h, w), np.uint8)
    mx, my = int(w * 0.03), int(h * 0.04)
    _rounded_rect(tray, mx, my, w - mx, h - my, int(w * 0.05))
    steel = np.array([rng.uniform(165, 205)] * 3, np.float32) * rng.uniform(0.97, 1.03, 3)
    brushed = cv2.blur(rng.normal(0, 18, (h, w)).astype(np.float32), (41, 1))
    _paint(img, tray, steel, brushed)
    gap = int(w * 0.025)
    inner_w, inner_h = w - 2 * mx - 2 * gap, h - 2 * my - 2 * gap
    top_h = int(inner_h * 0.42)
    regions: list[Region] = []
    side_w = (inner_w - 2 * gap) // 3
    for i in range(3):
        regions.append(Region(mx + gap + i * (side_w + gap), my + gap, side_w, top_h,
                              f"side{i + 1}"))
    big_w = (inner_w - gap) // 2
    low_y, low_h = my + 2 * gap + top_h, inner_h - top_h - gap
    regions.append(Region(mx + gap, low_y, big_w, low_h, "rice"))
    regions.append(Region(mx + 2 * gap + big_w, low_y, big_w, low_h, "soup"))
    for r in regions:
        well = np.zeros((h, w), np.uint8)
        _rounded_rect(well, r.x, r.y, r.x + r.w, r.y + r.h, int(min(r.w, r.h) * 0.18))
        _shade_recess(img, well, float(rng.uniform(0.15, 0.3)))
    return img, [Region(r.x + 4, r.y + 4, r.w - 8, r.h - 8, r.slot) for r in regions]


def _round_dish(
    rng: np.random.Generator, h: int, w: int, radius_frac: float, well: float
) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int]]:
    """A round plate or bowl on a table: (image, dish mask, radius px, centre)."""
    img = _table(rng, h, w)
    centre = (w // 2 + int(rng.integers(-w // 30, w // 30 + 1)),
              h // 2 + int(rng.integers(-h // 30, h // 30 + 1)))
    radius = int(min(h, w) * radius_frac)
    dish = np.zeros((h, w), np.uint8)
    cv2.circle(dish, centre, radius, 1, -1)
    colour = np.array(rng.choice([[240, 240, 236], [236, 232, 220], [215, 120, 120],
                                  [120, 150, 190], [235, 235, 240]]), np.float32)
    _paint(img, dish, colour, _noise(rng, h, w, 50, 5.0))
    inner = np.zeros((h, w), np.uint8)
    cv2.circle(inner, centre, int(radius * well), 1, -1)
    _shade_recess(img, inner, float(rng.uniform(0.06, 0.14)))
    return img, inner, radius, centre


def draw_plate(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[Region]]:
    """A round dinner plate; food goes in the square inscribed in its well."""
    img, _, radius, (cx, cy) = _round_dish(rng, h, w, 0.46, 0.72)
    half = int(radius * 0.72 / np.sqrt(2))
    regions = [Region(cx - half, cy - half, half, 2 * half, "left"),
               Region(cx, cy - half, half, 2 * half, "right")]
    return img, regions


def draw_bowl(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[Region]]:
    """A bowl seen from above: a deep well holding one item."""
    img, well, radius, (cx, cy) = _round_dish(rng, h, w, 0.42, 0.82)
    # A bowl's wall falls away from the light: darken the well towards its edge, radially.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - cx, yy - cy) / (radius * 0.82)
    inside = well.astype(bool)
    img[inside] *= (1.0 - float(rng.uniform(0.25, 0.4)) * np.clip(r[inside], 0, 1) ** 2)[:, None]
    half = int(radius * 0.8 / np.sqrt(2))
    return img, [Region(cx - half, cy - half, 2 * half, 2 * half, "bowl")]


_DRAW = {"plain": draw_plain, "compartment": draw_compartment, "plate": draw_plate,
         "bowl": draw_bowl}


def draw_scene(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> Scene:
    """Draw a background of this kind at size (width, height)."""
    if kind not in _DRAW:
        raise ValueError(f"unknown scene kind {kind!r}; choose from {KINDS}")
    w, h = size
    if w < 64 or h < 64:
        raise ValueError(f"scene size {size} too small (min 64x64)")
    img, regions = _DRAW[kind](rng, h, w)
    return Scene(image=img.astype(np.uint8), px_per_cm=w / SCENE_WIDTH_CM[kind],
                 regions=regions, kind=kind)
