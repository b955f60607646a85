"""Parsing helpers shared by the source readers."""
from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

from nutrition_db.schema import NUTRIENT_KEYS

# Cells that mean "not given" in the raw tables (MFDS leaves cells empty, KFCT writes '-').
MISSING = {"", "-", "NA", "N/A", "nan"}
# KFCT writes 'Tr' for a trace: measured, but below the quantification limit.
TRACE = {"Tr", "tr"}


class RawDataError(ValueError):
    """A raw table is missing or does not have the expected layout."""


def parse_number(text: str | None) -> float | None:
    """A number from a raw cell; None when the source gives no value, 0.0 for a trace."""
    if text is None:
        return None
    cell = text.strip()
    if cell in MISSING:
        return None
    if cell in TRACE:
        return 0.0
    try:
        value = float(cell.replace(",", ""))
    except ValueError as exc:
        raise RawDataError(f"not a number: {text!r}") from exc
    if not math.isfinite(value):
        return None
    return value


def nutrients_from(row: Mapping[str, str], columns: Mapping[str, str]) -> dict[str, float | None]:
    """Per-nutrient values from a raw row, given {nutrient key: raw column name}."""
    missing = [col for col in columns.values() if col not in row]
    if missing:
        raise RawDataError(f"raw table lacks columns {missing}")
    return {key: parse_number(row[columns[key]]) if key in columns else None
            for key in NUTRIENT_KEYS}


def read_csv(path: Path, header_starts: str | None = None) -> Iterator[dict[str, str]]:
    """Rows of a UTF-8 CSV as dicts; skips title lines before the header when asked."""
    if not path.is_file():
        raise RawDataError(f"raw table not found: {path}")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        for cells in reader:
            if header is None:
                if header_starts is None or (cells and cells[0] == header_starts):
                    header = cells
                continue
            yield dict(zip(header, cells, strict=False))
    if header is None:
        raise RawDataError(f"no header row starting with {header_starts!r} in {path}")
