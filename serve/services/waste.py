"""A canteen's food waste by dish over a date range, from its closed before/after pairs."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from serve.core.auth import Principal
from serve.db.access import load_canteen
from serve.db.tables.core import Role, User
from serve.db.tables.pairs import MealPair
from serve.services.diary import canteen_zone, check_range, percent, utc_range
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
                     percent(r[3], r[1])) for k, r in acc.items()]
    return sorted(out, key=lambda d: (-d.leftover_g, d.key))


def canteen_waste(session: Session, canteen_id: str, start: dt.date,
                  end: dt.date) -> WasteReport:
    """Waste by dish over the canteen's closed pairs whose before photo falls in the dates;
    trays of people who do not consent to canteen statistics are left out."""
    lo, hi = utc_range(start, end, canteen_zone(session, canteen_id))
    declined = select(User.id).where(User.consent_canteen_statistics.is_(False))
    pairs = list(session.scalars(
        select(MealPair).where(MealPair.canteen_id == canteen_id,
                               MealPair.after_analysis_id.is_not(None),
                               MealPair.before_at >= lo, MealPair.before_at < hi,
                               or_(MealPair.user_id.is_(None),
                                   MealPair.user_id.not_in(declined)))
        .order_by(MealPair.before_at)))
    results = pair_results(session, pairs)
    served = sum(r.served_g for r in results)
    left = sum(r.leftover_g for r in results)
    return WasteReport(canteen_id, start, end, len(results), round(served, 1), round(left, 1),
                       percent(left, served), tuple(waste_by_dish(results)))


def waste_report(session: Session, principal: Principal, canteen_id: str, start: dt.date,
                 end: dt.date) -> WasteReport:
    """The waste report of a canteen the caller's kiosk or admin key may see."""
    principal.require_role(Role.KIOSK)  # canteen-wide figures are not an app's business
    canteen = load_canteen(session, principal, canteen_id)
    check_range(start, end)
    return canteen_waste(session, canteen.id, start, end)
