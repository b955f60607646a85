"""Mask PNGs whose pixel value is the class id (the canteen-leftover benchmark format).

A classes file maps values to names ("id name" per line, or one name per line with the
line number as id). "background" and the ignore value are not objects. Semantic masks
do not separate two items of one class, so each connected blob becomes one instance.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.data.builder import DatasetBuilder
from model.data.coco import CocoDataset
from model.data.importers.common import IMAGE_SUFFIXES, SourceFormatError, image_size
from model.data.masks import compress_rle, mask_bbox, rle_encode

SOURCE = "maskpng"
BACKGROUND = "background"
IGNORE_VALUE = 255
# Blobs smaller than this are antialiasing specks at class borders, not food items.
MIN_BLOB_PX = 16


def read_classes(path: Path) -> dict[int, str]:
    """Pixel value -> class name from a classes file."""
    if not path.is_file():
        raise SourceFormatError(f"{path}: classes file not found")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    out: dict[int, str] = {}
    for i, line in enumerate(lines):
        head, _, rest = line.partition(" ")
        value, name = (int(head), rest.strip()) if head.isdigit() and rest.strip() else (i, line)
        if not 0 <= value <= 255 or value in out:
            raise SourceFormatError(f"{path}:{i + 1}: bad or repeated value {value}")
        out[value] = name
    return out


def find_image(images_dir: Path, stem: str) -> Path:
    """The image with this stem (any image suffix) in images_dir."""
    for cand in sorted(images_dir.glob(f"{stem}.*")):
        if cand.suffix.lower() in IMAGE_SUFFIXES:
            return cand
    raise SourceFormatError(f"{images_dir}: no image named {stem}.* for its mask")


def read_mask(path: Path) -> np.ndarray:
    """A single-channel class-id mask (uint8)."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise SourceFormatError(f"{path}: not a readable PNG")
    if m.ndim != 2 or m.dtype != np.uint8:
        raise SourceFormatError(f"{path}: expected an 8-bit single-channel mask, got {m.shape}")
    return m


def import_mask_png(
    images_dir: str | Path, masks_dir: str | Path, classes_file: str | Path
) -> CocoDataset:
    """Import mask PNGs (named like their images) as gt instance masks."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    classes = read_classes(Path(classes_file))
    masks = sorted(masks_dir.glob("*.png"))
    if not masks:
        raise SourceFormatError(f"{masks_dir}: no mask PNGs")
    b = DatasetBuilder(image_root=images_dir.resolve(), source=SOURCE,
                       categories=[n for n in classes.values() if n.lower() != BACKGROUND])
    for mpath in masks:
        _add_mask(b, images_dir, mpath, classes)
    return b.build()


def _add_mask(b: DatasetBuilder, images_dir: Path, mpath: Path, classes: dict[int, str]) -> None:
    """One class-id mask -> an image and an instance per blob."""
    image = find_image(images_dir, mpath.stem)
    mask = read_mask(mpath)
    width, height = image_size(image)
    if mask.shape != (height, width):
        raise SourceFormatError(f"{mpath}: mask {mask.shape[::-1]} differs from image size")
    iid = b.image(image.name, width, height)
    for value in np.unique(mask).tolist():
        if value == IGNORE_VALUE:
            continue
        if value not in classes:
            raise SourceFormatError(f"{mpath}: pixel value {value} is not in the classes file")
        if classes[value].lower() == BACKGROUND:
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats((mask == value).astype(np.uint8))
        for k in range(1, n):
            if stats[k, cv2.CC_STAT_AREA] >= MIN_BLOB_PX:
                blob = labels == k
                b.annotation(iid, classes[value], mask_bbox(blob), mask_source="gt",
                             segmentation=compress_rle(rle_encode(blob)), area=float(blob.sum()))
