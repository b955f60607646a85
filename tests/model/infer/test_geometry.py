"""The one box IoU (model.infer.geometry), checked by hand."""
from __future__ import annotations

import pytest

from model.infer.geometry import GeometryError, box_iou, pair_iou


def test_box_iou_by_hand() -> None:
    # a = [0,0,10,10] (area 100), b = [5,5,15,15] (area 100): overlap [5,5,10,10] = 25,
    # union = 100 + 100 - 25 = 175, IoU = 25/175 = 1/7. c is disjoint from a: IoU 0.
    iou = box_iou([[0, 0, 10, 10]], [[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]])
    assert iou.shape == (1, 3)
    assert iou[0, 0] == pytest.approx(1 / 7)
    assert iou[0, 1] == 0.0
    assert iou[0, 2] == 1.0


def test_box_iou_rejects_inverted_boxes() -> None:
    with pytest.raises(GeometryError, match="x1 >= x0"):
        box_iou([[10, 0, 0, 10]], [[0, 0, 1, 1]])


def test_pair_iou_hand_checked() -> None:
    # 10x10 boxes offset by 5 in x: overlap 5x10 = 50, union 150
    assert pair_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert pair_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert pair_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
