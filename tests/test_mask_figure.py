"""scripts/mask_figure.py draws a photo's drawn outlines and both kinds of mask (the model
card's picture), here on the LabelMe fixture's apple and orange."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from scripts.mask_figure import DRAWN, REFINED, main
from serve.core.settings import SHIPPED_MODEL

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "labelme" / "mix001T(1).json"


def test_the_picture_shows_outlines_and_masks(tmp_path: Path) -> None:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL}")
    out = tmp_path / "masks.png"
    assert main([str(FIXTURE), str(out), "--width", "320"]) == 0
    picture = cv2.imread(str(out))
    assert picture.shape == (240, 320, 3)  # the 816 x 612 photo at 320 px wide
    for colour in (DRAWN, REFINED):  # the drawn fruits, and the masks found on them
        near = np.abs(picture.astype(int) - np.array(colour)).sum(axis=2) < 60
        assert near.sum() > 100, colour
    assert main([str(FIXTURE), str(tmp_path / "nowhere" / "x.png")]) == 2
