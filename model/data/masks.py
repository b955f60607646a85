"""Mask encodings in numpy: COCO polygons and RLE (uncompressed and compressed strings).

RLE follows pycocotools exactly (column-major runs starting with background; the
compressed string is its 6-bit LEB128-like code with delta coding), so files written
here open in any COCO tool.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from model.data.coco import Annotation, CocoFormatError, Segmentation


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterise flat COCO polygons [x0, y0, x1, y1, ...] into a bool mask (h, w)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    pts = [np.round(np.asarray(p, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
           for p in polygons]
    cv2.fillPoly(mask, pts, 1)
    return mask.astype(bool)


def mask_to_polygons(mask: np.ndarray, tolerance_px: float = 1.0) -> list[list[float]]:
    """Outer contours of a bool mask as flat COCO polygons, simplified to tolerance_px."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polys: list[list[float]] = []
    for c in contours:
        if tolerance_px > 0:
            c = cv2.approxPolyDP(c, tolerance_px, True)
        if len(c) >= 3:
            polys.append([float(v) for v in c.reshape(-1)])
    return polys


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Bool mask (h, w) -> uncompressed COCO RLE {"size": [h, w], "counts": [...]}."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    # Run boundaries: where the value changes; COCO counts start with a (maybe empty) 0-run.
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (uncompressed list or compressed string counts) -> bool mask (h, w)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CocoFormatError(f"RLE needs 'size': [h, w] and 'counts' ({exc})") from exc
    if isinstance(counts, str | bytes):
        counts = rle_string_to_counts(counts.decode() if isinstance(counts, bytes) else counts)
    runs = np.asarray(counts, dtype=np.int64)
    if runs.sum() != h * w or (runs < 0).any():
        raise CocoFormatError(f"RLE counts sum to {int(runs.sum())}, expected h*w = {h * w}")
    values = np.arange(len(runs)) % 2 == 1
    flat = np.repeat(values, runs)
    return flat.reshape((h, w), order="F")


def counts_to_rle_string(counts: list[int]) -> str:
    """Compress RLE counts into the pycocotools string code."""
    out: list[str] = []
    for i, c in enumerate(counts):
        x = int(c)
        if i > 2:  # pycocotools codes runs after the second as deltas
            x -= int(counts[i - 2])
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = not ((ch & 0x10 == 0 and x == 0) or (ch & 0x10 and x == -1))
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def rle_string_to_counts(s: str) -> list[int]:
    """Decompress a pycocotools RLE string into counts."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise CocoFormatError("RLE string ends inside a number")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def compress_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> compressed (string counts), the compact form saved in files."""
    counts = rle["counts"]
    if isinstance(counts, str):
        return rle
    return {"size": list(rle["size"]), "counts": counts_to_rle_string(list(counts))}


def segmentation_to_mask(seg: Segmentation, height: int, width: int) -> np.ndarray:
    """Any COCO segmentation (polygons or RLE) -> bool mask (h, w)."""
    if isinstance(seg, dict):
        mask = rle_decode(seg)
        if mask.shape != (height, width):
            raise CocoFormatError(f"RLE size {mask.shape} differs from image {(height, width)}")
        return mask
    return polygons_to_mask(seg, height, width)


def annotation_mask(ann: Annotation, height: int, width: int) -> np.ndarray | None:
    """The annotation's mask, or None when it only has a box."""
    if ann.segmentation is None:
        return None
    return segmentation_to_mask(ann.segmentation, height, width)


def mask_bbox(mask: np.ndarray) -> list[float]:
    """Tight COCO box [x, y, w, h] of a non-empty bool mask."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("empty mask has no box")
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]
