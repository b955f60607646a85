"""Trend and habit maths on hand-built histories: DayReports whose totals are chosen by hand,
so every expected figure below is worked out in the comments (no database, no model)."""
from __future__ import annotations

import datetime as dt

import pytest

from nutrition_db import reference_intakes
from serve.services.diary import (
    DayReport,
    FoodAmount,
    MealKind,
    MealLog,
    habits,
    reference_means,
)
from serve.services.nutrients import food_names
from serve.services.trends import span, trend_line, trends_of

RICE = "mfds:D301-022000000-0001"  # 쌀밥
SOUP = "mfds:D105-216010000-0001"  # 된장국_감자
KIMCHI = "mfds:D315-670000000-0001"  # 배추김치
W45 = dt.date(2026, 11, 2)  # Monday of ISO week 2026-W45
REFS = reference_intakes("kdri2020", "female", 30)  # EER 1900 kcal, sodium CDRR 2300 mg


def meal(meal_id: str, foods: dict[str, float], left: dict[str, float] | None = None
         ) -> MealLog:
    """A meal: a photo, or a before/after pair when something was left."""
    left = left or {}
    eaten = tuple(FoodAmount(f, g, None, *food_names(f)) for f, g in foods.items())
    leftovers = tuple(FoodAmount(f, g, None, *food_names(f)) for f, g in left.items())
    served = sum(foods.values()) + sum(left.values())
    return MealLog(meal_id, dt.datetime(2026, 11, 2, 3, tzinfo=dt.UTC),
                   MealKind.PAIR if left else MealKind.PHOTO, "p" + meal_id if left else None,
                   eaten, leftovers, served, sum(left.values()), 0.0)


def day(date: dt.date, meals: list[MealLog] | None = None, **totals: float) -> DayReport:
    """A day with these totals (energy_kcal=..., sodium_mg=...) and meals."""
    return DayReport(date, tuple(meals or ()), dict(totals), (), ())


def week(monday: dt.date, logged: dict[int, dict[str, float]]) -> list[DayReport]:
    """Seven days from a Monday; logged[weekday] gives a day's totals (one meal that day)."""
    return [day(monday + dt.timedelta(days=n),
                [meal(f"{monday:%m%d}-{n}", {RICE: 100})] if n in logged else None,
                **logged.get(n, {}))
            for n in range(7)]


def four_weeks() -> list[DayReport]:
    """W45: two days; W46: nothing logged; W47 and W48: one day each."""
    return [
        *week(W45, {0: dict(energy_kcal=2000, protein_g=100, fat_g=60, carbohydrate_g=250,
                            sodium_mg=3000, sugars_g=40, fiber_g=20),
                    3: dict(energy_kcal=1000, protein_g=25, fat_g=40, carbohydrate_g=130,
                            sodium_mg=2000, sugars_g=20, fiber_g=10)}),
        *week(W45 + dt.timedelta(days=7), {}),
        *week(W45 + dt.timedelta(days=14), {
            2: dict(energy_kcal=1800, protein_g=90, fat_g=60, carbohydrate_g=225,
                    sodium_mg=3100, sugars_g=50, fiber_g=15.5)}),
        *week(W45 + dt.timedelta(days=21), {
            4: dict(energy_kcal=1200, protein_g=60, fat_g=40, carbohydrate_g=150,
                    sodium_mg=3700, sugars_g=30, fiber_g=15)}),
    ]


def test_weekly_figures() -> None:
    weeks, _ = trends_of(four_weeks())
    assert [w.week for w in weeks] == ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    assert [w.days_logged for w in weeks] == [2, 0, 1, 1]
    first = weeks[0]
    # per logged day: (2000 + 1000) / 2; (3000 + 2000) / 2; (40 + 20) / 2; (20 + 10) / 2
    assert (first.energy_kcal_per_day, first.sodium_mg_per_day) == (1500, 2500)
    assert (first.sugars_g_per_day, first.fiber_g_per_day) == (30, 15)
    # shares of the week's 3000 kcal: protein 4 x 125 g = 500 kcal -> 16.7 %;
    # fat 9 x 100 g = 900 -> 30.0 %; carbohydrate 4 x 380 g = 1520 -> 50.7 %
    assert (first.protein_pct_energy, first.fat_pct_energy,
            first.carbohydrate_pct_energy) == (16.7, 30.0, 50.7)
    assert first.meal_ids == ("1102-0", "1102-3")
    empty = weeks[1]
    assert empty.energy_kcal_per_day is None and empty.protein_pct_energy is None
    assert empty.meal_ids == ()
    # W47: 4 x 90 / 1800 = 20 %, 9 x 60 / 1800 = 30 %, 4 x 225 / 1800 = 50 %
    assert (weeks[2].protein_pct_energy, weeks[2].fat_pct_energy,
            weeks[2].carbohydrate_pct_energy) == (20.0, 30.0, 50.0)


def test_slopes_and_directions() -> None:
    _, lines = trends_of(four_weeks())
    by = {line.series: line for line in lines}
    # energy [1500, -, 1800, 1200] at weeks 0, 2, 3: mean x 5/3, mean y 1500,
    # Sxx = 25/9 + 1/9 + 16/9 = 42/9, Sxy = 0 + 100 - 400 = -300 -> slope -64.29 kcal/week;
    # change over weeks 0..3 = -192.9, 12.9 % of the mean: down
    energy = by["energy_kcal_per_day"]
    assert (energy.weeks_with_data, energy.mean) == (3, 1500)
    assert energy.slope_per_week == pytest.approx(-64.29)
    assert (energy.change, energy.direction, energy.unit) == (-192.9, "down", "kcal")
    # sodium [2500, -, 3100, 3700]: Sxy = 1000 + 0 + 800 = 1800 -> 385.71 mg/week, up
    sodium = by["sodium_mg_per_day"]
    assert sodium.slope_per_week == pytest.approx(385.71)
    assert (sodium.change, sodium.direction) == (1157.1, "up")
    # fat share 30 % every week: flat, slope 0
    assert (by["fat_pct_energy"].slope_per_week, by["fat_pct_energy"].direction) == (0, "flat")
    # protein [16.7, -, 20, 20]: mean 18.9, Sxy = 11/3 + 11/6 = 5.5 -> 1.18 points/week, up
    assert by["protein_pct_energy"].slope_per_week == pytest.approx(1.18)
    assert by["protein_pct_energy"].direction == "up"
    # fibre [15, -, 15.5, 15]: change 0.1 g, under 5 % of the 15.2 g mean: flat
    assert (by["fiber_g_per_day"].change, by["fiber_g_per_day"].direction) == (0.1, "flat")
    assert [line.series for line in lines] == [
        "energy_kcal_per_day", "protein_pct_energy", "fat_pct_energy",
        "carbohydrate_pct_energy", "sodium_mg_per_day", "sugars_g_per_day", "fiber_g_per_day"]


def test_a_single_week_of_data_has_no_direction() -> None:
    line = trend_line("sugars_g_per_day", [None, 20.0, None, None])
    assert (line.weeks_with_data, line.mean, line.slope_per_week, line.direction) == (
        1, 20.0, None, None)
    assert trend_line("sugars_g_per_day", [None] * 4).mean is None


def test_span_ends_with_the_week_of_the_end_date() -> None:
    assert span(dt.date(2026, 11, 25), 4) == (W45, dt.date(2026, 11, 29))
    assert span(dt.date(2026, 11, 29), 12) == (dt.date(2026, 9, 7), dt.date(2026, 11, 29))
    with pytest.raises(ValueError):
        trends_of(four_weeks()[1:])


def history() -> list[DayReport]:
    """Mon: one photo, 2000 kcal and 3100 mg sodium; Tue: nothing; Wed: a photo and a
    before/after tray (500 g served, 100 g left: 60 g kimchi, 40 g soup), 1600 kcal and
    1900 mg sodium."""
    mon, tue, wed = W45, W45 + dt.timedelta(days=1), W45 + dt.timedelta(days=2)
    return [day(mon, [meal("m1", {RICE: 210, KIMCHI: 40})], energy_kcal=2000, sodium_mg=3100),
            day(tue),
            day(wed, [meal("m2", {RICE: 150}),
                      meal("m3", {RICE: 200, SOUP: 200}, {KIMCHI: 60, SOUP: 40})],
                energy_kcal=1600, sodium_mg=1900)]


def test_habit_evidence_states_its_numbers_and_meals() -> None:
    days = history()
    h = habits(days, W45, W45 + dt.timedelta(days=2), REFS)
    energy = h.evidence["energy"]
    assert energy.numbers == {"mean_kcal_per_day": 1800, "target_kcal": 1900,
                              "pct_of_target": 94.7}
    assert (energy.days, energy.meal_ids) == (2, ("m1", "m2", "m3"))
    assert energy.statement == ("mean energy 1,800 kcal/day vs target 1,900 kcal (94.7 %) "
                                "over 2 logged days")
    sodium = h.evidence["sodium"]
    assert sodium.numbers == {"mean_mg_per_day": 2500, "limit_mg": 2300,
                              "days_over_limit": 1, "max_mg_per_day": 3100}
    assert sodium.flagged_dates == (W45,) and sodium.dates == (W45, days[2].date)
    assert sodium.statement == ("sodium over the 2,300 mg limit on 1 of 2 logged days "
                                "(mean 2,500 mg/day)")
    leftovers = h.evidence["leftovers"]
    assert leftovers.numbers == {"trays_paired": 1, "served_g": 500, "leftover_g": 100,
                                 "mean_leftover_pct": 20.0}
    assert leftovers.meal_ids == ("m3",) and leftovers.dates == (days[2].date,)
    top = h.evidence["top_foods"]
    assert top.numbers == {"meals": 3, "top_food_meals": 3}
    assert top.statement == "most eaten: 쌀밥, in 3 of 3 meals"
    left = h.evidence["most_left_foods"]
    assert left.numbers == {"leftover_g": 100, "top_food_leftover_g": 60}
    assert left.meal_ids == ("m3",)
    # names beside ids, and the meals each food was eaten or left in
    assert h.top_foods[0].food_id == RICE and h.top_foods[0].name_ko == "쌀밥"
    assert h.top_foods[0].meal_ids == ("m1", "m2", "m3")
    assert [(f.food_id, f.leftover_g, f.name_ko) for f in h.most_left_foods] == [
        (KIMCHI, 60, "배추김치"), (SOUP, 40, "된장국_감자")]
    assert h.most_left_foods[0].meal_ids == ("m1", "m3")


def test_reference_means_average_the_logged_days() -> None:
    means = {s.nutrient: s for s in reference_means(history(), REFS)}
    # (2000 + 1600) / 2 = 1800 kcal = 94.7 % of 1900; (3100 + 1900) / 2 = 2500 mg > 2300
    assert (means["energy_kcal"].amount, means["energy_kcal"].pct_of_target) == (1800, 94.7)
    assert means["sodium_mg"].amount == 2500 and means["sodium_mg"].over_upper
    assert means["calcium_mg"].amount is None  # no day has a calcium figure here
    assert reference_means(history(), None) == ()


def test_a_day_whose_photos_found_no_food_is_not_logged() -> None:
    """W45 Monday 2000 kcal; Tuesday only a photo with no food found (totals 0): habits,
    daily means and the week's trend figures count one logged day, not a 0 kcal day."""
    nothing = MealLog("empty", dt.datetime(2026, 11, 3, 3, tzinfo=dt.UTC), MealKind.PHOTO,
                      None, (), (), 0.0, 0.0, 0.0, no_food_found=True)
    days = week(W45, {0: dict(energy_kcal=2000, sodium_mg=3000)})
    days[1] = day(W45 + dt.timedelta(days=1), [nothing], energy_kcal=0.0, sodium_mg=0.0)
    found = habits(days, W45, W45 + dt.timedelta(days=6), REFS)
    assert (found.days_logged, found.avg_energy_kcal) == (1, 2000)
    assert found.evidence["energy"].meal_ids == (f"{W45:%m%d}-0",)
    means = {s.nutrient: s.amount for s in reference_means(days, REFS)}
    assert means["energy_kcal"] == 2000
    weeks, _ = trends_of(days)
    assert (weeks[0].days_logged, weeks[0].energy_kcal_per_day) == (1, 2000)
