"""Overlay captions: a menu dish by its own (Korean) name, drawn with real Hangul glyphs."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve.core.overlay import HANGUL_FONTS, OverlayItem, caption, display_name, render_overlay


def test_display_name_prefers_the_dishs_own_name() -> None:
    assert display_name("쌀밥", "d1", "Cooked rice") == "쌀밥"
    assert display_name("apple", None, "Apples, raw") == "Apples, raw"
    assert display_name("unidentified", None, None) == "unidentified"
    assert caption("쌀밥", "쌀밥", 210.4) == "쌀밥 210 g"
    assert caption(None, "unidentified", None) == "unidentified ? g"


def _drawn(text: str) -> np.ndarray:
    photo = Image.new("RGB", (400, 300), (90, 90, 90))
    png = render_overlay(photo, [OverlayItem([50, 80, 350, 280], [], text)])
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))[:80]


def test_korean_captions_draw_glyphs_not_boxes() -> None:
    if not any(Path(p).is_file() for p in HANGUL_FONTS):
        pytest.skip("no Hangul font installed (apt-get install fonts-nanum)")
    # Without Hangul glyphs every syllable draws as the same box: the two would be equal.
    assert np.abs(_drawn("쌀밥 210 g").astype(int) - _drawn("김치 210 g").astype(int)).sum() > 0
