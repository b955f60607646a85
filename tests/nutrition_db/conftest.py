"""Helpers for the nutrient database tests: raw-table readers independent of the builder."""
from __future__ import annotations

import csv

from nutrition_db.paths import RAW_DIR


def raw_csv_row(relpath: str, key_column: str, key: str) -> dict[str, str]:
    """The raw source row whose key_column equals key, read straight from the CSV."""
    with (RAW_DIR / relpath).open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            if row[key_column] == key:
                return row
    raise AssertionError(f"{key} not in {relpath}")
