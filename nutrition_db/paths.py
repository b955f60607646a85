"""Where the package keeps its raw tables, the built table and its data files."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
RAW_DIR = PACKAGE / "raw"
DATA_DIR = PACKAGE / "data"
TABLE_PATH = DATA_DIR / "foods.csv.gz"
LABEL_MAP_PATH = DATA_DIR / "label_map.json"
INTAKES_PATH = DATA_DIR / "reference_intakes.csv"
