"""Builds the one food table from the raw sources, deterministically, as gzip'd CSV."""
from __future__ import annotations

import csv
import gzip
import io
import itertools
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from nutrition_db.density import group_densities
from nutrition_db.paths import RAW_DIR, TABLE_PATH
from nutrition_db.schema import NUTRIENT_KEYS, Food
from nutrition_db.sources import fndds, kfct, mfds, n5k, sr28
from nutrition_db.sources.common import RawDataError

FIELDS: tuple[str, ...] = (
    "food_id", "name_ko", "name_en", "source", "category", "trust", "origin", "serving_g",
    "density_g_per_ml", "density_note", "basis_note", *NUTRIENT_KEYS,
)


def _mfds(raw: Path) -> list[Food]:
    """MFDS rows, converted with densities borrowed from FNDDS cup weights."""
    return mfds.read(raw, group_densities(fndds.cup_densities(raw)))


READERS: tuple[tuple[str, Callable[[Path], list[Food]]], ...] = (
    ("mfds", _mfds), ("kfct", kfct.read), ("fndds", fndds.read),
    ("sr28", sr28.read), ("n5k", n5k.read),
)


def build_foods(raw: Path = RAW_DIR, progress: bool = False) -> list[Food]:
    """Every food of every source, sorted by id; duplicate ids are a data error."""
    foods: list[Food] = []
    bar = tqdm(READERS, desc="building food table", unit="source", disable=not progress)
    for name, reader in bar:
        bar.set_postfix_str(name)
        foods.extend(reader(raw))
    foods.sort(key=lambda f: f.food_id)
    for a, b in itertools.pairwise(foods):
        if a.food_id == b.food_id:
            raise RawDataError(f"duplicate food id {a.food_id}")
    return foods


def format_number(value: float | None) -> str:
    """Compact, stable text for a number: empty for None, up to 6 significant digits."""
    return "" if value is None else f"{value:.6g}"


def to_row(food: Food) -> list[str]:
    """One CSV row in FIELDS order."""
    head = [food.food_id, food.name_ko or "", food.name_en or "", food.source,
            food.category or "", food.trust, food.origin or "",
            format_number(food.serving_g), format_number(food.density_g_per_ml),
            food.density_note or "", food.basis_note]
    return head + [format_number(food.nutrients.get(k)) for k in NUTRIENT_KEYS]


def table_bytes(foods: list[Food]) -> bytes:
    """The gzip'd CSV; mtime 0 and no file name so equal tables give equal bytes."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(FIELDS)
    writer.writerows(to_row(f) for f in foods)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(text.getvalue().encode("utf-8"))
    return buffer.getvalue()


def build(raw: Path = RAW_DIR, out: Path = TABLE_PATH, progress: bool = False) -> int:
    """Builds the table from raw into out; returns the number of foods."""
    if not raw.is_dir():
        raise RawDataError(f"raw folder not found: {raw}")
    foods = build_foods(raw, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(table_bytes(foods))
    return len(foods)
