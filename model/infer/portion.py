"""Portion estimation in numpy (torch-free): image scale, item area, grams with a range.

grams = exp(a_c + b_c * log(area_cm2)) per class c: a learned areal density fitted on training
objects. The range comes from the spread of held-out (cross-validated) log residuals, so it
says how far off the fit has been on objects it did not see. A depth map turns area into
volume, and volume x density (g/ml) into grams.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

COIN_DIAMETER_CM = 2.5  # the 1-yuan coin of ECUSTFD; any 25.0 mm coin works the same way
COIN_LABEL = "coin"
RANGE_QUANTILES = (0.1, 0.9)  # grams_range covers the central 80% of held-out errors
MIN_FIT_SAMPLES = 4


class PortionError(ValueError):
    """A portion input that cannot be used (bad scale, mismatched shapes, too little data)."""


@dataclass(frozen=True)
class ClassFit:
    """Per-class log-log fit of grams on area, with held-out residual quantiles."""

    a: float
    b: float
    resid_lo: float
    resid_hi: float
    n: int
    density_g_per_ml: float | None = None

    def grams(self, area_cm2: float) -> tuple[float, tuple[float, float]]:
        """Point estimate and range for one area (cm^2)."""
        if not area_cm2 > 0:
            raise PortionError(f"area must be > 0 cm2, got {area_cm2}")
        log_g = self.a + self.b * math.log(area_cm2)
        return math.exp(log_g), (math.exp(log_g + self.resid_lo), math.exp(log_g + self.resid_hi))


def coin_px_per_cm(box: Sequence[float], diameter_cm: float = COIN_DIAMETER_CM) -> float:
    """Scale from a coin's box: the mean of width and height is its diameter in pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = x1 - x0, y1 - y0
    if width <= 0 or height <= 0:
        raise PortionError(f"coin box has no area: {box}")
    return (width + height) / 2.0 / diameter_cm


def reference_px_per_cm(box: Sequence[float], size_cm: float) -> float:
    """Scale from a round reference of known diameter (plate, bowl): its box's longer side."""
    if size_cm <= 0:
        raise PortionError(f"reference size must be > 0 cm, got {size_cm}")
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    if side <= 0:
        raise PortionError(f"reference box has no area: {box}")
    return side / size_cm


def area_cm2(area_px: float, px_per_cm: float) -> float:
    """Pixel area -> cm^2 for a top view at a known scale."""
    if not px_per_cm > 0:
        raise PortionError(f"px_per_cm must be > 0, got {px_per_cm}")
    return float(area_px) / (px_per_cm * px_per_cm)


def depth_volume_ml(mask: np.ndarray, depth_mm: np.ndarray, px_per_cm: float) -> float:
    """Food volume (ml) from a top-view depth map (camera distance, mm) inside a mask.

    The support surface is the median depth of a ring just outside the mask, so the camera
    need not be level with a known height; height above it is summed over mask pixels.
    """
    if mask.shape != depth_mm.shape:
        raise PortionError(f"mask {mask.shape} and depth {depth_mm.shape} differ in shape")
    if not px_per_cm > 0:
        raise PortionError(f"px_per_cm must be > 0, got {px_per_cm}")
    inside = mask.astype(bool)
    if not inside.any():
        return 0.0
    ring = _ring(inside, width=max(2, round(px_per_cm * 0.5)))
    valid_ring = ring & np.isfinite(depth_mm) & (depth_mm > 0)
    if not valid_ring.any():
        raise PortionError("no valid depth around the item to find the surface it stands on")
    surface = float(np.median(depth_mm[valid_ring]))
    heights_cm = np.clip(surface - depth_mm[inside], 0.0, None) / 10.0
    heights_cm = np.nan_to_num(heights_cm, nan=0.0)
    pixel_cm2 = 1.0 / (px_per_cm * px_per_cm)
    return float(heights_cm.sum() * pixel_cm2)


def _ring(inside: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` of the mask but outside it (a dilation without OpenCV)."""
    grown = inside.copy()
    for _ in range(width):
        step = grown.copy()
        step[1:, :] |= grown[:-1, :]
        step[:-1, :] |= grown[1:, :]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown & ~inside


def fit_class(areas_cm2: np.ndarray, grams: np.ndarray, folds: int = 5, seed: int = 0) -> ClassFit:
    """Fit log g = a + b log area; range from k-fold held-out residuals."""
    x = np.log(np.asarray(areas_cm2, dtype=np.float64))
    y = np.log(np.asarray(grams, dtype=np.float64))
    if x.shape != y.shape or x.ndim != 1:
        raise PortionError("areas and grams must be 1-D arrays of the same length")
    if len(x) < MIN_FIT_SAMPLES:
        raise PortionError(f"need >= {MIN_FIT_SAMPLES} objects to fit, got {len(x)}")
    a, b = _linfit(x, y)
    resid = _cv_residuals(x, y, folds, seed)
    lo, hi = np.quantile(resid, RANGE_QUANTILES)
    return ClassFit(a=a, b=b, resid_lo=float(lo), resid_hi=float(hi), n=len(x))


def _linfit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares line; slope shrunk toward 1 (grams ~ area) when x barely varies."""
    var = float(np.var(x))
    prior_weight = 0.01  # a weak prior keeps tiny or uniform classes physically sensible
    b = (float(np.cov(x, y, bias=True)[0, 1]) + prior_weight * 1.0) / (var + prior_weight)
    a = float(np.mean(y) - b * np.mean(x))
    return a, b


def _cv_residuals(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Residuals of each object under a fit that did not see it."""
    order = np.random.default_rng(seed).permutation(len(x))
    resid = np.empty(len(x))
    for k in range(min(folds, len(x))):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        a, b = _linfit(x[train], y[train])
        resid[test] = y[test] - (a + b * x[test])
    return resid


def fit_calibration(
    labels: Sequence[str],
    areas_cm2: Sequence[float],
    grams: Sequence[float],
    densities: Mapping[str, float | None] | None = None,
) -> dict[str, ClassFit]:
    """Per-label fits for every label with enough measured objects."""
    lab = np.asarray(labels)
    area = np.asarray(areas_cm2, dtype=np.float64)
    g = np.asarray(grams, dtype=np.float64)
    out: dict[str, ClassFit] = {}
    for name in sorted(set(lab.tolist())):
        sel = (lab == name) & (area > 0) & (g > 0)
        if sel.sum() < MIN_FIT_SAMPLES:
            continue
        fit = fit_class(area[sel], g[sel])
        density = (densities or {}).get(name)
        out[name] = ClassFit(**{**asdict(fit), "density_g_per_ml": density})
    return out


def calibration_to_json(table: Mapping[str, ClassFit]) -> dict[str, dict[str, Any]]:
    """JSON-able form for the ONNX metadata."""
    return {name: asdict(fit) for name, fit in table.items()}


def calibration_from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[str, ClassFit]:
    """Inverse of calibration_to_json; rejects malformed entries clearly."""
    out: dict[str, ClassFit] = {}
    for name, entry in data.items():
        try:
            out[name] = ClassFit(**entry)
        except TypeError as exc:
            raise PortionError(f"bad portion calibration for {name!r}: {exc}") from exc
    return out


def estimate_grams(
    fit: ClassFit | None,
    area: float | None,
    volume_ml: float | None = None,
) -> tuple[float | None, tuple[float, float] | None]:
    """Grams and range from a depth volume (when density known) or from the area fit."""
    if fit is None:
        return None, None
    if volume_ml is not None and fit.density_g_per_ml:
        grams = volume_ml * fit.density_g_per_ml
        # Depth removes the shape guess, not all error: keep the fit's relative spread.
        return grams, (grams * math.exp(fit.resid_lo), grams * math.exp(fit.resid_hi))
    if area is None or area <= 0:
        return None, None
    return fit.grams(area)


# Classes below this posterior share do not widen an item's grams range.
MIXTURE_MIN_SHARE = 0.1


def posterior_grams(
    table: Mapping[str, ClassFit],
    labels: Sequence[str],
    class_scores: np.ndarray,
    top: int,
    area: float | None,
    volume_ml: float | None = None,
) -> tuple[float | None, tuple[float, float] | None]:
    """Grams averaged in log space over the classes the classifier finds likely.

    Why: a confusable pair (orange/lemon, bread/sachima) with different areal densities
    makes a hard top-1 choice swing the grams; the expected log grams under the class
    posterior is the estimate with the least expected log error. The range spans the
    ranges of every class holding at least MIXTURE_MIN_SHARE of the weight. Only when the
    top class itself has a fit (a food, not a course label or the coin).
    """
    if labels[top] not in table:
        return None, None
    parts: list[tuple[float, float, tuple[float, float]]] = []
    for i, name in enumerate(labels):
        share = float(class_scores[i])
        if name in table and share > 0:
            grams, rng = estimate_grams(table[name], area, volume_ml)
            if grams is not None and rng is not None:
                parts.append((share, grams, rng))
    if not parts:
        return None, None
    if any(g <= 0 for _, g, _ in parts):  # a flat depth map: no volume, no log average
        return estimate_grams(table[labels[top]], area, volume_ml)
    total = sum(share for share, _, _ in parts)
    log_g = sum(share * math.log(g) for share, g, _ in parts) / total
    wide = [rng for share, _, rng in parts if share / total >= MIXTURE_MIN_SHARE]
    grams = math.exp(log_g)
    low = min([grams, *(lo for lo, _ in wide)])
    high = max([grams, *(hi for _, hi in wide)])
    return grams, (low, high)
