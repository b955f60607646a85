"""Reference intakes (KDRI 2020, US DRIs) from data/reference_intakes.csv."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nutrition_db.paths import INTAKES_PATH
from nutrition_db.schema import NUTRIENT_KEYS

SYSTEMS = ("kdri2020", "us_dri")
SEXES = ("male", "female")
# Goals to reach (EER for energy; RNI/RDA where set, else AI) and limits not to pass.
TARGET_KINDS = ("EER", "RNI", "RDA", "AI")
UPPER_KINDS = ("UL", "CDRR")


@dataclass(frozen=True)
class ReferenceIntake:
    """One nutrient's daily reference for one person: a target and/or an upper limit."""

    nutrient: str
    unit: str
    target: float | None
    target_kind: str | None
    upper: float | None
    upper_kind: str | None
    citation: str


@dataclass(frozen=True)
class _Row:
    """One line of reference_intakes.csv."""

    system: str
    sex: str
    age_min: int
    age_max: int | None
    nutrient: str
    value: float
    unit: str
    kind: str
    citation: str


@lru_cache(maxsize=4)
def read_intakes(path: Path = INTAKES_PATH) -> tuple[_Row, ...]:
    """All rows of the reference-intake table, validated."""
    rows = []
    with path.open(encoding="utf-8", newline="") as fh:
        for raw in csv.DictReader(fh):
            row = _Row(raw["system"], raw["sex"], int(raw["age_min"]),
                       int(raw["age_max"]) if raw["age_max"] else None, raw["nutrient"],
                       float(raw["value"]), raw["unit"], raw["kind"], raw["citation"])
            if (row.system not in SYSTEMS or row.sex not in SEXES or row.nutrient not in
                    NUTRIENT_KEYS or row.kind not in TARGET_KINDS + UPPER_KINDS or not
                    row.citation):
                raise ValueError(f"bad reference intake row: {raw}")
            rows.append(row)
    return tuple(rows)


def reference_intakes(system: str, sex: str, age_years: float) -> dict[str, ReferenceIntake]:
    """Daily references for one person, keyed by nutrient; nutrients without data are absent."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
    if sex not in SEXES:
        raise ValueError(f"sex must be one of {', '.join(SEXES)}, got {sex!r}")
    if not isinstance(age_years, int | float) or not math.isfinite(age_years) or age_years < 0:
        raise ValueError(f"age_years must be a non-negative number, got {age_years!r}")
    rows = [r for r in read_intakes() if r.system == system and r.sex == sex
            and r.age_min <= age_years and (r.age_max is None or age_years < r.age_max + 1)]
    if not rows:
        youngest = min(r.age_min for r in read_intakes() if r.system == system)
        raise ValueError(f"{system} has references from age {youngest} here, got {age_years}")
    out: dict[str, ReferenceIntake] = {}
    for key in dict.fromkeys(r.nutrient for r in rows):
        mine = [r for r in rows if r.nutrient == key]
        target = next((r for k in TARGET_KINDS for r in mine if r.kind == k), None)
        upper = next((r for k in UPPER_KINDS for r in mine if r.kind == k), None)
        out[key] = ReferenceIntake(
            key, mine[0].unit, target.value if target else None, target.kind if target else None,
            upper.value if upper else None, upper.kind if upper else None,
            "; ".join(dict.fromkeys(r.citation for r in mine)))
    return out
