"""Compartment proposals from an empty-tray photo, for an admin to edit."""
from __future__ import annotations

import cv2
import numpy as np

from model.infer.tray.layout import WORK_SIDE, Compartment, ImageLike, rgb_gray

# Compartment proposals from an empty-tray photo. Edges (Canny on a smoothed image, its
# thresholds from the image's own gradient levels) are closed into rims. The floor of a
# pressed well is a closed, convex non-edge region; the flat steel between wells (the
# "web") is the largest non-edge region inside the tray. Each floor grows outward over its
# wall up to the web (by the floor's own median distance to the web): that is the rim
# outline an admin would draw. A floor is kept if it is 0.5-40% of the tray (a sauce dip to
# half the tray), convex (solidity >= 0.85: wells are rounded polygons) and not a sliver.
PROPOSAL_BLUR = 1.5
CANNY_HIGH_PERCENTILE = 85  # the strongest 15% of gradients: rims and outline, not brushing
CLOSE_PX = 5  # bridges gaps where a wall faces across the light (weak edges)
MIN_FLOOR_FRAC = 0.005
MAX_FLOOR_FRAC = 0.4
MIN_SOLIDITY = 0.85
MIN_ASPECT = 0.15  # shorter / longer side of the floor's rotated box
POLY_EPSILON = 0.004  # polygon approximation tolerance, share of the perimeter


def _edges(gray: np.ndarray) -> np.ndarray:
    """Closed edge map (uint8 0/1) of a work-scale gray image."""
    smooth = cv2.GaussianBlur(gray, (0, 0), PROPOSAL_BLUR)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    high = float(np.percentile(np.hypot(gx, gy), CANNY_HIGH_PERCENTILE))
    edges = cv2.Canny(smooth, high / 2, high, L2gradient=True)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (CLOSE_PX, CLOSE_PX))
    return (cv2.morphologyEx(edges, cv2.MORPH_CLOSE, kernel) > 0).astype(np.uint8)


def _is_floor(region: np.ndarray, tray_area: float) -> bool:
    """Whether a non-edge region looks like a well's floor (size, convexity, not a sliver)."""
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    c = max(contours, key=cv2.contourArea)
    area, hull = float(region.sum()), cv2.contourArea(cv2.convexHull(c))
    (_, _), (bw, bh), _ = cv2.minAreaRect(c)
    return (MIN_FLOOR_FRAC * tray_area <= area <= MAX_FLOOR_FRAC * tray_area and hull > 0
            and area / hull >= MIN_SOLIDITY and min(bw, bh) >= MIN_ASPECT * max(bw, bh))


def _regions(gray: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
    """(floor masks, web mask or None) of a work-scale empty-tray image."""
    free = (1 - _edges(gray)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(free, connectivity=4)
    h, w = gray.shape
    x0, y0 = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    x1, y1 = x0 + stats[:, cv2.CC_STAT_WIDTH], y0 + stats[:, cv2.CC_STAT_HEIGHT]
    border = (x0 == 0) | (y0 == 0) | (x1 == w) | (y1 == h)
    border[0] = True  # label 0 = the edges themselves
    tray_area = float(h * w - stats[border & (np.arange(n) > 0), cv2.CC_STAT_AREA].sum())
    floors: list[int] = []
    others: list[int] = []
    for i in np.flatnonzero(~border):
        region = (labels == i).astype(np.uint8)
        (floors if _is_floor(region, tray_area) else others).append(int(i))
    web = None
    if others:
        biggest = max(others, key=lambda i: stats[i, cv2.CC_STAT_AREA])
        web = labels == biggest
    return [(labels == i) for i in floors], web


def _grow(floor: np.ndarray, web: np.ndarray | None) -> np.ndarray:
    """The well under a floor: the floor grown over its wall up to the web (bool)."""
    if web is None:
        return floor
    to_web = cv2.distanceTransform((~web).astype(np.uint8), cv2.DIST_L2, 5)
    rim = floor & ~cv2.erode(floor.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    reach = float(np.median(to_web[rim]))
    k = 2 * round(reach) + 1
    grown = cv2.dilate(floor.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                          (k, k)))
    return grown.astype(bool) & ~web


def _reading_order(polys: list[np.ndarray]) -> list[np.ndarray]:
    """Polygons sorted in rows (top to bottom), left to right within a row."""
    rest = sorted(polys, key=lambda p: float(p[:, 1].min()))
    rows: list[list[np.ndarray]] = []
    for p in rest:
        centre = float(p[:, 1].mean())
        # Same row if its centre lies within the vertical span of the row's first member.
        if rows and rows[-1][0][:, 1].min() <= centre <= rows[-1][0][:, 1].max():
            rows[-1].append(p)
        else:
            rows.append([p])
    return [p for row in rows for p in sorted(row, key=lambda q: float(q[:, 0].mean()))]


def propose_compartments(empty_tray: ImageLike, work_side: int = WORK_SIDE
                         ) -> list[Compartment]:
    """Suggested compartments (slot-1.. in reading order) of an empty-tray photo, for an admin."""
    _, gray, s, _ = rgb_gray(empty_tray, work_side)
    floors, web = _regions(gray)
    polys = []
    for floor in floors:
        well = _grow(floor, web).astype(np.uint8)
        contours, _ = cv2.findContours(well, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        c = max(contours, key=cv2.contourArea)
        approx = cv2.approxPolyDP(c, POLY_EPSILON * cv2.arcLength(c, True), True)
        # Contour points are pixel centres on the region's edge: +0.5 px reaches its border.
        polys.append((approx.reshape(-1, 2).astype(np.float64) + 0.5) / s - 0.5)
    return [Compartment(f"slot-{i + 1}", tuple((float(x), float(y)) for x, y in p))
            for i, p in enumerate(_reading_order(polys))]
