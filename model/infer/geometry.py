"""Box geometry shared by the runtime, the evaluator, the importers and the service (numpy)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]


class GeometryError(ValueError):
    """Boxes that are not finite [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0."""


def as_boxes(boxes: npt.ArrayLike, name: str = "boxes") -> np.ndarray:
    """Validate an (N, 4) array of [x0, y0, x1, y1] boxes (float64)."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name}: box coordinates must be finite")
    if np.any(arr[:, 2] < arr[:, 0]) or np.any(arr[:, 3] < arr[:, 1]):
        raise GeometryError(f"{name}: boxes must be [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0")
    return arr


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """IoU matrix (N, M) between two sets of [x0, y0, x1, y1] boxes."""
    aa, bb = as_boxes(a, "a"), as_boxes(b, "b")
    lt = np.maximum(aa[:, None, :2], bb[None, :, :2])
    rb = np.minimum(aa[:, None, 2:], bb[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(aa[:, 2:] - aa[:, :2], axis=1)
    area_b = np.prod(bb[:, 2:] - bb[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    # Two zero-area boxes have no meaningful overlap: IoU 0 rather than 0/0.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pair_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two single boxes."""
    return float(box_iou([a], [b])[0, 0])
