"""Nutrition5k: dish metadata (total grams, nutrients, ingredients) for dish images.

The metadata CSVs (dish_metadata_cafe1/2.csv, no header) give per dish: id, kcal, mass
(g), fat, carb, protein, then 7 fields per ingredient (id, name, grams, kcal, fat, carb,
protein). Images live in one folder per dish (dish_<id>/): the side-angle frames, or the
overhead rgb.png with depth_raw.png. Dishes have no boxes, so each image carries an
image-level `dish` record; split_group is the dish, so its frames stay together.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.data.builder import DatasetBuilder
from model.data.coco import CocoDataset
from model.data.importers.common import SourceFormatError, image_size, list_images

SOURCE = "nutrition5k"
DEPTH_NAME = "depth_raw.png"
# Nutrition5k's raw overhead depth is uint16 with 10,000 units per metre.
DEPTH_UNITS_PER_M = 10_000
_DISH_FIELDS = ("total_kcal", "total_grams", "fat_g", "carb_g", "protein_g")
_INGR_FIELDS = 7


def parse_dish_row(row: list[str], where: str) -> dict[str, Any]:
    """One metadata row -> dish record with totals and ingredient grams."""
    row = [c.strip() for c in row]
    while row and row[-1] == "":
        row.pop()
    if len(row) < 6 or (len(row) - 6) % _INGR_FIELDS:
        raise SourceFormatError(f"{where}: expected 6 dish fields + 7 per ingredient")
    try:
        dish: dict[str, Any] = {"dish_id": row[0]}
        dish.update({k: float(v) for k, v in zip(_DISH_FIELDS, row[1:6], strict=True)})
        dish["ingredients"] = [
            {"id": row[i], "name": row[i + 1], "grams": float(row[i + 2]),
             "kcal": float(row[i + 3])}
            for i in range(6, len(row), _INGR_FIELDS)
        ]
    except ValueError as exc:
        raise SourceFormatError(f"{where}: bad number ({exc})") from exc
    return dish


def read_dishes(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """All dishes of the metadata CSVs, by dish id."""
    dishes: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file():
            raise SourceFormatError(f"{path}: metadata file not found")
        with path.open(encoding="utf-8", newline="") as f:
            for i, row in enumerate(csv.reader(f), start=1):
                if row:
                    dish = parse_dish_row(row, f"{path}:{i}")
                    dishes[dish["dish_id"]] = dish
    return dishes


def import_nutrition5k(images_dir: str | Path, metadata: Sequence[str | Path]) -> CocoDataset:
    """Images in images_dir/dish_<id>/ with their dish's grams; dishes without mass skip."""
    root = Path(images_dir)
    dishes = read_dishes([Path(p) for p in metadata])
    b = DatasetBuilder(image_root=root.resolve(), source=SOURCE)
    b.ds.info["depth_units_per_m"] = DEPTH_UNITS_PER_M
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise SourceFormatError(f"{root}: no dish folders (dish_<id>/)")
    for folder in folders:
        dish = dishes.get(folder.name)
        if dish is None:
            raise SourceFormatError(f"{folder}: no metadata row for {folder.name}")
        if dish["total_grams"] <= 0:  # a few logged dishes have no scale reading
            b.ds.info.setdefault("skipped", []).append(folder.name)
            continue
        _add_dish(b, root, folder, dish)
    return b.build()


def _add_dish(b: DatasetBuilder, root: Path, folder: Path, dish: dict[str, Any]) -> None:
    """The images of one dish folder, each with the dish record."""
    depth = folder / DEPTH_NAME
    for path in list_images(folder):
        if path.name == DEPTH_NAME:
            continue
        width, height = image_size(path)
        has_depth = path.name == "rgb.png" and depth.is_file()
        b.image(path.relative_to(root).as_posix(), width, height, split_group=folder.name,
                dish=dish, depth_file=depth.relative_to(root).as_posix() if has_depth else None)
