"""RDA 국가표준식품성분표 DB10 (raw and cooked ingredients), trimmed to five nutrients."""
from __future__ import annotations

from pathlib import Path

from nutrition_db.schema import ANALYSED, Food
from nutrition_db.sources.common import RawDataError, nutrients_from, read_csv

FILE = Path("kr_rda/kfct_db10_2025-04-26_macros.csv")
COLUMNS = {
    "energy_kcal": "에너지(kcal)", "protein_g": "단백질(g)", "fat_g": "지방(g)",
    "carbohydrate_g": "탄수화물(g)", "sugars_g": "당류(g)",
}


def _unflag(value: float | None) -> float | None:
    """The magnitude of a value the file marks with a leading minus.

    62 cells carry a minus on a plausible amount (과당 sugars -99.9, 껌 carbohydrate -96.9,
    미음 carbohydrate -4.7 with 19 kcal): a flag kept from the source table, not a negative
    amount, so the magnitude is the value.
    """
    return None if value is None else abs(value)


def read(raw: Path) -> list[Food]:
    """KFCT rows keyed by their (unique) Korean name; '-' is missing, 'Tr' a trace (0)."""
    foods = []
    for row in read_csv(raw / FILE):
        name = row["식품명"].strip()
        if not name:
            raise RawDataError("KFCT row without 식품명")
        # The first comma-separated part of a KFCT name is the food itself (e.g. '귀리').
        foods.append(Food(
            food_id=f"kfct:{name}", name_ko=name, name_en=None, source="kfct",
            category=name.split(",")[0].strip(), trust=ANALYSED, serving_g=None,
            density_g_per_ml=None, density_note=None, basis_note="per 100 g as published",
            nutrients={k: _unflag(v) for k, v in nutrients_from(row, COLUMNS).items()},
            origin="국가표준식품성분표 DB10",
        ))
    return foods
