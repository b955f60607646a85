"""LabelMe JSON (polygons, rectangles, circles) -> COCO with gt polygon masks.

Shapes sharing a group_id form one object (LabelMe's way to draw a multi-part item).
The image is found through `imagePath`, relative to the JSON file.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from model.data.builder import DatasetBuilder
from model.data.coco import CocoDataset
from model.data.importers.common import SourceFormatError, image_size, read_json_object
from model.data.masks import mask_bbox, polygons_to_mask

SOURCE = "labelme"
SHAPES = ("polygon", "rectangle", "circle")
CIRCLE_POINTS = 32


def shape_polygon(shape: dict[str, Any], where: str) -> list[float]:
    """A LabelMe shape as one flat polygon [x0, y0, x1, y1, ...]."""
    kind = shape.get("shape_type") or "polygon"
    try:
        pts = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceFormatError(f"{where}.points: expected [[x, y], ...]") from exc
    if kind == "rectangle" and len(pts) == 2:
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    elif kind == "circle" and len(pts) == 2:
        r = float(np.hypot(*(pts[1] - pts[0])))
        t = np.linspace(0, 2 * math.pi, CIRCLE_POINTS, endpoint=False)
        pts = np.stack([pts[0][0] + r * np.cos(t), pts[0][1] + r * np.sin(t)], axis=1)
    elif kind not in SHAPES:
        raise SourceFormatError(f"{where}.shape_type: {kind!r} is not an object outline {SHAPES}")
    if len(pts) < 3:
        raise SourceFormatError(f"{where}.points: a {kind} needs more points")
    return [float(v) for v in pts.reshape(-1)]


def read_labelme(path: Path) -> tuple[Path, dict[str, Any]]:
    """(image path, document) of one LabelMe file."""
    doc = read_json_object(path, "shapes", "LabelMe")
    if not isinstance(doc.get("imagePath"), str):
        raise SourceFormatError(f"{path}.imagePath: missing")
    return (path.parent / doc["imagePath"]).resolve(), doc


def import_labelme(src: str | Path) -> CocoDataset:
    """Import one LabelMe JSON file or every *.json below a folder."""
    src = Path(src)
    files = sorted(src.rglob("*.json")) if src.is_dir() else [src]
    if not files:
        raise SourceFormatError(f"{src}: no LabelMe JSON files")
    docs = [read_labelme(f) for f in files]
    root = Path(os.path.commonpath([str(p.parent) for p, _ in docs]))
    b = DatasetBuilder(image_root=root, source=SOURCE)
    for f, (image, doc) in zip(files, docs, strict=True):
        _add_doc(b, f, image, root, doc)
    return b.build()


def _add_doc(b: DatasetBuilder, f: Path, image: Path, root: Path, doc: dict[str, Any]) -> None:
    """One LabelMe file -> an image and one annotation per object."""
    width, height = image_size(image)
    stated = (doc.get("imageWidth"), doc.get("imageHeight"))
    if None not in stated and stated != (width, height):
        raise SourceFormatError(f"{f}: imageWidth/Height {stated} differ from the image")
    iid = b.image(image.relative_to(root).as_posix(), width, height)
    objects: dict[Any, tuple[str, list[list[float]]]] = {}
    for k, shape in enumerate(doc["shapes"]):
        where = f"{f}: shapes[{k}]"
        label = shape.get("label")
        if not isinstance(label, str) or not label.strip():
            raise SourceFormatError(f"{where}.label: missing")
        key = ("group", shape["group_id"]) if shape.get("group_id") is not None else ("k", k)
        if key in objects and objects[key][0] != label.strip():
            raise SourceFormatError(f"{where}: group_id {shape['group_id']} mixes labels")
        objects.setdefault(key, (label.strip(), []))[1].append(shape_polygon(shape, where))
    for label, polys in objects.values():
        mask = polygons_to_mask(polys, height, width)
        if not mask.any():
            raise SourceFormatError(f"{f}: the {label!r} outline lies outside the image")
        b.annotation(iid, label, mask_bbox(mask), segmentation=polys, mask_source="gt",
                     area=float(mask.sum()))
