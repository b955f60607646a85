"""A person's 4- or 12-week trends: per ISO week, energy per logged day, the shares of energy
from protein, fat and carbohydrate, sodium, sugars and fibre per logged day; and for each
series a least-squares slope and a direction.

The maths (pure functions over diary DayReports, tested on hand-built histories):
- a week's per-day figure is the mean over its logged days (days with at least one meal)
  that have a value for the nutrient; a week with no logged day has None;
- a macronutrient's share of energy is sum(Atwater factor x grams) / sum(energy_kcal) x 100
  over the week's logged days that have both values (4 kcal/g protein and carbohydrate,
  9 kcal/g fat), so a big day weighs more than a small one;
- each figure is rounded to 0.1; the slope is fitted to those rounded values against the
  week's index (0 = the first week of the span), weeks without a value left out, in the
  series' unit per week, rounded to 0.01;
- change = slope x (index of the last week with a value - index of the first);
  direction = "up" / "down" when |change| is at least 5 % of the mean of the values,
  "flat" otherwise, None with fewer than two weeks of values.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from nutrition_db import ReferenceIntake
from serve.core.errors import unprocessable
from serve.db.tables.core import User
from serve.services.diary import (
    ATWATER,
    CARBOHYDRATE,
    ENERGY,
    FAT,
    FIBRE,
    PROTEIN,
    SODIUM,
    SUGARS,
    DayReport,
    canteen_zone,
    days_report,
    logged_days,
    user_references,
)

SPANS = (4, 12)
FLAT_FRACTION = 0.05  # |change| under 5 % of the series mean reads as flat

# series name -> unit, in the order the answer lists them
SERIES: dict[str, str] = {
    "energy_kcal_per_day": "kcal",
    "protein_pct_energy": "%",
    "fat_pct_energy": "%",
    "carbohydrate_pct_energy": "%",
    "sodium_mg_per_day": "mg",
    "sugars_g_per_day": "g",
    "fiber_g_per_day": "g",
}
PER_DAY = {"energy_kcal_per_day": ENERGY, "sodium_mg_per_day": SODIUM,
           "sugars_g_per_day": SUGARS, "fiber_g_per_day": FIBRE}
SHARES = {"protein_pct_energy": PROTEIN, "fat_pct_energy": FAT,
          "carbohydrate_pct_energy": CARBOHYDRATE}
# the references the page draws beside the series (target and upper limit per day)
REFERENCED = {"energy_kcal_per_day": ENERGY, "sodium_mg_per_day": SODIUM,
              "sugars_g_per_day": SUGARS, "fiber_g_per_day": FIBRE}


@dataclass(frozen=True)
class TrendWeek:
    """One ISO week of the span: its per-day figures over the days logged."""

    week: str  # e.g. 2026-W48
    start: dt.date  # Monday
    end: dt.date  # Sunday
    days_logged: int
    energy_kcal_per_day: float | None
    protein_pct_energy: float | None
    fat_pct_energy: float | None
    carbohydrate_pct_energy: float | None
    sodium_mg_per_day: float | None
    sugars_g_per_day: float | None
    fiber_g_per_day: float | None
    meal_ids: tuple[str, ...]  # the meals counted (analysis id of each meal's photo)


@dataclass(frozen=True)
class TrendLine:
    """A series' least-squares slope over the span and the direction it reads as."""

    series: str
    unit: str
    weeks_with_data: int
    mean: float | None
    slope_per_week: float | None
    change: float | None
    direction: str | None  # up, down, flat; None with fewer than two weeks of values


@dataclass(frozen=True)
class TrendReference:
    """A series' reference per day for this person (KDRI 2020 or US DRI), when known."""

    series: str
    nutrient: str
    unit: str
    target: float | None
    target_kind: str | None
    upper: float | None
    upper_kind: str | None


@dataclass(frozen=True)
class Trends:
    """A person's last 4 or 12 ISO weeks, oldest first."""

    user_id: str
    span_weeks: int
    start: dt.date
    end: dt.date
    system: str
    weeks: tuple[TrendWeek, ...]
    series: tuple[TrendLine, ...]
    references: tuple[TrendReference, ...]
    notes: tuple[str, ...] = ()


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def week_figures(week: str, days: Sequence[DayReport]) -> TrendWeek:
    """The figures of one week's seven DayReports."""
    logged = logged_days(days)
    figures: dict[str, float | None] = {}
    for name, key in PER_DAY.items():
        figures[name] = _mean([v for d in logged if (v := d.totals.get(key)) is not None])
    for name, key in SHARES.items():
        both = [(e, g) for d in logged
                if (e := d.totals.get(ENERGY)) is not None and (g := d.totals.get(key)) is not None]
        energy = sum(e for e, _ in both)
        figures[name] = (round(100.0 * ATWATER[key] * sum(g for _, g in both) / energy, 1)
                         if energy > 0 else None)
    return TrendWeek(week, days[0].date, days[-1].date, len(logged), **figures,
                     meal_ids=tuple(m.analysis_id for d in logged for m in d.meals))


def trend_line(series: str, values: Sequence[float | None]) -> TrendLine:
    """Least-squares slope of the values against their index (None values left out)."""
    points = [(float(x), v) for x, v in enumerate(values) if v is not None]
    n = len(points)
    mean = round(sum(v for _, v in points) / n, 1) if n else None
    if n < 2:
        return TrendLine(series, SERIES[series], n, mean, None, None, None)
    mx = sum(x for x, _ in points) / n
    my = sum(v for _, v in points) / n
    slope = (sum((x - mx) * (v - my) for x, v in points)
             / sum((x - mx) ** 2 for x, _ in points))
    change = slope * (points[-1][0] - points[0][0])
    if abs(change) < FLAT_FRACTION * abs(my) or change == 0:
        direction = "flat"
    else:
        direction = "up" if change > 0 else "down"
    return TrendLine(series, SERIES[series], n, mean, round(slope, 2), round(change, 1),
                     direction)


def iso_week(monday: dt.date) -> str:
    """The ISO week a date falls in, written like 2026-W48."""
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def trends_of(days: Sequence[DayReport]) -> tuple[tuple[TrendWeek, ...], tuple[TrendLine, ...]]:
    """Weeks and series lines of consecutive DayReports that start on a Monday."""
    if not days or days[0].date.weekday() != 0 or len(days) % 7:
        raise ValueError("trends need whole ISO weeks, Monday first")
    weeks = tuple(week_figures(iso_week(days[i].date), days[i:i + 7])
                  for i in range(0, len(days), 7))
    lines = tuple(trend_line(name, [getattr(w, name) for w in weeks]) for name in SERIES)
    return weeks, lines


def trend_references(refs: dict[str, ReferenceIntake] | None) -> tuple[TrendReference, ...]:
    """The person's reference per day for the series that have one."""
    out = []
    for series, key in REFERENCED.items():
        ref = (refs or {}).get(key)
        if ref is not None:
            out.append(TrendReference(series, key, ref.unit, ref.target, ref.target_kind,
                                      ref.upper, ref.upper_kind))
    return tuple(out)


def span(end: dt.date, weeks: int) -> tuple[dt.date, dt.date]:
    """Monday of the first and Sunday of the last of `weeks` ISO weeks ending with end's."""
    sunday = end + dt.timedelta(days=6 - end.weekday())
    return sunday - dt.timedelta(days=7 * weeks - 1), sunday


def user_trends(session: Session, user: User, weeks: int, end: dt.date | None,
                system: str) -> Trends:
    """The user's last `weeks` ISO weeks up to the week of `end` (default: today, local)."""
    if weeks not in SPANS:
        raise unprocessable(f"weeks must be 4 or 12, got {weeks}", code="invalid_weeks")
    end = end or dt.datetime.now(canteen_zone(session, user.canteen_id)).date()
    first, last = span(end, weeks)
    days = days_report(session, user, first, last, system)
    refs, why = user_references(user, system, last)
    rows, lines = trends_of(days)
    notes = tuple(dict.fromkeys(n for d in days for n in d.notes if n != why))
    return Trends(user.id, weeks, first, last, system, rows, lines, trend_references(refs),
                  notes + ((why,) if why else ()))
