"""ECUSTFD: Pascal VOC boxes (food + 1-yuan coin), weights.csv grams, coin scale.

Image names start with the object id (`apple001T(1).JPG` -> `apple001`). A `mix` image
holds two foods of different kinds; weights.csv has one row per food for a mix id, so
grams are matched by (object id, food name). The mix rows repeat the exact volume and
weight of single-food objects (mix001's apple is apple003): they are the same physical
foods, so those ids share one split group and never land on both sides of a split.
"""
from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.data.builder import DatasetBuilder
from model.data.coco import CocoDataset
from model.data.importers.common import SourceFormatError, image_size
from model.infer.geometry import pair_iou
from model.infer.portion import coin_px_per_cm  # the one coin scale (runtime + importers)

SOURCE = "ecustfd"
COIN_LABEL = "coin"
# Coin/food overlaps that only annotation mistakes produce (see _check_coin).
COPY_IOU = 0.9
MISPLACED_IOU = 0.1
_OBJECT_ID = re.compile(r"^(?P<oid>[a-z_]+\d+)T\(\d+\)$")


@dataclass(frozen=True)
class Weight:
    """One weights.csv row."""

    object_id: str
    food: str
    volume_ml: float
    weight_g: float


def read_weights(path: Path) -> dict[tuple[str, str], Weight]:
    """weights.csv -> {(object_id, food): Weight}; errors name the line."""
    if not path.is_file():
        raise SourceFormatError(f"{path}: weights.csv not found")
    out: dict[tuple[str, str], Weight] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        need = {"object_id", "food", "volume_ml", "weight_g"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise SourceFormatError(f"{path}: header must contain {sorted(need)}")
        for i, row in enumerate(reader, start=2):
            try:
                w = Weight(row["object_id"], row["food"], float(row["volume_ml"]),
                           float(row["weight_g"]))
            except (TypeError, ValueError) as exc:
                raise SourceFormatError(f"{path}:{i}: bad number in {row}") from exc
            if w.weight_g <= 0:
                raise SourceFormatError(f"{path}:{i}: weight_g must be > 0")
            out[(w.object_id, w.food)] = w
    return out


def object_groups(weights: dict[tuple[str, str], Weight]) -> dict[str, str]:
    """object id -> split group: ids whose rows are the same physical food are joined."""
    parent: dict[str, str] = {oid: oid for oid, _ in weights}

    def find(x: str) -> str:
        """Root of x in the union-find forest."""
        while parent[x] != x:
            x = parent[x]
        return x

    by_measure: dict[tuple[str, float, float], str] = {}
    for (oid, food), w in sorted(weights.items()):
        key = (food, w.volume_ml, w.weight_g)
        if key in by_measure:
            a, b = sorted((find(by_measure[key]), find(oid)))
            parent[b] = a  # the smallest id names the group
        else:
            by_measure[key] = oid
    return {oid: find(oid) for oid in parent}


def object_id_of(stem: str) -> str:
    """`apple001T(1)` -> `apple001`; clear error for names outside the scheme."""
    m = _OBJECT_ID.match(stem)
    if m is None:
        raise SourceFormatError(f"{stem}: image name does not start with an object id + 'T(n)'")
    return m["oid"]


def read_voc(path: Path) -> tuple[str, int, int, list[tuple[str, list[float]]]]:
    """(file name, width, height, [(label, [x0, y0, x1, y1])]) from a VOC XML file."""
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        width = int(size.findtext("width", "")) if size is not None else 0
        height = int(size.findtext("height", "")) if size is not None else 0
        objs = []
        for ob in root.findall("object"):
            box = ob.find("bndbox")
            if box is None:
                raise SourceFormatError(f"{path}: object without <bndbox>")
            coords = [float(box.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax")]
            objs.append((ob.findtext("name", "").strip(), coords))
    except (ET.ParseError, ValueError) as exc:
        raise SourceFormatError(f"{path}: malformed VOC XML ({exc})") from exc
    return root.findtext("filename", path.stem + ".JPG"), width, height, objs


def import_ecustfd(root: str | Path, strict: bool = False) -> CocoDataset:
    """Import ECUSTFD (root holds JPEGImages/, Annotations/, weights.csv).

    A problem confined to one image (no weights row, labels weights.csv contradicts, no
    food box, unreadable XML) drops that image with the reason in info["dropped"], so a
    larger or held-out copy of the set still imports; strict=True raises instead.
    Problems with weights.csv itself always raise.
    """
    root = Path(root)
    weights = read_weights(root / "weights.csv")
    groups = object_groups(weights)
    xmls = sorted((root / "Annotations").glob("*.xml"))
    if not xmls:
        raise SourceFormatError(f"{root / 'Annotations'}: no VOC XML files")
    b = DatasetBuilder(image_root=(root / "JPEGImages").resolve(), source=SOURCE)
    for xml_path in xmls:
        try:
            _add_image(b, root, xml_path, weights, groups)
        except SourceFormatError as exc:
            if strict:
                raise
            b.ds.info.setdefault("dropped", []).append({"file": xml_path.name, "why": str(exc)})
    return b.build()


def _add_image(
    b: DatasetBuilder,
    root: Path,
    xml_path: Path,
    weights: dict[tuple[str, str], Weight],
    groups: dict[str, str],
) -> None:
    """One VOC file -> an image with food grams and coin scale; raises on a bad image."""
    file_name, width, height, objs = read_voc(xml_path)
    oid = object_id_of(Path(file_name).stem)
    if oid not in groups:
        raise SourceFormatError(f"{xml_path}: object {oid} has no row in weights.csv")
    if (width, height) != image_size(root / "JPEGImages" / file_name):
        raise SourceFormatError(f"{xml_path}: <size> differs from the image file")
    if not any(label != COIN_LABEL for label, _ in objs):
        raise SourceFormatError(f"{xml_path}: no food box (only {[lab for lab, _ in objs]})")
    objs = _fix_mislabel(objs, oid, weights, xml_path, b.ds.info)
    cleaned = _check_coin(objs, xml_path.name, b.ds.info)
    if cleaned is None:
        return
    objs = cleaned
    coins = [box for label, box in objs if label == COIN_LABEL]
    scale = coin_px_per_cm(coins[0]) if len(coins) == 1 else None
    iid = b.image(file_name, width, height, px_per_cm=scale, split_group=groups[oid])
    for label, (x0, y0, x1, y1) in objs:
        grams = None
        if label != COIN_LABEL:
            grams = weights[(oid, label)].weight_g
        # A mix id names two foods, so its objects are told apart by label.
        obj = oid if not oid.startswith("mix") else f"{oid}/{label}"
        b.annotation(iid, label, [x0, y0, x1 - x0, y1 - y0], grams=grams,
                     object_id=None if label == COIN_LABEL else obj)


def _check_coin(
    objs: list[tuple[str, list[float]]], name: str, info: dict[str, Any]
) -> list[tuple[str, list[float]]] | None:
    """Drop impossible coin/food boxes; None drops the whole image (recorded in info).

    The coin lies beside the plate, so it never overlaps a food. In 11 files the coin box
    is a copy of the food box (IoU > COPY_IOU): the coin is dropped and the scale is
    unknown. In 6 files the food box sits on the coin (IoU >= MISPLACED_IOU): the food is
    not boxed, so the image is dropped rather than teach the model a wrong box.
    """
    coins = [box for label, box in objs if label == COIN_LABEL]
    if len(coins) != 1:
        return objs
    ious = [pair_iou(box, coins[0]) for label, box in objs if label != COIN_LABEL]
    if any(v > COPY_IOU for v in ious):
        info.setdefault("corrections", []).append(
            {"file": name, "label": COIN_LABEL, "corrected_to": None,
             "why": "coin box equals a food box; coin dropped, scale unknown"})
        return [(label, box) for label, box in objs if label != COIN_LABEL]
    if any(v >= MISPLACED_IOU for v in ious):
        info.setdefault("dropped", []).append(
            {"file": name, "why": "a food box lies on the coin, the food is not boxed"})
        return None
    return objs


def _fix_mislabel(
    objs: list[tuple[str, list[float]]],
    oid: str,
    weights: dict[tuple[str, str], Weight],
    xml_path: Path,
    info: dict[str, Any],
) -> list[tuple[str, list[float]]]:
    """Correct a food label that weights.csv contradicts, when only one reading fits.

    mix012T(4).xml calls the orange 'mango' while weights.csv lists lemon + orange for
    mix012 (the photo shows an orange). Each fix is recorded in info["corrections"].
    """
    expected = {food for (o, food) in weights if o == oid}
    labels = [label for label, _ in objs if label != COIN_LABEL]
    unknown = [lab for lab in labels if lab not in expected]
    if not unknown:
        return objs
    missing = sorted(expected - set(labels))
    if len(unknown) != 1 or len(missing) != 1:
        raise SourceFormatError(
            f"{xml_path}: labels {labels} do not match weights.csv foods {sorted(expected)} "
            f"for {oid}"
        )
    info.setdefault("corrections", []).append(
        {"file": xml_path.name, "label": unknown[0], "corrected_to": missing[0],
         "why": f"weights.csv lists {sorted(expected)} for {oid}"}
    )
    return [(missing[0] if lab == unknown[0] else lab, box) for lab, box in objs]
