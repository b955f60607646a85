"""The one nutrient schema: nutrient keys with units, trust levels, the Food record."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Nutrient(NamedTuple):
    """One nutrient: stable snake_case key (unit in the name), unit, English and Korean names."""

    key: str
    unit: str
    name_en: str
    name_ko: str


# Order is the column order of the shipped table and of every printed report.
NUTRIENTS: tuple[Nutrient, ...] = (
    Nutrient("energy_kcal", "kcal", "Energy", "에너지"),
    Nutrient("water_g", "g", "Water", "수분"),
    Nutrient("protein_g", "g", "Protein", "단백질"),
    Nutrient("fat_g", "g", "Total fat", "지방"),
    Nutrient("saturated_fat_g", "g", "Saturated fat", "포화지방산"),
    Nutrient("trans_fat_g", "g", "Trans fat", "트랜스지방산"),
    Nutrient("carbohydrate_g", "g", "Carbohydrate", "탄수화물"),
    Nutrient("sugars_g", "g", "Total sugars", "당류"),
    Nutrient("fiber_g", "g", "Dietary fibre", "식이섬유"),
    Nutrient("cholesterol_mg", "mg", "Cholesterol", "콜레스테롤"),
    Nutrient("sodium_mg", "mg", "Sodium", "나트륨"),
    Nutrient("potassium_mg", "mg", "Potassium", "칼륨"),
    Nutrient("calcium_mg", "mg", "Calcium", "칼슘"),
    Nutrient("phosphorus_mg", "mg", "Phosphorus", "인"),
    Nutrient("iron_mg", "mg", "Iron", "철"),
    Nutrient("magnesium_mg", "mg", "Magnesium", "마그네슘"),
    Nutrient("zinc_mg", "mg", "Zinc", "아연"),
    Nutrient("vitamin_a_ug_rae", "μg RAE", "Vitamin A", "비타민 A"),
    Nutrient("thiamin_mg", "mg", "Thiamin", "티아민"),
    Nutrient("riboflavin_mg", "mg", "Riboflavin", "리보플라빈"),
    Nutrient("niacin_mg", "mg", "Niacin", "니아신"),
    Nutrient("vitamin_c_mg", "mg", "Vitamin C", "비타민 C"),
    Nutrient("vitamin_d_ug", "μg", "Vitamin D", "비타민 D"),
)
NUTRIENT_KEYS: tuple[str, ...] = tuple(n.key for n in NUTRIENTS)

SOURCES: tuple[str, ...] = ("mfds", "kfct", "fndds", "sr28", "n5k")

# Trust levels, most to least reliable: measured in a lab, computed from a recipe's
# ingredient amounts, or declared by a company (often incomplete).
ANALYSED = "analysed"
RECIPE = "recipe-calculated"
COMPANY = "company-supplied"
TRUST_LEVELS: tuple[str, ...] = (ANALYSED, RECIPE, COMPANY)


@dataclass(frozen=True)
class Food:
    """One food with nutrients per 100 g (None = the source does not give the value)."""

    food_id: str
    name_ko: str | None
    name_en: str | None
    source: str
    category: str | None
    trust: str
    serving_g: float | None
    density_g_per_ml: float | None
    density_note: str | None
    basis_note: str
    nutrients: dict[str, float | None] = field(default_factory=dict, compare=False)
    origin: str | None = None  # the source's own provenance label, e.g. MFDS 식품기원명

    @property
    def name(self) -> str:
        """The Korean name when present, else the English one."""
        return self.name_ko or self.name_en or self.food_id
