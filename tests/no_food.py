"""Real photos with no food on them, made honestly for the no_food_found tests:

- an empty tray: the composed test bed's empty-tray reference photo of kiosk EMPTY_KIOSK
  (model.data.traybed, the kiosk tests/serve/api/test_analyze_layout.py uses), as a kiosk
  camera would send it (JPEG 92);
- a coin alone: the part of an ECUSTFD fixture photo around its coin that no annotated food
  box touches (the coin is a scale reference, not food).

The tests that use them check that the shipped model really finds no food on them: a model
that finds something here fails those tests, it is not silently "no food".
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from model.data import traybed as tb
from model.data.importers.ecustfd import read_voc

EMPTY_KIOSK = 5
SIZE = (640, 480)
COIN_PHOTO = "mix012T(4)"  # a mango, a lemon and a coin on a plate's edge
COIN_PAD = 3.0  # the crop: the coin box grown by 3 coin sizes each way, clear of the foods


def jpeg(rgb: np.ndarray | Image.Image) -> bytes:
    """JPEG bytes (quality 92) of an RGB array or image."""
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def empty_tray_kiosk() -> tb.Kiosk:
    """The composed kiosk whose empty-tray photo is the no-food photo."""
    return tb.make_kiosk(EMPTY_KIOSK, SIZE)


def empty_tray_jpeg(kiosk: tb.Kiosk | None = None) -> bytes:
    """The kiosk's empty tray, photographed from its usual pose."""
    return jpeg((kiosk or empty_tray_kiosk()).reference)


def coin_only_jpeg(fixtures_dir: Path) -> bytes:
    """The ECUSTFD photo cropped to its coin and the table around it, no food in the crop."""
    ecustfd = fixtures_dir / "ecustfd"
    name, _, _, objects = read_voc(ecustfd / "Annotations" / f"{COIN_PHOTO}.xml")
    photo = ImageOps.exif_transpose(Image.open(ecustfd / "JPEGImages" / name)).convert("RGB")
    coin = next(box for label, box in objects if label == "coin")
    w, h = coin[2] - coin[0], coin[3] - coin[1]
    crop = (max(0.0, coin[0] - COIN_PAD * w), max(0.0, coin[1] - COIN_PAD * h),
            min(float(photo.width), coin[2] + COIN_PAD * w),
            min(float(photo.height), coin[3] + COIN_PAD * h))
    foods = [box for label, box in objects if label != "coin"]
    assert all(f[2] <= crop[0] or f[0] >= crop[2] or f[3] <= crop[1] or f[1] >= crop[3]
               for f in foods), "the coin crop touches an annotated food"
    return jpeg(photo.crop(tuple(round(v) for v in crop)))
