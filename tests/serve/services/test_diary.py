"""Diary days, weeks and habits; pair linking; canteen waste by dish - on a real database
(SQLite and PostgreSQL) with real nutrient values, hand-checked."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from serve.core.errors import ApiError
from serve.core.storage import record_image, sha256_hex
from serve.db.migrate import upgrade_database
from serve.db.session import make_engine, make_session_factory
from serve.db.tables.analyses import Analysis, AnalysisItem
from serve.db.tables.core import Canteen, User
from serve.db.tables.kiosks import Kiosk
from serve.db.tables.pairs import MealPair
from serve.services.diary import MealKind, days_report, habits, user_references
from serve.services.pairing import PairFlag, link_analysis, pair_of
from serve.services.waste import canteen_waste, daily_waste

# Real MFDS rows (per 100 g): 쌀밥 166 kcal, 0 mg Na; 된장국_감자 25 kcal, 357 mg Na;
# 배추김치 38 kcal, 551 mg Na.
RICE = "mfds:D301-022000000-0001"
SOUP = "mfds:D105-216010000-0001"
KIMCHI = "mfds:D315-670000000-0001"
WINDOW = dt.timedelta(hours=3)
AREA_PER_G = 100.0


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the module's database (tests/serve/conftest.py: SQLite and PostgreSQL),
    migrated to the newest revision; each test makes its own canteen, so tests stay apart."""
    engine = make_engine(database_url)
    upgrade_database(engine)
    yield make_session_factory(engine)
    engine.dispose()


def record_photo(factory: sessionmaker[Session], fixtures_dir: Path) -> str:
    """A real tray photo recorded as stored (hand-made analyses point at it)."""
    data = next((fixtures_dir / "mealtray" / "labeled").glob("*2770*.jpg")).read_bytes()
    digest = sha256_hex(data)
    with factory.begin() as s:
        record_image(s, sha256=digest, kind="photo", content_type="image/jpeg",
                     size_bytes=len(data), width=1024, height=768)
    return digest


@pytest.fixture
def photo_sha(factory: sessionmaker[Session], fixtures_dir: Path) -> str:
    """The stored photo's hash."""
    return record_photo(factory, fixtures_dir)


@pytest.fixture
def people(factory: sessionmaker[Session]) -> dict[str, str]:
    """A Seoul canteen with a kiosk and a 30-year-old woman (in 2026) who eats there."""
    with factory.begin() as s:
        canteen = Canteen(name="Seoul HQ", timezone="Asia/Seoul")
        s.add(canteen)
        s.flush()
        kiosk = Kiosk(canteen_id=canteen.id, name="line 1", px_per_cm=20.0)
        user = User(canteen_id=canteen.id, sex="female", birth_year=1996)
        s.add_all([kiosk, user])
        s.flush()
        return {"canteen": canteen.id, "kiosk": kiosk.id, "user": user.id}


def stored_analysis(s: Session, sha: str, ids: dict[str, str], at: dt.datetime,
              state: str | None, items: list[tuple[str, float]]) -> Analysis:
    """A stored analysis with (food_id, grams) items laid out left to right (times in UTC,
    as the pipeline stores them); each item's mask area is proportional to its grams (100 px
    per gram), so before/after area ratios give the hand-checked leftovers. No embeddings:
    items pair by place (and label)."""
    a = Analysis(canteen_id=ids["canteen"], user_id=ids["user"], kiosk_id=ids["kiosk"],
                 meal_state=state, captured_at=at.astimezone(dt.UTC), image_sha256=sha,
                 image_width=1024, image_height=768, model_version="test")
    a.items = [AnalysisItem(position=n, label=f, food_id=f, confidence=0.9, grams=g,
                            area_px=g * AREA_PER_G,
                            box=[n * 300.0, 100.0, n * 300.0 + 250, 350.0])
               for n, (f, g) in enumerate(items)]
    s.add(a)
    s.flush()
    return a


KST = dt.timezone(dt.timedelta(hours=9))
LUNCH = dt.datetime(2026, 11, 23, 12, 5, tzinfo=KST)  # Monday of ISO week 2026-W48


def lunch_pair(factory: sessionmaker[Session], sha: str, ids: dict[str, str]) -> str:
    """Before 210/300/50 g, after 30/120/50 g of rice/soup/kimchi, auto-paired by user+kiosk."""
    with factory.begin() as s:
        before = stored_analysis(s, sha, ids, LUNCH, "before",
                                 [(RICE, 210), (SOUP, 300), (KIMCHI, 50)])
        pair = link_analysis(s, before, pair_id=None, window=WINDOW)
        assert pair is not None
        after = stored_analysis(s, sha, ids, LUNCH + dt.timedelta(minutes=25), "after",
                                [(RICE, 30), (SOUP, 120), (KIMCHI, 50)])
        closed = link_analysis(s, after, pair_id=None, window=WINDOW)
        assert closed is not None and closed.id == pair.id
        return pair.id


def test_auto_pairing_and_result(factory: sessionmaker[Session], photo_sha: str,
                                 people: dict[str, str]) -> None:
    pair_id = lunch_pair(factory, photo_sha, people)
    with factory() as s:
        pair = s.get(MealPair, pair_id)
        assert pair is not None
        res = pair_of(s, pair)
    assert [(p.food_id, p.eaten_g, p.leftover_g) for p in res.items] == [
        (RICE, 180, 30), (SOUP, 180, 120), (KIMCHI, 0, 50)]
    assert (res.served_g, res.eaten_g, res.leftover_g, res.leftover_pct) == (560, 360, 200, 35.7)


def test_after_outside_window_or_other_user_is_not_paired(
        factory: sessionmaker[Session], photo_sha: str, people: dict[str, str]) -> None:
    with factory.begin() as s:
        before = stored_analysis(s, photo_sha, people, LUNCH, "before", [(RICE, 200)])
        link_analysis(s, before, pair_id=None, window=WINDOW)
        late = stored_analysis(s, photo_sha, people, LUNCH + dt.timedelta(hours=4), "after",
                               [(RICE, 20)])
        assert link_analysis(s, late, pair_id=None, window=WINDOW) is None
        other = User(canteen_id=people["canteen"])
        s.add(other)
        s.flush()
        stranger = stored_analysis(s, photo_sha, {**people, "user": other.id},
                             LUNCH + dt.timedelta(minutes=20), "after", [(RICE, 20)])
        assert link_analysis(s, stranger, pair_id=None, window=WINDOW) is None


def test_explicit_pair_id_rules(factory: sessionmaker[Session], photo_sha: str,
                                people: dict[str, str]) -> None:
    with factory.begin() as s:
        before = stored_analysis(s, photo_sha, people, LUNCH, "before", [(RICE, 200)])
        pair = link_analysis(s, before, pair_id=None, window=WINDOW)
        assert pair is not None
        after0 = stored_analysis(s, photo_sha, people, LUNCH + dt.timedelta(minutes=5),
                                 "after", [(RICE, 20)])
        with pytest.raises(ApiError) as unknown:
            link_analysis(s, after0, pair_id="nope", window=WINDOW)
        assert unknown.value.status_code == 404
        other = User(canteen_id=people["canteen"])
        s.add(other)
        s.flush()
        theirs = stored_analysis(s, photo_sha, {**people, "user": other.id},
                                 LUNCH + dt.timedelta(minutes=5), "after", [(RICE, 20)])
        with pytest.raises(ApiError) as mismatch:
            link_analysis(s, theirs, pair_id=pair.id, window=WINDOW)
        assert mismatch.value.code == "pair_mismatch"
        assert link_analysis(s, after0, pair_id=pair.id, window=WINDOW) is pair
        after1 = stored_analysis(s, photo_sha, people, LUNCH + dt.timedelta(minutes=6),
                                 "after", [(RICE, 10)])
        with pytest.raises(ApiError) as closed:
            link_analysis(s, after1, pair_id=pair.id, window=WINDOW)
        assert closed.value.status_code == 409


def test_day_totals_against_kdri(factory: sessionmaker[Session], photo_sha: str,
                                 people: dict[str, str]) -> None:
    lunch_pair(factory, photo_sha, people)
    with factory.begin() as s:  # dinner from the app: one photo, all eaten
        stored_analysis(s, photo_sha, people, dt.datetime(2026, 11, 23, 19, 0, tzinfo=KST), None,
                        [(RICE, 200), (KIMCHI, 40)])
    with factory() as s:
        user = s.get(User, people["user"])
        assert user is not None
        (day,) = days_report(s, user, dt.date(2026, 11, 23), dt.date(2026, 11, 23), "kdri2020")
    assert [m.kind for m in day.meals] == [MealKind.PAIR, MealKind.PHOTO]
    # eaten: rice 180+200 g x 1.66 = 630.8; soup 180 g x 0.25 = 45; kimchi 40 g x 0.38 = 15.2
    assert day.totals["energy_kcal"] == pytest.approx(691.0)
    # sodium: soup 180 g x 3.57 = 642.6; kimchi 40 g x 5.51 = 220.4; rice 0
    assert day.totals["sodium_mg"] == pytest.approx(863.0)
    refs = {r.nutrient: r for r in day.references}
    # KDRI 2020, women 30-49: EER 1900 kcal; sodium AI 1500, CDRR 2300 mg
    assert refs["energy_kcal"].target == 1900 and refs["energy_kcal"].pct_of_target == 36.4
    assert refs["sodium_mg"].upper == 2300 and refs["sodium_mg"].over_upper is False
    assert day.meals[0].leftovers[0].food_id == RICE and day.meals[0].leftover_g == 200
    assert day.meals[1].foods[0].name_ko == "쌀밥"  # names beside food ids


def test_correction_wins_over_estimate(factory: sessionmaker[Session], photo_sha: str,
                                       people: dict[str, str]) -> None:
    with factory.begin() as s:
        a = stored_analysis(s, photo_sha, people, LUNCH, None, [(RICE, 200)])
        item = a.items[0]
        item.original = {"food_id": RICE, "grams": 200}
        item.food_id, item.grams, item.provenance = KIMCHI, 100.0, "user_correction"
    with factory() as s:
        user = s.get(User, people["user"])
        assert user is not None
        (day,) = days_report(s, user, LUNCH.date(), LUNCH.date(), "kdri2020")
    assert day.totals["energy_kcal"] == pytest.approx(38.0)
    assert day.totals["sodium_mg"] == pytest.approx(551.0)


def test_local_day_boundary_follows_canteen_timezone(
        factory: sessionmaker[Session], photo_sha: str, people: dict[str, str]) -> None:
    with factory.begin() as s:  # 23:30 in Seoul on the 23rd is 14:30 UTC the same day;
        # 00:30 in Seoul on the 24th is still the 23rd in UTC
        stored_analysis(s, photo_sha, people, dt.datetime(2026, 11, 23, 23, 30, tzinfo=KST), None,
                        [(RICE, 100)])
        stored_analysis(s, photo_sha, people, dt.datetime(2026, 11, 24, 0, 30, tzinfo=KST), None,
                        [(RICE, 50)])
    with factory() as s:
        user = s.get(User, people["user"])
        assert user is not None
        d23, d24 = days_report(s, user, dt.date(2026, 11, 23), dt.date(2026, 11, 24), "us_dri")
    assert d23.totals["energy_kcal"] == pytest.approx(166.0)
    assert d24.totals["energy_kcal"] == pytest.approx(83.0)


def test_week_habits(factory: sessionmaker[Session], photo_sha: str,
                     people: dict[str, str]) -> None:
    lunch_pair(factory, photo_sha, people)
    with factory.begin() as s:  # Wednesday: 500 g kimchi = 2755 mg sodium, over the 2300 CDRR
        stored_analysis(s, photo_sha, people, dt.datetime(2026, 11, 25, 12, 0, tzinfo=KST), None,
                        [(KIMCHI, 500), (RICE, 210)])
    start, end = dt.date(2026, 11, 23), dt.date(2026, 11, 29)
    with factory() as s:
        user = s.get(User, people["user"])
        assert user is not None
        days = days_report(s, user, start, end, "kdri2020")
        refs, why = user_references(user, "kdri2020", start)
    assert why is None and len(days) == 7
    h = habits(days, start, end, refs)
    assert h.days_logged == 2
    # Monday 298.8 + 45 = 343.8 kcal; Wednesday 190 + 348.6 = 538.6 kcal; mean 441.2
    assert h.avg_energy_kcal == pytest.approx(441.2)
    assert h.avg_energy_pct_of_target == 23.2
    assert (h.sodium_over_limit_days, h.sodium_limit_mg) == (1, 2300)
    assert [f.food_id for f in h.top_foods][:1] == [RICE]  # on both days
    assert h.trays_paired == 1 and h.avg_leftover_pct == 35.7
    assert h.most_left_foods[0].food_id == SOUP and h.most_left_foods[0].leftover_g == 120


def test_references_need_sex_and_age(factory: sessionmaker[Session],
                                     people: dict[str, str]) -> None:
    with factory.begin() as s:
        anonymous = User(canteen_id=people["canteen"])
        # age 3: younger than any row of the reference tables
        child = User(canteen_id=people["canteen"], sex="male", birth_year=2023)
        s.add_all([anonymous, child])
        s.flush()
        assert user_references(anonymous, "kdri2020", LUNCH.date())[1] is not None
        refs, why = user_references(child, "kdri2020", LUNCH.date())
        assert refs is None and why is not None and why.startswith("no reference intakes")


def test_canteen_waste_by_dish(factory: sessionmaker[Session], photo_sha: str,
                               people: dict[str, str]) -> None:
    lunch_pair(factory, photo_sha, people)
    with factory.begin() as s:  # a second tray the next day: soup fully eaten, rice absent
        b = stored_analysis(s, photo_sha, people, LUNCH + dt.timedelta(days=1), "before",
                            [(SOUP, 250), (KIMCHI, 60)])
        link_analysis(s, b, pair_id=None, window=WINDOW)
        a = stored_analysis(s, photo_sha, people, LUNCH + dt.timedelta(days=1, minutes=20), "after",
                            [(KIMCHI, 15)])
        a.items[0].box = [300.0, 100.0, 550.0, 350.0]  # the kimchi stayed in its place
        link_analysis(s, a, pair_id=None, window=WINDOW)
    with factory() as s:
        report = canteen_waste(s, people["canteen"], dt.date(2026, 11, 23), dt.date(2026, 11, 24))
        only_first = canteen_waste(s, people["canteen"], dt.date(2026, 11, 23),
                                   dt.date(2026, 11, 23))
    by_food = {d.food_id: d for d in report.dishes}
    assert report.trays == 2 and only_first.trays == 1
    # soup: served 300 + 250, left 120 + 0 -> 21.8 %
    assert (by_food[SOUP].trays, by_food[SOUP].served_g, by_food[SOUP].leftover_g) == (2, 550, 120)
    assert by_food[SOUP].leftover_pct == 21.8
    # kimchi: served 50 + 60, left 50 + 15 -> 59.1 %
    assert (by_food[KIMCHI].leftover_g, by_food[KIMCHI].leftover_pct) == (65, 59.1)
    assert report.dishes[0].food_id == SOUP  # most grams wasted first
    assert (report.dishes[0].name_ko, report.dishes[0].name_en) == ("된장국_감자", None)
    assert (report.served_g, report.leftover_g) == (870, 215)


def test_canteen_waste_by_day_and_participation(
        factory: sessionmaker[Session], photo_sha: str, people: dict[str, str]) -> None:
    lunch_pair(factory, photo_sha, people)  # Monday: served 560, eaten 360, left 200
    with factory.begin() as s:
        others = [User(canteen_id=people["canteen"]) for _ in range(3)]  # 4 users in all
        s.add_all(others)
        s.flush()
        # Tuesday: two other users' before photos (one never closed), 00:30 Seoul time
        # (still Monday in UTC: the canteen's day decides)
        tue = dt.datetime(2026, 11, 24, 0, 30, tzinfo=KST)
        for n, other in enumerate(others[:2]):
            b = stored_analysis(s, photo_sha, {**people, "user": other.id},
                                tue + dt.timedelta(minutes=n), "before", [(RICE, 200)])
            link_analysis(s, b, pair_id=None, window=WINDOW)
        a = stored_analysis(s, photo_sha, {**people, "user": others[0].id},
                            tue + dt.timedelta(minutes=20), "after", [(RICE, 50)])
        link_analysis(s, a, pair_id=None, window=WINDOW)
        # a plain photo is no before photo: it does not count as a diner
        stored_analysis(s, photo_sha, {**people, "user": others[2].id}, tue, None, [(RICE, 90)])
    with factory() as s:
        report = daily_waste(s, people["canteen"], dt.date(2026, 11, 23), dt.date(2026, 11, 25))
        # the same trays as the waste report by dish: one computation
        by_dish = canteen_waste(s, people["canteen"], dt.date(2026, 11, 23),
                                dt.date(2026, 11, 25))
    assert by_dish.served_g == report.served_g and by_dish.trays == report.trays
    mon, tue_, wed = report.days
    assert report.users == 4
    assert (mon.trays, mon.served_g, mon.eaten_g, mon.leftover_g, mon.leftover_pct) == (
        1, 560, 360, 200, 35.7)
    assert (mon.diners, mon.participation_pct) == (1, 25.0)
    # Tuesday: one closed tray, 200 g served, 50 g left; two diners of four users
    assert (tue_.trays, tue_.served_g, tue_.eaten_g, tue_.leftover_g) == (1, 200, 150, 50)
    assert (tue_.leftover_pct, tue_.diners, tue_.participation_pct) == (25.0, 2, 50.0)
    assert (wed.trays, wed.served_g, wed.diners, wed.participation_pct) == (0, 0, 0, 0.0)
    assert wed.leftover_pct is None
    assert (report.trays, report.served_g, report.eaten_g, report.leftover_g) == (
        2, 760, 510, 250)
    assert report.mean_diners_per_day == 1.5  # over the days anyone came


def test_relabelled_pair_flags_survive_storage(factory: sessionmaker[Session], photo_sha: str,
                                               people: dict[str, str]) -> None:
    with factory.begin() as s:
        b = stored_analysis(s, photo_sha, people, LUNCH, "before", [(RICE, 200)])
        pair = link_analysis(s, b, pair_id=None, window=WINDOW)
        a = stored_analysis(s, photo_sha, people, LUNCH + dt.timedelta(minutes=30), "after",
                            [(KIMCHI, 40)])  # same place as the rice: a relabelled leftover
        link_analysis(s, a, pair_id=None, window=WINDOW)
        assert pair is not None
        res = pair_of(s, pair)
    assert res.items[0].flags == (PairFlag.RELABELLED,) and res.items[0].food_id == RICE
