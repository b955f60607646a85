"""A person's days and weeks: what they ate (from logged photos and before/after pairs),
against their reference intakes, and the habits a week shows.

Stored items already carry user corrections (the model's estimate is kept aside), so every
figure here follows the corrections. Pairs are recomputed on read for the same reason.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from nutrition_db import ReferenceIntake, meal_nutrients, reference_intakes
from serve.core.errors import unprocessable
from serve.db.tables.analyses import Analysis, MealState
from serve.db.tables.core import Canteen, User
from serve.db.tables.pairs import MealPair
from serve.schemas.base import UtcDateTime
from serve.services.nutrients import food_names
from serve.services.pairing import PairResult, pair_results, tray_items
from serve.services.privacy import require_diary_consent

ENERGY = "energy_kcal"
SODIUM = "sodium_mg"
PROTEIN = "protein_g"
FAT = "fat_g"
CARBOHYDRATE = "carbohydrate_g"
SUGARS = "sugars_g"
FIBRE = "fiber_g"
# Atwater general factors, kcal per gram: a macronutrient's share of energy is
# factor x grams / energy_kcal (energy as the food table gives it).
ATWATER = {PROTEIN: 4.0, FAT: 9.0, CARBOHYDRATE: 4.0}


class MealKind:
    """How a logged meal's intake was worked out."""

    PHOTO = "photo"  # one photo, no before/after: everything on it counts as eaten
    PAIR = "before_after"  # eaten = before - after, per item
    BEFORE_ONLY = "before_only"  # no after photo (yet): counted as eaten, flagged
    MANUAL = "manual"  # logged without a photo (food ids and grams): counted as eaten


@dataclass(frozen=True)
class FoodAmount:
    """One food eaten in a meal."""

    food_id: str
    grams: float
    dish_id: str | None = None
    name_ko: str | None = None
    name_en: str | None = None


@dataclass(frozen=True)
class MealLog:
    """One meal of a person: where its numbers come from, what was eaten and what was left."""

    analysis_id: str
    captured_at: UtcDateTime  # answered as every time is: UTC with Z
    kind: str
    pair_id: str | None
    foods: tuple[FoodAmount, ...]  # eaten
    leftovers: tuple[FoodAmount, ...]  # left on the tray (paired trays only)
    served_g: float
    leftover_g: float
    unidentified_g: float  # eaten grams of items with no food id (no nutrients)
    # Its photo (the before photo of a pair) holds no food item: nothing counted from it.
    no_food_found: bool = False


@dataclass(frozen=True)
class NutrientStatus:
    """A day's amount of one nutrient against the person's reference."""

    nutrient: str
    unit: str
    amount: float | None
    incomplete: bool  # some food lacks the value: the amount is a lower bound
    target: float | None
    target_kind: str | None
    pct_of_target: float | None
    upper: float | None
    upper_kind: str | None
    over_upper: bool


@dataclass(frozen=True)
class DayReport:
    """A person's intake on one local calendar day."""

    date: dt.date
    meals: tuple[MealLog, ...]
    totals: dict[str, float | None]
    incomplete: tuple[str, ...]
    references: tuple[NutrientStatus, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoodCount:
    """How often a food was eaten over a period, and how much of it was left."""

    food_id: str
    meals: int
    eaten_g: float
    leftover_g: float
    name_ko: str | None = None
    name_en: str | None = None
    meal_ids: tuple[str, ...] = ()  # the meals it was eaten or left in


@dataclass(frozen=True)
class HabitEvidence:
    """What one habit rests on: the figures it compares, the days and the meals behind it."""

    statement: str  # the habit in words, with its numbers
    numbers: dict[str, float | None]
    days: int  # how many logged days the numbers rest on
    dates: tuple[dt.date, ...]  # those days
    meal_ids: tuple[str, ...]  # every meal (analysis id of its photo) counted in the numbers
    flagged_dates: tuple[dt.date, ...] = ()  # the days the habit points at (sodium: over)


@dataclass(frozen=True)
class Habits:
    """What a run of days shows: energy against the reference, sodium, favourites, leftovers."""

    start: dt.date
    end: dt.date
    days_logged: int
    avg_energy_kcal: float | None
    avg_energy_pct_of_target: float | None
    sodium_over_limit_days: int
    sodium_limit_mg: float | None
    top_foods: tuple[FoodCount, ...]
    trays_paired: int
    avg_leftover_pct: float | None
    most_left_foods: tuple[FoodCount, ...] = field(default_factory=tuple)
    # by habit: energy, sodium, top_foods, leftovers, most_left_foods
    evidence: dict[str, HabitEvidence] = field(default_factory=dict)


def percent(part: float | None, whole: float | None) -> float | None:
    """Percentage to 0.1, None when either side is unknown or the whole is zero."""
    if part is None or whole is None or whole <= 0:
        return None
    return round(100.0 * part / whole, 1)


def compare(totals: dict[str, float | None], incomplete: Iterable[str],
            refs: dict[str, ReferenceIntake]) -> tuple[NutrientStatus, ...]:
    """Each referenced nutrient's amount as % of its target and whether it passes the limit."""
    lacking = set(incomplete)
    out = []
    for key, ref in refs.items():
        amount = totals.get(key)
        over = amount is not None and ref.upper is not None and amount > ref.upper
        out.append(NutrientStatus(key, ref.unit, amount, key in lacking, ref.target,
                                  ref.target_kind, percent(amount, ref.target), ref.upper,
                                  ref.upper_kind, over))
    return tuple(out)


def day_report(day: dt.date, meals: Sequence[MealLog],
               refs: dict[str, ReferenceIntake] | None, notes: Sequence[str] = ()) -> DayReport:
    """Sum a day's meals (nutrition_db.meal_nutrients) and compare with the references."""
    eaten = [(f.food_id, f.grams) for m in meals for f in m.foods]
    nutr = meal_nutrients(eaten)
    extra = list(notes)
    if any(m.kind == MealKind.BEFORE_ONLY for m in meals):
        extra.append("a tray without an after photo is counted as fully eaten")
    if any(m.unidentified_g > 0 for m in meals):
        extra.append("some items match no food in the database: their grams carry no nutrients")
    extra += [f"no food found on photo {m.analysis_id}: nothing counted from it"
              for m in meals if m.no_food_found]
    statuses = compare(nutr.totals, nutr.incomplete, refs) if refs else ()
    return DayReport(day, tuple(meals), nutr.totals, tuple(nutr.incomplete), statuses,
                     tuple(extra))


def _food_counts(days: Sequence[DayReport], top: int) -> tuple[tuple[FoodCount, ...],
                                                             tuple[FoodCount, ...]]:
    """Most frequent foods and the foods most left over (by grams) across the days."""
    meals: Counter[str] = Counter()
    eaten: defaultdict[str, float] = defaultdict(float)
    seen: defaultdict[str, list[str]] = defaultdict(list)
    for m in (m for d in days for m in d.meals):
        for f in m.foods:
            eaten[f.food_id] += f.grams
        meals.update({f.food_id for f in m.foods})
        for food_id in dict.fromkeys(f.food_id for f in (*m.foods, *m.leftovers)):
            seen[food_id].append(m.analysis_id)
    left = _leftover_by_food(days)
    counts = {k: FoodCount(k, meals[k], round(eaten[k], 1), round(left.get(k, 0.0), 1),
                           *food_names(k), tuple(seen[k]))
              for k in set(meals) | set(left)}
    favourites = sorted(counts.values(), key=lambda c: (-c.meals, -c.eaten_g, c.food_id))
    wasted = sorted((c for c in counts.values() if c.leftover_g > 0),
                    key=lambda c: (-c.leftover_g, c.food_id))
    return tuple(favourites[:top]), tuple(wasted[:top])


def _leftover_by_food(days: Sequence[DayReport]) -> dict[str, float]:
    """Leftover grams per food over the paired trays of the days."""
    out: defaultdict[str, float] = defaultdict(float)
    for m in (m for d in days for m in d.meals):
        for f in m.leftovers:
            out[f.food_id] += f.grams
    return out


def logged_days(days: Iterable[DayReport]) -> list[DayReport]:
    """The days with a meal that holds food: a day without one (none logged, or only photos
    with no food found) is missing data, not a day of fasting."""
    return [d for d in days if any(not m.no_food_found for m in d.meals)]


def habits(days: Sequence[DayReport], start: dt.date, end: dt.date,
           refs: dict[str, ReferenceIntake] | None, top: int = 5) -> Habits:
    """Habits over the logged days between start and end (logged_days)."""
    logged = logged_days(days)
    energy = [e for d in logged if (e := d.totals.get(ENERGY)) is not None]
    avg_energy = round(sum(energy) / len(energy), 1) if energy else None
    target = refs[ENERGY].target if refs and ENERGY in refs else None
    limit = refs[SODIUM].upper if refs and SODIUM in refs else None
    over = sum(1 for d in logged if limit is not None
               and (na := d.totals.get(SODIUM)) is not None and na > limit)
    paired = [m for d in logged for m in d.meals if m.kind == MealKind.PAIR and m.served_g > 0]
    leftover_pct = (round(sum(100.0 * m.leftover_g / m.served_g for m in paired) / len(paired), 1)
                    if paired else None)
    favourites, wasted = _food_counts(logged, top)
    evidence = {
        "energy": _energy_evidence(logged, avg_energy, target),
        "sodium": _sodium_evidence(logged, limit),
        "top_foods": _foods_evidence(logged, favourites),
        "leftovers": _leftover_evidence(logged, paired, leftover_pct),
        "most_left_foods": _most_left_evidence(logged, wasted),
    }
    return Habits(start, end, len(logged), avg_energy, percent(avg_energy, target), over, limit,
                  favourites, len(paired), leftover_pct, wasted, evidence)


# --- what each habit rests on ------------------------------------------------------------


def _meal_ids(days: Iterable[DayReport]) -> tuple[str, ...]:
    return tuple(m.analysis_id for d in days for m in d.meals)


def _num(value: float | None, unit: str) -> str:
    """A figure for a statement: thousands separated, no needless decimals."""
    if value is None:
        return "unknown"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}".removesuffix(".0")
    return f"{text} {unit}".rstrip()


def _days(n: int) -> str:
    return f"{n} logged day{'' if n == 1 else 's'}"


def _energy_evidence(logged: Sequence[DayReport], mean: float | None,
                     target: float | None) -> HabitEvidence:
    counted = [d for d in logged if d.totals.get(ENERGY) is not None]
    pct = percent(mean, target)
    if mean is None:
        statement = "no energy logged"
    elif target is None:
        statement = f"mean energy {_num(mean, 'kcal')}/day over {_days(len(counted))} (no target)"
    else:
        statement = (f"mean energy {_num(mean, 'kcal')}/day vs target {_num(target, 'kcal')}"
                     f" ({_num(pct, '%')}) over {_days(len(counted))}")
    return HabitEvidence(statement, {"mean_kcal_per_day": mean, "target_kcal": target,
                                     "pct_of_target": pct}, len(counted),
                         tuple(d.date for d in counted), _meal_ids(counted))


def _sodium_evidence(logged: Sequence[DayReport], limit: float | None) -> HabitEvidence:
    counted = [d for d in logged if d.totals.get(SODIUM) is not None]
    amounts = [float(d.totals[SODIUM] or 0.0) for d in counted]
    mean = round(sum(amounts) / len(amounts), 1) if amounts else None
    over = tuple(d.date for d, na in zip(counted, amounts, strict=True)
                 if limit is not None and na > limit)
    if mean is None:
        statement = "no sodium logged"
    elif limit is None:
        statement = f"mean sodium {_num(mean, 'mg')}/day over {_days(len(counted))} (no limit)"
    else:
        statement = (f"sodium over the {_num(limit, 'mg')} limit on {len(over)} of "
                     f"{_days(len(counted))} (mean {_num(mean, 'mg')}/day)")
    return HabitEvidence(statement, {"mean_mg_per_day": mean, "limit_mg": limit,
                                     "days_over_limit": float(len(over)),
                                     "max_mg_per_day": max(amounts) if amounts else None},
                         len(counted), tuple(d.date for d in counted), _meal_ids(counted), over)


def _label(food: FoodCount) -> str:
    return food.name_en or food.name_ko or food.food_id


def _foods_evidence(logged: Sequence[DayReport],
                    favourites: Sequence[FoodCount]) -> HabitEvidence:
    meals = sum(len(d.meals) for d in logged)
    top = favourites[0] if favourites else None
    statement = (f"most eaten: {_label(top)}, in {top.meals} of {meals} meals" if top
                 else "no foods logged")
    return HabitEvidence(statement, {"meals": float(meals),
                                     "top_food_meals": float(top.meals) if top else None},
                         len(logged), tuple(d.date for d in logged), _meal_ids(logged))


def _leftover_evidence(logged: Sequence[DayReport], paired: Sequence[MealLog],
                       mean_pct: float | None) -> HabitEvidence:
    served = round(sum(m.served_g for m in paired), 1)
    left = round(sum(m.leftover_g for m in paired), 1)
    ids = {m.analysis_id for m in paired}
    dates = tuple(d.date for d in logged if any(m.analysis_id in ids for m in d.meals))
    statement = (f"mean {_num(mean_pct, '%')} of a tray left over {len(paired)} paired "
                 f"tray{'' if len(paired) == 1 else 's'} ({_num(left, 'g')} of "
                 f"{_num(served, 'g')} served)" if paired else "no before/after trays")
    return HabitEvidence(statement, {"trays_paired": float(len(paired)), "served_g": served,
                                     "leftover_g": left, "mean_leftover_pct": mean_pct},
                         len(dates), dates, tuple(m.analysis_id for m in paired))


def _most_left_evidence(logged: Sequence[DayReport],
                        wasted: Sequence[FoodCount]) -> HabitEvidence:
    meals = [m for d in logged for m in d.meals if m.leftovers]
    dates = tuple(d.date for d in logged if any(m.leftovers for m in d.meals))
    left = round(sum(f.grams for m in meals for f in m.leftovers), 1)
    top = wasted[0] if wasted else None
    statement = (f"most left: {_label(top)}, {_num(top.leftover_g, 'g')} of "
                 f"{_num(left, 'g')} left in all" if top else "nothing left on a tray")
    return HabitEvidence(statement, {"leftover_g": left,
                                     "top_food_leftover_g": top.leftover_g if top else None},
                         len(dates), dates, tuple(m.analysis_id for m in meals))


def reference_means(days: Sequence[DayReport],
                    refs: dict[str, ReferenceIntake] | None) -> tuple[NutrientStatus, ...]:
    """Each referenced nutrient's mean per logged day against the reference (a nutrient
    missing from some food on any day is flagged incomplete: the mean is a lower bound)."""
    logged = logged_days(days)
    if not refs or not logged:
        return ()
    means: dict[str, float | None] = {}
    for key in refs:
        values = [v for d in logged if (v := d.totals.get(key)) is not None]
        means[key] = round(sum(values) / len(values), 1) if values else None
    lacking = {k for d in logged for k in d.incomplete}
    return compare(means, lacking, refs)


# --- storage glue: a user's meals and a canteen's trays between two local dates -----------


def canteen_zone(session: Session, canteen_id: str | None) -> ZoneInfo:
    """The canteen's time zone, which decides where a day starts (UTC when unknown)."""
    canteen = session.get(Canteen, canteen_id) if canteen_id else None
    try:
        return ZoneInfo(canteen.timezone if canteen is not None else "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def utc_range(start: dt.date, end: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00, day after end 00:00) local time, as UTC datetimes."""
    lo = dt.datetime.combine(start, dt.time(), zone).astimezone(dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return lo, hi


def local_date(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The local calendar day of a stored (UTC, maybe naive) time."""
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return aware.astimezone(zone).date()


def _foods(pairs: Iterable[tuple[str | None, float, str | None]]) -> tuple[FoodAmount, ...]:
    """(food_id, grams, dish_id) triples with a food and grams > 0 as FoodAmount records."""
    return tuple(FoodAmount(f, round(g, 1), d, *food_names(f)) for f, g, d in pairs
                 if f is not None and g > 0)


def _dish(key: str) -> str | None:
    """The menu dish id a pairing key stands for (keys of foods and labels are not dishes)."""
    return None if ":" in key else key  # food ids are "source:code", labels "label:name"


def photo_meal(analysis: Analysis, kind: str) -> MealLog:
    """A single photo counted as eaten in full (no after photo to subtract)."""
    items = [(i.food_id, i.grams, _dish(i.key)) for i in tray_items(analysis)
             if i.grams is not None]
    return MealLog(analysis.id, analysis.captured_at, kind, None, _foods(items), (),
                   sum(g for _, g, _ in items), 0.0,
                   sum(g for f, g, _ in items if f is None), not analysis.items)


def pair_meal_log(before: Analysis, pair: MealPair, result: PairResult) -> MealLog:
    """A before/after pair: eaten and left grams per food from services.pairing."""
    items = result.items
    return MealLog(before.id, before.captured_at, MealKind.PAIR, pair.id,
                   _foods((p.food_id, p.eaten_g, _dish(p.key)) for p in items),
                   _foods((p.food_id, p.leftover_g, _dish(p.key)) for p in items),
                   result.served_g, result.leftover_g,
                   sum(p.eaten_g for p in items if p.food_id is None), not before.items)


def user_meals(session: Session, user: User, start: dt.date, end: dt.date,
               zone: ZoneInfo) -> tuple[list[MealLog], list[str]]:
    """The user's meals between two local dates (inclusive) and notes on what was left out."""
    lo, hi = utc_range(start, end, zone)
    analyses = list(session.scalars(
        select(Analysis).where(Analysis.user_id == user.id, Analysis.captured_at >= lo,
                               Analysis.captured_at < hi).order_by(Analysis.captured_at)))
    ids = [a.id for a in analyses]
    pairs = {p.before_analysis_id: p for p in session.scalars(
        select(MealPair).where(MealPair.before_analysis_id.in_(ids)))} if ids else {}
    paired_after = {p.after_analysis_id for p in session.scalars(
        select(MealPair).where(MealPair.after_analysis_id.in_(ids)))} if ids else set()
    closed = [p for p in pairs.values() if p.after_analysis_id is not None]
    results = dict(zip((p.before_analysis_id for p in closed), pair_results(session, closed),
                       strict=True))
    meals, notes = [], []
    for a in analyses:
        if a.meal_state == MealState.AFTER.value:
            if a.id not in paired_after:
                notes.append(f"after photo {a.id} has no before photo: not counted")
            continue
        if a.id in results:
            meals.append(pair_meal_log(a, pairs[a.id], results[a.id]))
        else:
            before_only = a.meal_state == MealState.BEFORE.value
            kind = MealKind.BEFORE_ONLY if before_only else MealKind.PHOTO
            meals.append(photo_meal(a, MealKind.MANUAL if a.source == "manual" else kind))
    return meals, notes


def user_references(user: User, system: str, on: dt.date
                    ) -> tuple[dict[str, ReferenceIntake] | None, str | None]:
    """The user's reference intakes on a date, or None with the reason why not."""
    if user.sex is None or user.birth_year is None:
        return None, "set the user's sex and birth_year to compare with reference intakes"
    try:
        # birth year only: the age may be one year high before the birthday
        return reference_intakes(system, user.sex, on.year - user.birth_year), None
    except ValueError as exc:
        return None, f"no reference intakes: {exc}"


def days_report(session: Session, user: User, start: dt.date, end: dt.date,
                system: str) -> list[DayReport]:
    """One DayReport per local date from start to end (inclusive); 409 without diary consent
    (every per-person report goes through here)."""
    require_diary_consent(user)
    zone = canteen_zone(session, user.canteen_id)
    meals, notes = user_meals(session, user, start, end, zone)
    by_day: defaultdict[dt.date, list[MealLog]] = defaultdict(list)
    for m in meals:
        by_day[local_date(m.captured_at, zone)].append(m)
    refs, why = user_references(user, system, start)
    shared = notes + ([why] if why else [])
    return [day_report(start + dt.timedelta(days=n), by_day[start + dt.timedelta(days=n)],
                       refs, shared) for n in range((end - start).days + 1)]


ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
MAX_DAYS = 366


def week_bounds(week: str) -> tuple[dt.date, dt.date]:
    """Monday and Sunday of an ISO week written like 2026-W48."""
    match = ISO_WEEK.match(week)
    if match is None:
        raise unprocessable(f"week must look like 2026-W48, got {week!r}", code="invalid_week")
    try:
        monday = dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as exc:
        raise unprocessable(f"no such ISO week: {week}", code="invalid_week") from exc
    return monday, monday + dt.timedelta(days=6)


def check_range(start: dt.date, end: dt.date) -> None:
    """Reports span start..end inclusive, at most MAX_DAYS days (422 otherwise)."""
    if start > end or (end - start).days >= MAX_DAYS:
        raise unprocessable(f"need start <= end within {MAX_DAYS} days; got {start}..{end}",
                            code="invalid_range")


def week_report(session: Session, user: User, week: str,
                system: str) -> tuple[list[DayReport], Habits]:
    """The seven days of an ISO week and the habits they show."""
    start, end = week_bounds(week)
    days = days_report(session, user, start, end, system)
    refs, _ = user_references(user, system, start)
    return days, habits(days, start, end, refs)


def user_habits(session: Session, user: User, start: dt.date | None, end: dt.date | None,
                system: str) -> Habits:
    """Habits over a date range (default: the 28 days up to today, local time)."""
    end = end or dt.datetime.now(canteen_zone(session, user.canteen_id)).date()
    start = start or end - dt.timedelta(days=27)
    check_range(start, end)
    days = days_report(session, user, start, end, system)
    refs, _ = user_references(user, system, start)
    return habits(days, start, end, refs)
