"""What the evaluation's sections share: its settings and error, and small converters."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model import metrics
from model.data.coco import Annotation
from model.infer.runtime import Item


class EvaluationError(ValueError):
    """The evaluation cannot run as asked (missing data, too few objects for menus)."""


@dataclass(frozen=True)
class EvalConfig:
    """Knobs of one evaluation run; written into the JSON so a report says how it was made."""

    iou_threshold: float = 0.5
    # mAP needs the low-score tail of detections; the service's threshold would cut it.
    detection_score_min: float = 0.05
    ece_bins: int = 10
    k_enrol: int = 3
    menu_size: int = 5
    n_menus: int = 500
    seed: int = 0
    batch_size: int = 4
    # The served post-processing refines masks to the food (PostConfig.refine_masks): the
    # grams and the drawn-outline mask IoU are then measured with refined masks.
    refine_masks: bool = False


def xyxy(ann: Annotation) -> metrics.BoxT:
    """COCO [x, y, w, h] -> [x0, y0, x1, y1]."""
    x, y, w, h = ann.bbox
    return (x, y, x + w, y + h)


def best_match(box: metrics.BoxT, items: Sequence[Item], iou: float) -> Item | None:
    """The item whose box overlaps `box` most, if that box IoU is >= iou."""
    if not items:
        return None
    ious = metrics.box_iou([box], [it.box for it in items])[0]
    best = int(np.argmax(ious))
    return items[best] if ious[best] >= iou else None


def calibration(conf: Sequence[float], correct: Sequence[bool], bins: int) -> dict[str, Any]:
    """ECE as a JSON-ready dict (None when there is nothing to calibrate)."""
    if not conf:
        return {"ece": None, "n": 0, "bins": []}
    return asdict(metrics.expected_calibration_error(conf, correct, bins))


def fmt(value: float | None, pct: bool = False) -> str:
    """A number for the markdown tables; '-' when missing."""
    if value is None:
        return "-"
    return f"{value * 100:.1f}%" if pct else f"{value:.3f}"
