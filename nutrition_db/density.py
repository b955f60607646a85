"""Densities (g/ml) from measured household-volume portion weights (FNDDS, SR28)."""
from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# US customary volumes in ml (exact definitions: 1 cup = 8 US fl oz = 16 tbsp).
CUP_ML = 236.5882365
TBSP_ML = CUP_ML / 16
FL_OZ_ML = CUP_ML / 8

# Preference order: a plain cup first (largest, least rounding error), then a cup of a
# prepared form ("1 cup, chopped"), then tablespoon, then fluid ounce.
_VOLUME_PATTERNS: tuple[tuple[re.Pattern[str], float, str], ...] = (
    (re.compile(r"^(1 )?cups?( \(8 fl oz\))?$"), CUP_ML, "cup"),
    (re.compile(r"^(1 )?cups?,? .+$"), CUP_ML, "cup"),
    (re.compile(r"^(1 )?(tablespoons?|tbsp)$"), TBSP_ML, "tablespoon"),
    (re.compile(r"^(1 )?fl oz$"), FL_OZ_ML, "fl oz"),
)
# Plausible food densities; outside this a portion weight is a data error, not a density.
_MIN_DENSITY, _MAX_DENSITY = 0.02, 2.5


@dataclass(frozen=True)
class Portion:
    """A household measure: description, how many of it, and its weight in grams."""

    description: str
    amount: float
    grams: float


def density_from_portions(portions: Iterable[Portion], source: str) -> tuple[float, str] | None:
    """(g/ml, how it was derived) from the best volume measure among a food's portions."""
    listed = [p for p in portions if p.grams > 0 and p.amount > 0]
    for pattern, ml, unit in _VOLUME_PATTERNS:
        for p in listed:
            if not pattern.match(p.description.strip().lower()):
                continue
            density = p.grams / (p.amount * ml)
            if _MIN_DENSITY <= density <= _MAX_DENSITY:
                times = "" if p.amount == 1 else f" x {p.amount:g}"
                note = (f"{source} portion '{p.description}'{times} = {p.grams:g} g; "
                        f"1 {unit} = {ml:.2f} ml")
                return round(density, 4), note
    return None


# MFDS gives no densities. Each MFDS 대분류 (food-group code) borrows the median density of
# FNDDS foods measured by the plain cup in the WWEIA categories (number prefixes) that hold
# the same kind of dish. The choice of categories is ours and documented in docs/DATA.md.
MFDS_GROUP_WWEIA: Mapping[str, tuple[str, ...]] = {
    "01": ("3202", "3402"),          # 밥류 -> rice mixed dishes, fried rice
    "02": ("5502",),                 # 빵 및 과자류 -> cakes and pies
    "03": ("3204", "3402", "3406"),  # 면 및 만두류 -> pasta dishes, lo mein, dumplings
    "04": ("3802", "4804"),          # 죽 및 스프류 -> soups, cooked cereals
    "05": ("3802",),                 # 국 및 탕류 -> soups
    "06": ("3802",),                 # 찌개 및 전골류 -> soups
    "07": ("3002", "3004", "3006"),  # 찜류 -> meat, poultry, seafood mixed dishes
    "08": ("3002", "3004", "3006"),  # 구이류
    "09": ("2502",),                 # 전·적 및 부침류 -> eggs and omelets
    "10": ("3404",),                 # 볶음류 -> stir-fry mixtures
    "11": ("3002", "3004", "3006"),  # 조림류
    "12": ("2204", "6430"),          # 튀김류 -> nuggets and tenders, fried vegetables
    "13": ("6409", "6411", "6420"),  # 나물·숙채류 -> cooked greens and vegetables
    "14": ("6432",),                 # 생채·무침류 -> non-lettuce salads
    "15": ("8408",),                 # 김치류 -> pickled vegetables
    "16": ("8408",),                 # 젓갈류
    "17": ("8408",),                 # 장아찌·절임류
    "18": ("8404", "8406", "8412"),  # 장류, 양념류 -> condiments and sauces
    "19": ("1402", "1820", "5802"),  # 유제품류 및 빙과류 -> dairy drinks, yogurt, ice cream
    "20": ("70", "71", "72", "73"),  # 음료 및 차류 -> juices, diet/sweetened drinks, coffee, tea
    "22": ("60",),                   # 과일류 -> fruit
    "24": ("6802", "6418"),          # 곡류, 서류 제품 -> potatoes, starchy vegetables
    "25": ("2802", "2806"),          # 두류, 견과 및 종실류 -> legumes, soy products
    "27": ("3002", "3004", "3006"),  # 수·조·어·육류
}


@dataclass(frozen=True)
class GroupDensity:
    """A density borrowed for a whole MFDS food group, with its derivation."""

    density: float
    note: str


def group_densities(cup_densities: Iterable[tuple[str, float]]) -> dict[str, GroupDensity]:
    """MFDS group code -> median FNDDS plain-cup density of the mapped WWEIA categories."""
    pairs = list(cup_densities)
    out: dict[str, GroupDensity] = {}
    for group, prefixes in MFDS_GROUP_WWEIA.items():
        values = [d for cat, d in pairs if cat.startswith(prefixes)]
        if values:
            out[group] = _median_density(values, f"WWEIA {'/'.join(prefixes)}")
    all_values = [d for _, d in pairs]
    if all_values:
        out[""] = _median_density(all_values, "all WWEIA categories (group not mapped)")
    return out


def _median_density(values: list[float], where: str) -> GroupDensity:
    """The median of measured densities, with a note saying where they came from."""
    median = round(statistics.median(values), 4)
    note = (f"median FNDDS 2017-2018 '1 cup' weight of {len(values)} foods in {where} "
            f"= {median:g} g/ml")
    return GroupDensity(median, note)
