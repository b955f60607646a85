"""The shipped food table: lazy loading, lookup, search, nutrient arithmetic, statistics."""
from __future__ import annotations

import csv
import difflib
import gzip
import io
import math
import re
import threading
from collections import Counter
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from nutrition_db.errors import InvalidAmountError, UnknownFoodError
from nutrition_db.paths import TABLE_PATH
from nutrition_db.schema import ANALYSED, COMPANY, NUTRIENT_KEYS, SOURCES, Food

# More than this in one item is a unit mix-up (kg for g), not a portion.
MAX_GRAMS = 5000.0
_CANTEEN_MARK = "급식"
_HEAD = 11  # descriptive columns before the nutrients in the shipped CSV
# Spaces and punctuation separate words; search ignores them so '된장 국' finds '된장국_감자'.
_SEPARATORS = re.compile(r"[\s_,()\[\]/·ㆍ&'\".+:;-]+")


class Table:
    """All foods by id; search keys are built on the first search, not on load."""

    def __init__(self, foods: dict[str, Food]) -> None:
        self.foods = foods

    @cached_property
    def keys(self) -> tuple[tuple[str, str, str, str], ...]:
        """(id, words of ko, words of en, both names glued) for every food."""
        return tuple((f.food_id, words(f.name_ko or ""), words(f.name_en or ""),
                      normalise(f"{f.name_ko or ''}\t{f.name_en or ''}"))
                     for f in self.foods.values())


_lock = threading.Lock()
_table: Table | None = None


def words(text: str) -> str:
    """Lower-case words separated by single spaces, with a leading space for word starts."""
    return " " + _SEPARATORS.sub(" ", text.casefold()).strip()


def normalise(text: str) -> str:
    """Lower case without spaces and punctuation."""
    return _SEPARATORS.sub("", text.casefold())


def food_from_cells(cells: list[str]) -> Food:
    """A Food from one row of the shipped CSV, in nutrition_db.build.FIELDS order."""
    (food_id, name_ko, name_en, source, category, trust, origin, serving, density,
     density_note, basis_note) = cells[:_HEAD]
    values = [float(v) if v else None for v in cells[_HEAD:]]
    return Food(
        food_id=food_id, name_ko=name_ko or None, name_en=name_en or None, source=source,
        category=category or None, trust=trust, serving_g=float(serving) if serving else None,
        density_g_per_ml=float(density) if density else None,
        density_note=density_note or None, basis_note=basis_note,
        nutrients=dict(zip(NUTRIENT_KEYS, values, strict=True)), origin=origin or None,
    )


def read_table(path: Path = TABLE_PATH) -> Table:
    """Reads a built table file (see nutrition_db.build)."""
    if not path.is_file():
        raise FileNotFoundError(f"food table not found: {path} (run: python -m nutrition_db build)")
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    if tuple(header[_HEAD:]) != NUTRIENT_KEYS or len(header) != _HEAD + len(NUTRIENT_KEYS):
        raise ValueError(f"{path} does not have this version's columns; rebuild it")
    foods = {}
    for cells in reader:
        food = food_from_cells(cells)
        foods[food.food_id] = food
    return Table(foods)


def table() -> Table:
    """The shipped table, read once per process on first use."""
    global _table
    if _table is None:
        with _lock:
            if _table is None:
                _table = read_table()
    return _table


def get_food(food_id: str) -> Food:
    """The food with this id; UnknownFoodError with close ids when there is none."""
    if not isinstance(food_id, str):
        raise UnknownFoodError(repr(food_id), [])
    food = table().foods.get(food_id)
    if food is None:
        raise UnknownFoodError(food_id, suggest(food_id))
    return food


def suggest(food_id: str, n: int = 5) -> list[str]:
    """Close ids: similar ids of the same source, else foods whose names match the text."""
    prefix, _, rest = food_id.partition(":")
    ids = table().foods
    if prefix in SOURCES and rest:
        same = _ids_of_source(prefix)
        close = difflib.get_close_matches(food_id, same, n=n, cutoff=0.75)
        if close:
            return close
    text = rest if prefix in SOURCES else food_id
    return [f.food_id for f in search(text, limit=n)] if text.strip() and ids else []


@lru_cache(maxsize=len(SOURCES))
def _ids_of_source(source: str) -> list[str]:
    """All ids of one source (cached: difflib over one source is fast enough)."""
    return [i for i in table().foods if i.startswith(source + ":")]


def _tier(food: Food) -> int:
    """Search preference: canteen recipes, analysed rows, other computed rows, company data."""
    if food.origin and _CANTEEN_MARK in food.origin:
        return 0
    if food.trust == ANALYSED:
        return 1
    return 3 if food.trust == COMPANY else 2


def _rank(query: str, spaced: str, names: tuple[str, str]) -> int | None:
    """0 exact, 1 prefix, 2 a word starts with it, 3 every query word starts a word,
    4 substring ignoring spaces; None for no match. Names and spaced query are `words()`."""
    best: int | None = None
    for name in names:
        if len(name) < 2:
            continue
        glued = name.replace(" ", "")
        if glued == query:
            return 0
        rank = (1 if name.startswith(spaced) or glued.startswith(query) else
                2 if spaced in name else
                3 if all(" " + w in name for w in spaced.split()) else
                4 if query in glued else None)
        if rank is not None and (best is None or rank < best):
            best = rank
    return best


def search(query: str, limit: int = 20) -> list[Food]:
    """Foods whose Korean or English name matches the query, best matches first.

    Order: match quality (exact, prefix, word start, substring, all words), then canteen
    recipes, analysed rows, other computed rows, company-supplied rows; then shorter names.
    """
    if not isinstance(query, str) or not normalise(query):
        raise ValueError("search needs a non-empty query")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    q, spaced = normalise(query), words(query)
    parts = spaced.split()
    t = table()
    # Cheap containment filter first; the ranking below runs only on candidates.
    first, rest = parts[0], parts[1:]  # q contains every part, so this keeps all matches
    candidates = [k for k in t.keys if first in k[3] and all(w in k[3] for w in rest)]
    hits = []
    for food_id, ko, en, _ in candidates:
        rank = _rank(q, spaced, (ko, en))
        if rank is not None:
            food = t.foods[food_id]
            hits.append(((rank, _tier(food), len(food.name), food_id), food))
    hits.sort(key=lambda h: h[0])
    return [food for _, food in hits[:limit]]


def check_grams(grams: Any) -> float:
    """The amount as float; InvalidAmountError unless it is a finite number in [0, MAX_GRAMS]."""
    if isinstance(grams, bool) or not isinstance(grams, int | float):
        raise InvalidAmountError(f"grams must be a number, got {grams!r}")
    value = float(grams)
    if math.isnan(value) or math.isinf(value):
        raise InvalidAmountError(f"grams must be a finite number, got {grams!r}")
    if value < 0:
        raise InvalidAmountError(f"grams cannot be negative, got {grams!r}")
    if value > MAX_GRAMS:
        raise InvalidAmountError(
            f"{grams!r} g is more than {MAX_GRAMS:g} g for one item; is the unit right?")
    return value


def scale(food: Food, grams: float) -> dict[str, float | None]:
    """The food's nutrients for this many grams (None stays None)."""
    factor = check_grams(grams) / 100.0
    return {k: None if (v := food.nutrients.get(k)) is None else v * factor
            for k in NUTRIENT_KEYS}


def nutrients_for(food_id: str, grams: float) -> dict[str, float | None]:
    """Nutrients in `grams` of the food; keys are NUTRIENT_KEYS, None where unknown."""
    check_grams(grams)
    return scale(get_food(food_id), grams)


def stats() -> dict[str, Any]:
    """Row counts by source and trust, and per-nutrient coverage overall and by source."""
    foods = list(table().foods.values())
    by_source = Counter(f.source for f in foods)
    coverage: dict[str, dict[str, float]] = {}
    for key in NUTRIENT_KEYS:
        per = Counter(f.source for f in foods if f.nutrients.get(key) is not None)
        coverage[key] = {"all": round(sum(per.values()) / len(foods), 4)} | {
            s: round(per[s] / by_source[s], 4) for s in SOURCES if by_source[s]}
    return {
        "foods": len(foods),
        "by_source": {s: by_source[s] for s in SOURCES},
        "by_trust": dict(sorted(Counter(f.trust for f in foods).items())),
        "with_density": sum(f.density_g_per_ml is not None for f in foods),
        "with_serving": sum(f.serving_g is not None for f in foods),
        "nutrient_coverage": coverage,
    }
