"""A canteen's food waste by dish and by day over a date range, from its closed before/after
pairs, and its participation: how many of its users had a tray photographed before eating."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from serve.core.auth import Principal
from serve.db.access import load_canteen
from serve.db.tables.analyses import Analysis, MealState
from serve.db.tables.core import Role, User
from serve.db.tables.pairs import MealPair
from serve.services.diary import canteen_zone, check_range, local_date, percent, utc_range
from serve.services.nutrients import food_names
from serve.services.pairing import PairResult, pair_results


@dataclass(frozen=True)
class DishWaste:
    """Served, eaten and left grams of one food over a canteen's paired trays."""

    food_id: str | None
    key: str
    trays: int
    served_g: float
    eaten_g: float
    leftover_g: float
    leftover_pct: float | None
    name_ko: str | None = None
    name_en: str | None = None


@dataclass(frozen=True)
class WasteReport:
    """A canteen's waste by dish between two local dates."""

    canteen_id: str
    start: dt.date
    end: dt.date
    trays: int
    served_g: float
    leftover_g: float
    leftover_pct: float | None
    dishes: tuple[DishWaste, ...]


def waste_by_dish(results: Iterable[PairResult]) -> list[DishWaste]:
    """Sum paired items per food (per label when no food is known), most wasted first."""
    acc: dict[str, list[float]] = {}
    foods: dict[str, str | None] = {}
    for res in results:
        for p in res.items:
            if p.served_g <= 0:  # items seen only after the meal were never served
                continue
            key = p.food_id or p.key
            foods[key] = p.food_id
            row = acc.setdefault(key, [0, 0.0, 0.0, 0.0])
            row[0] += 1
            row[1] += p.served_g
            row[2] += p.eaten_g
            row[3] += p.leftover_g
    out = [DishWaste(foods[k], k, int(r[0]), round(r[1], 1), round(r[2], 1), round(r[3], 1),
                     percent(r[3], r[1]), *food_names(foods[k])) for k, r in acc.items()]
    return sorted(out, key=lambda d: (-d.leftover_g, d.key))


@dataclass(frozen=True)
class DayWaste:
    """One local day of a canteen: its paired trays' grams and who had a tray photographed."""

    date: dt.date
    trays: int  # closed before/after pairs
    served_g: float
    eaten_g: float
    leftover_g: float
    leftover_pct: float | None
    diners: int  # distinct users with a before photo that day
    participation_pct: float | None  # diners / the canteen's users


@dataclass(frozen=True)
class DailyWasteReport:
    """A canteen's waste and participation per local day (every day of the range listed)."""

    canteen_id: str
    start: dt.date
    end: dt.date
    users: int  # the canteen's users now (with statistics consent): the denominator
    trays: int
    served_g: float
    eaten_g: float
    leftover_g: float
    leftover_pct: float | None
    mean_diners_per_day: float | None  # over the days with at least one diner
    days: tuple[DayWaste, ...]


def _declined() -> Select[str]:
    """Ids of the people whose consent keeps them out of canteen statistics."""
    return select(User.id).where(User.consent_canteen_statistics.is_(False))


def _closed_pairs(session: Session, canteen_id: str, lo: dt.datetime,
                  hi: dt.datetime) -> tuple[list[MealPair], list[PairResult]]:
    """The canteen's closed pairs whose before photo falls in [lo, hi), and their results."""
    pairs = list(session.scalars(
        select(MealPair).where(MealPair.canteen_id == canteen_id,
                               MealPair.after_analysis_id.is_not(None),
                               MealPair.before_at >= lo, MealPair.before_at < hi,
                               or_(MealPair.user_id.is_(None),
                                   MealPair.user_id.not_in(_declined())))
        .order_by(MealPair.before_at)))
    return pairs, pair_results(session, pairs)


def _grams(results: Sequence[PairResult]) -> tuple[float, float, float]:
    """Served, eaten and leftover grams summed over pair results."""
    return (sum(r.served_g for r in results), sum(r.eaten_g for r in results),
            sum(r.leftover_g for r in results))


def canteen_waste(session: Session, canteen_id: str, start: dt.date,
                  end: dt.date) -> WasteReport:
    """Waste by dish over the canteen's closed pairs whose before photo falls in the dates;
    trays of people who do not consent to canteen statistics are left out."""
    lo, hi = utc_range(start, end, canteen_zone(session, canteen_id))
    _, results = _closed_pairs(session, canteen_id, lo, hi)
    served, _, left = _grams(results)
    return WasteReport(canteen_id, start, end, len(results), round(served, 1), round(left, 1),
                       percent(left, served), tuple(waste_by_dish(results)))


def daily_waste(session: Session, canteen_id: str, start: dt.date,
                end: dt.date) -> DailyWasteReport:
    """Waste per local day (closed pairs by their before photo's day) and participation
    (distinct users with a before photo in the canteen that day / the canteen's users);
    people who do not consent to canteen statistics are counted in neither."""
    zone = canteen_zone(session, canteen_id)
    lo, hi = utc_range(start, end, zone)
    pairs, results = _closed_pairs(session, canteen_id, lo, hi)
    by_day: defaultdict[dt.date, list[PairResult]] = defaultdict(list)
    for pair, result in zip(pairs, results, strict=True):
        by_day[local_date(pair.before_at, zone)].append(result)
    diners: defaultdict[dt.date, set[str]] = defaultdict(set)
    for user_id, at in session.execute(
            select(Analysis.user_id, Analysis.captured_at).where(
                Analysis.canteen_id == canteen_id, Analysis.user_id.is_not(None),
                Analysis.user_id.not_in(_declined()),
                Analysis.meal_state == MealState.BEFORE.value,
                Analysis.captured_at >= lo, Analysis.captured_at < hi)):
        diners[local_date(at, zone)].add(str(user_id))
    users = session.scalar(select(func.count()).select_from(User).where(
        User.canteen_id == canteen_id, User.consent_canteen_statistics.is_(True))) or 0
    days = []
    for n in range((end - start).days + 1):
        day = start + dt.timedelta(days=n)
        served, eaten, left = _grams(by_day[day])
        days.append(DayWaste(day, len(by_day[day]), round(served, 1), round(eaten, 1),
                             round(left, 1), percent(left, served), len(diners[day]),
                             percent(len(diners[day]), users)))
    served, eaten, left = _grams(results)
    counts = [d.diners for d in days if d.diners]
    return DailyWasteReport(canteen_id, start, end, users, len(results), round(served, 1),
                            round(eaten, 1), round(left, 1), percent(left, served),
                            round(sum(counts) / len(counts), 1) if counts else None,
                            tuple(days))


def waste_report(session: Session, principal: Principal, canteen_id: str, start: dt.date,
                 end: dt.date) -> WasteReport:
    """The waste report of a canteen the caller's kiosk or admin key may see."""
    principal.require_role(Role.KIOSK)  # canteen-wide figures are not an app's business
    canteen = load_canteen(session, principal, canteen_id)
    check_range(start, end)
    return canteen_waste(session, canteen.id, start, end)


def daily_waste_report(session: Session, principal: Principal, canteen_id: str,
                       start: dt.date, end: dt.date) -> DailyWasteReport:
    """The daily waste and participation of a canteen the caller's kiosk or admin key may
    see (the same rule as the waste report)."""
    principal.require_role(Role.KIOSK)
    canteen = load_canteen(session, principal, canteen_id)
    check_range(start, end)
    return daily_waste(session, canteen.id, start, end)
