"""The weekly report per person, sent to the webhooks subscribed to `weekly_report`.

Once an ISO week is over - from `weekly_report_weekday` at `weekly_report_hour` of the week
after, in the canteen's time zone - every person with a logged meal that week gets one
report per subscribed webhook: the week's days and habits exactly as GET
/v1/users/{id}/weeks/{week} shows them (serve.services.diary, not recomputed here), and two
summary sentences, Korean and English, built from those numbers. A unique
(webhook, "weekly_report:{user}:{week}") key makes the job idempotent: run twice, by two
workers or after a restart, it enqueues each report once.

serve.services.tasks runs this and the dispatcher in the background (in-process, or on a
task queue).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter
from sqlalchemy import exists, literal, select
from sqlalchemy.orm import Session, sessionmaker

from nutrition_db import UnknownFoodError, get_food
from serve.core.responses import rounded
from serve.core.settings import Settings
from serve.db.base import utcnow
from serve.db.tables.analyses import Analysis
from serve.db.tables.core import ApiKey, User
from serve.db.tables.webhooks import Webhook, WebhookDelivery
from serve.services import diary
from serve.services.diary import DayReport, Habits
from serve.services.webhooks import EVENT_WEEKLY_REPORT, enqueue

log = logging.getLogger("traylens.webhooks")

SYSTEM = "kdri2020"  # the reference intakes of the report (as the diary routes' default)
MAX_REPORTS_PER_RUN = 200  # bounded work per tick; the rest follow on the next ticks

_DAYS = TypeAdapter(list[DayReport])
_HABITS = TypeAdapter(Habits)


def due_week(now: dt.datetime, zone: ZoneInfo, weekday: int, hour: int) -> str:
    """The latest ISO week whose report is due at `now`: the week before the latest
    (weekday, hour) local moment that has passed."""
    local = now.astimezone(zone)
    monday = local.date() - dt.timedelta(days=local.weekday())
    send_at = dt.datetime.combine(monday + dt.timedelta(days=weekday - 1), dt.time(hour), zone)
    if local < send_at:
        monday -= dt.timedelta(days=7)
    year, week, _ = (monday - dt.timedelta(days=7)).isocalendar()
    return f"{year}-W{week:02d}"


def _food_names(food_id: str) -> tuple[str, str]:
    """(English, Korean) name of a food, its id when unknown."""
    try:
        food = get_food(food_id)
    except UnknownFoodError:
        return food_id, food_id
    return (food.name_en or food.name_ko or food_id), (food.name_ko or food.name_en or food_id)


def summaries(week: str, habits: Habits) -> dict[str, str]:
    """Short Korean and English sentences from the week's habit numbers."""
    en = [f"Week {week}: meals logged on {habits.days_logged} of 7 days."]
    ko = [f"{week} 주간: 7일 중 {habits.days_logged}일 식사를 기록했습니다."]
    if habits.avg_energy_kcal is not None:
        kcal = round(habits.avg_energy_kcal)
        pct = habits.avg_energy_pct_of_target
        en.append(f"Average energy {kcal} kcal a day"
                  + (f" ({round(pct)}% of your reference)." if pct is not None else "."))
        ko.append(f"하루 평균 에너지 섭취는 {kcal} kcal"
                  + (f"(기준의 {round(pct)}%)입니다." if pct is not None else "입니다."))
    if habits.sodium_limit_mg is not None and habits.days_logged:
        limit, over = round(habits.sodium_limit_mg), habits.sodium_over_limit_days
        if over:
            en.append(f"Sodium was over {limit} mg on {over} day(s).")
            ko.append(f"나트륨이 {limit} mg을 넘은 날은 {over}일입니다.")
        else:
            en.append(f"Sodium stayed within {limit} mg on every logged day.")
            ko.append(f"기록한 모든 날 나트륨이 {limit} mg 이내였습니다.")
    if habits.trays_paired and habits.avg_leftover_pct is not None:
        en.append(f"{habits.trays_paired} tray(s) photographed before and after: "
                  f"{round(habits.avg_leftover_pct)}% left on average.")
        ko.append(f"식전·식후 사진을 찍은 식판 {habits.trays_paired}개에서 평균 "
                  f"{round(habits.avg_leftover_pct)}%를 남겼습니다.")
    if habits.top_foods:
        name_en, name_ko = _food_names(habits.top_foods[0].food_id)
        en.append(f"Most eaten: {name_en}.")
        ko.append(f"가장 많이 먹은 음식: {name_ko}.")
    return {"en": " ".join(en), "ko": " ".join(ko)}


def report_data(session: Session, user: User, week: str) -> dict[str, Any]:
    """The `data` of a weekly_report delivery: the diary's week (days and habits) and the
    summary sentences."""
    days, habits = diary.week_report(session, user, week, SYSTEM)
    start, end = diary.week_bounds(week)
    return {"user_id": user.id, "external_ref": user.external_ref,
            "canteen_id": user.canteen_id, "week": week, "start": start.isoformat(),
            "end": end.isoformat(), "system": SYSTEM,
            "summary": summaries(week, habits),
            # as GET .../weeks/{week} answers them: times with Z, numbers rounded
            "habits": rounded(_HABITS.dump_python(habits, mode="json")),
            "days": rounded(_DAYS.dump_python(days, mode="json"))}


def _weekly_hooks(session: Session) -> dict[str, list[Webhook]]:
    """Live webhooks subscribed to weekly_report, by canteen."""
    rows = session.execute(select(Webhook, ApiKey.revoked_at)
                           .outerjoin(ApiKey, ApiKey.id == Webhook.app_key_id))
    by_canteen: defaultdict[str, list[Webhook]] = defaultdict(list)
    for hook, revoked in rows:
        if revoked is None and EVENT_WEEKLY_REPORT in (hook.events or []):
            by_canteen[hook.canteen_id].append(hook)
    return by_canteen


def _dedupe_key(user_id: str, week: str) -> str:
    """One weekly report per (webhook, person, week)."""
    return f"{EVENT_WEEKLY_REPORT}:{user_id}:{week}"


def _pending_users(session: Session, hook: Webhook, week: str, lo: dt.datetime,
                   hi: dt.datetime, limit: int) -> list[str]:
    """The hook's people who keep a diary, with a meal logged in [lo, hi) and no report of
    this week yet (without diary consent there is no meal record to report on)."""
    key = literal(f"{EVENT_WEEKLY_REPORT}:") + User.id + literal(f":{week}")
    query = (select(User.id).where(
        User.canteen_id == hook.canteen_id, User.consent_diary.is_(True),
        exists().where(Analysis.user_id == User.id, Analysis.captured_at >= lo,
                       Analysis.captured_at < hi),
        ~exists().where(WebhookDelivery.webhook_id == hook.id,
                        WebhookDelivery.dedupe_key == key))
        .order_by(User.id).limit(limit))
    if hook.app_key_id is not None:  # an app's webhook: that app's people only
        query = query.where(User.app_key_id == hook.app_key_id)
    return list(session.scalars(query))


def enqueue_weekly_reports(factory: sessionmaker[Session], settings: Settings, *,
                           now: dt.datetime | None = None,
                           limit: int = MAX_REPORTS_PER_RUN) -> int:
    """Enqueue the weekly reports due at `now` that are not enqueued yet; how many."""
    now = now or utcnow()
    made = 0
    with factory() as session:
        hooks = _weekly_hooks(session)
        for canteen_id, canteen_hooks in hooks.items():
            zone = diary.canteen_zone(session, canteen_id)
            week = due_week(now, zone, settings.weekly_report_weekday,
                            settings.weekly_report_hour)
            lo, hi = diary.utc_range(*diary.week_bounds(week), zone)
            for hook in canteen_hooks:
                for user_id in _pending_users(session, hook, week, lo, hi, limit - made):
                    user = session.get_one(User, user_id)
                    data = report_data(session, user, week)
                    with factory() as writer, writer.begin():
                        if enqueue(writer, hook, EVENT_WEEKLY_REPORT, data,
                                   dedupe_key=_dedupe_key(user_id, week), now=now,
                                   user_id=user_id):
                            made += 1
                if made >= limit:
                    return made
    return made
