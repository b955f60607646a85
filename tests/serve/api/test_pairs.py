"""Pairs, diary and waste over HTTP on SQLite and PostgreSQL: hand-checked numbers from
real MFDS values, the analyze -> pair wiring, and every role's scoping."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from serve.db.tables.analyses import Analysis
from serve.db.tables.core import User
from tests.serve.api.test_menus import Api, make_api
from tests.serve.conftest import Service
from tests.serve.services.test_diary import (
    KIMCHI,
    LUNCH,
    RICE,
    SOUP,
    record_photo,
    stored_analysis,
)


@pytest.fixture
def api(service: Service) -> Api:
    """A fresh pair of tenants per test."""
    return make_api(service)


def _setup(api: Api, fixtures_dir: Any, owner: str = "kiosk_a") -> dict[str, str]:
    """A kiosk and a woman born 1996 in canteen A (created by `owner`), a stored photo."""
    kiosk = api.call("kiosk_a", "POST", "/v1/kiosks", json={"name": "line 1"}).json()["id"]
    r = api.call(owner, "POST", "/v1/users", json={"sex": "female", "birth_year": 1996})
    assert r.status_code == 201, r.text
    return {"canteen": api.canteen_a, "kiosk": kiosk, "user": r.json()["id"],
            "sha": record_photo(api.session_factory(), fixtures_dir)}


def _tray(api: Api, ids: dict[str, str], at: dt.datetime, state: str | None,
          items: list[tuple[str, float]]) -> str:
    """A stored analysis (as the pipeline would leave it) and its id."""
    with api.session_factory().begin() as s:
        return stored_analysis(s, ids["sha"], ids, at, state, items).id


def _lunch(api: Api, ids: dict[str, str]) -> tuple[str, str]:
    """Before 210/300/50 g, after 30/120/50 g of rice/soup/kimchi."""
    before = _tray(api, ids, LUNCH, "before", [(RICE, 210), (SOUP, 300), (KIMCHI, 50)])
    after = _tray(api, ids, LUNCH + dt.timedelta(minutes=25), "after",
                  [(RICE, 30), (SOUP, 120), (KIMCHI, 50)])
    return before, after


def test_pair_routes_hand_checked(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir)
    before, after = _lunch(api, ids)
    r = api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": before})
    assert r.status_code == 201 and r.json()["result"] is None, r.text
    pair = r.json()["id"]
    open_ids = [p["id"] for p in api.call("kiosk_a", "GET", "/v1/pairs",
                                          params={"open_only": True}).json()]
    assert open_ids == [pair]
    r = api.call("kiosk_a", "PUT", f"/v1/pairs/{pair}/after", json={"after_analysis_id": after})
    assert r.status_code == 200, r.text
    res = r.json()["result"]
    assert [(i["food_id"], i["eaten_g"], i["leftover_g"]) for i in res["items"]] == [
        (RICE, 180, 30), (SOUP, 180, 120), (KIMCHI, 0, 50)]
    assert (res["served_g"], res["eaten_g"], res["leftover_pct"]) == (560, 360, 35.7)
    # rice 180 g x 1.66 + soup 180 g x 0.25 = 343.8 kcal; sodium: soup 180 g x 3.57 = 642.6 mg
    assert res["eaten_nutrients"]["energy_kcal"] == pytest.approx(343.8)
    assert res["eaten_nutrients"]["sodium_mg"] == pytest.approx(642.6)
    assert api.call("kiosk_a", "GET", f"/v1/pairs/{pair}").json()["result"] == res
    assert api.call("kiosk_a", "GET", "/v1/pairs", params={"open_only": True}).json() == []
    late = _tray(api, ids, LUNCH + dt.timedelta(minutes=40), "after", [(RICE, 5)])
    r = api.call("kiosk_a", "PUT", f"/v1/pairs/{pair}/after", json={"after_analysis_id": late})
    assert r.status_code == 409 and r.json()["error"] == "pair_closed"
    r = api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": after})
    assert r.status_code == 422 and r.json()["error"] == "not_before"


def test_a_pair_measured_on_two_mask_methods_compares_no_areas(api: Api,
                                                                fixtures_dir: Any) -> None:
    """The after photo's areas on refined masks, the before's on the model's (null: stored
    before the column): paired, every dish not_measurable + masks_differ and counted eaten;
    once both are refined, the hand-checked leftovers come back."""
    ids = _setup(api, fixtures_dir)
    before, after = _lunch(api, ids)
    with api.session_factory().begin() as s:
        s.get_one(Analysis, after).masks = "refined"
    r = api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": before,
                                                      "after_analysis_id": after})
    assert r.status_code == 201, r.text
    pair, res = r.json()["id"], r.json()["result"]
    assert [(i["food_id"], i["after_ref"] is not None, i["eaten_g"], i["leftover_fraction"],
             i["measure"], i["flags"]) for i in res["items"]] == [
        (food, True, grams, None, None, ["not_measurable", "masks_differ"])
        for food, grams in ((RICE, 210), (SOUP, 300), (KIMCHI, 50))]
    assert (res["served_g"], res["eaten_g"], res["leftover_g"]) == (560, 560, 0)
    with api.session_factory().begin() as s:
        s.get_one(Analysis, before).masks = "refined"
    res = api.call("kiosk_a", "GET", f"/v1/pairs/{pair}").json()["result"]
    assert [(i["food_id"], i["eaten_g"], i["leftover_g"], i["flags"]) for i in res["items"]] == [
        (RICE, 180, 30, []), (SOUP, 180, 120, []), (KIMCHI, 0, 50, [])]


def test_an_emptied_container_is_eaten(api: Api, fixtures_dir: Any) -> None:
    """The rice bowl held food on the before photo and shows empty on the after one (the
    stored `container` of each item, as the pipeline records it): all 210 g eaten and flagged
    container_emptied, although its after area says 30 g are left; the soup, whose after box
    still shows food, keeps its area ratio."""
    ids = _setup(api, fixtures_dir)
    before, after = _lunch(api, ids)
    with api.session_factory().begin() as s:
        for item in s.get_one(Analysis, before).items:
            item.container = "food"
        for item in s.get_one(Analysis, after).items:
            item.container = "empty" if item.food_id == RICE else "food"
    r = api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": before,
                                                      "after_analysis_id": after})
    assert r.status_code == 201, r.text
    res = r.json()["result"]
    assert [(i["food_id"], i["eaten_g"], i["leftover_g"], i["leftover_fraction"], i["flags"])
            for i in res["items"]] == [(RICE, 210, 0, 0.0, ["container_emptied"]),
                                       (SOUP, 180, 120, 0.4, []), (KIMCHI, 0, 50, 1.0, [])]


def test_pair_scoping(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir)
    before, after = _lunch(api, ids)
    pair = api.call("kiosk_a", "POST", "/v1/pairs", json={
        "before_analysis_id": before, "after_analysis_id": after}).json()["id"]
    assert api.call("admin", "GET", f"/v1/pairs/{pair}").status_code == 200
    for who in ("kiosk_b", "app_a"):  # other canteen; an app that does not own the user
        assert api.call(who, "GET", f"/v1/pairs/{pair}").status_code == 404
        assert pair not in [p["id"] for p in api.call(who, "GET", "/v1/pairs").json()]
    r = api.call("kiosk_b", "POST", "/v1/pairs", json={"before_analysis_id": before})
    assert r.status_code == 404
    r = api.call("kiosk_a", "GET", "/v1/pairs/nope")
    assert r.status_code == 404 and r.json()["detail"] == "no meal pair with id 'nope'"
    assert api.call("kiosk_a", "GET", "/v1/pairs", params={"limit": 0}).status_code == 422


def test_analyze_opens_and_closes_a_pair(api: Api, fixtures_dir: Any,
                                         photo_bytes: dict[str, bytes]) -> None:
    ids = _setup(api, fixtures_dir)
    form = {"kiosk_id": ids["kiosk"], "user_id": ids["user"]}
    files = {"image": ("tray.jpg", photo_bytes["tray"], "image/jpeg")}
    r = api.call("kiosk_a", "POST", "/v1/analyze", files=files, data={
        **form, "meal_state": "before", "captured_at": "2026-11-23T03:05:00Z"})
    assert r.status_code == 201, r.text
    pair = r.json()["pair_id"]
    assert pair is not None
    files = {"image": ("tray.jpg", photo_bytes["tray2"], "image/jpeg")}
    r = api.call("kiosk_a", "POST", "/v1/analyze", files=files, data={
        **form, "meal_state": "after", "captured_at": "2026-11-23T03:30:00Z"})
    assert r.status_code == 201 and r.json()["pair_id"] == pair, r.text
    got = api.call("kiosk_a", "GET", f"/v1/pairs/{pair}").json()
    assert got["after_analysis_id"] == r.json()["id"] and got["result"] is not None
    assert got["result"]["served_g"] >= got["result"]["eaten_g"] >= 0


def test_diary_day_week_habits(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir, owner="app_a")
    before, after = _lunch(api, ids)
    api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": before,
                                                   "after_analysis_id": after})
    # Wednesday: 500 g kimchi (2755 mg sodium, over the 2300 mg CDRR) and 210 g rice
    _tray(api, ids, dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC), None,
          [(KIMCHI, 500), (RICE, 210)])
    user = ids["user"]
    day = api.call("app_a", "GET", f"/v1/users/{user}/days/2026-11-23").json()
    assert day["totals"]["energy_kcal"] == pytest.approx(343.8)
    energy = next(r for r in day["references"] if r["nutrient"] == "energy_kcal")
    assert (energy["target"], energy["target_kind"], energy["pct_of_target"]) == (
        1900, "EER", 18.1)  # KDRI 2020, women 30-49
    us = api.call("app_a", "GET", f"/v1/users/{user}/days/2026-11-23",
                  params={"system": "us_dri"}).json()
    assert {r["nutrient"] for r in us["references"]} >= {"sodium_mg", "protein_g"}
    week = api.call("app_a", "GET", f"/v1/users/{user}/weeks/2026-W48").json()
    assert [d["date"] for d in week["days"]][::6] == ["2026-11-23", "2026-11-29"]
    h = week["habits"]
    assert (h["days_logged"], h["sodium_over_limit_days"], h["trays_paired"]) == (2, 1, 1)
    assert h["avg_energy_kcal"] == pytest.approx(441.2)  # (343.8 + 538.6) / 2
    r = api.call("app_a", "GET", f"/v1/users/{user}/habits",
                 params={"start": "2026-11-24", "end": "2026-11-30"})
    assert r.status_code == 200 and r.json()["days_logged"] == 1
    # names beside food ids, evidence per habit, daily means (docs/API.md)
    assert week["days"][0]["meals"][0]["foods"][0]["name_ko"] == "쌀밥"
    assert h["most_left_foods"][0]["name_ko"] == "된장국_감자"
    assert h["evidence"]["sodium"]["flagged_dates"] == ["2026-11-25"]
    assert h["evidence"]["leftovers"]["meal_ids"] == [before]
    means = {m["nutrient"]: m for m in week["daily_means"]}
    assert means["energy_kcal"]["amount"] == pytest.approx(441.2)


def test_trends_route(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir, owner="app_a")
    # 2026-W46: 300 g rice (498 kcal); 2026-W48: 200 g rice (332 kcal)
    _tray(api, ids, dt.datetime(2026, 11, 10, 3, 0, tzinfo=dt.UTC), None, [(RICE, 300)])
    _tray(api, ids, dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.UTC), None, [(RICE, 200)])
    url = f"/v1/users/{ids['user']}/trends"
    t = api.call("app_a", "GET", url, params={"weeks": 4, "end": "2026-11-26"}).json()
    assert (t["span_weeks"], t["start"], t["end"]) == (4, "2026-11-02", "2026-11-29")
    assert [w["energy_kcal_per_day"] for w in t["weeks"]] == [None, 498.0, None, 332.0]
    energy = t["series"][0]
    assert energy["series"] == "energy_kcal_per_day" and energy["direction"] == "down"
    assert energy["slope_per_week"] == pytest.approx(-83.0)  # (332 - 498) / 2 weeks
    assert {r["series"] for r in t["references"]} >= {"energy_kcal_per_day",
                                                      "sodium_mg_per_day"}
    long = api.call("app_a", "GET", url, params={"weeks": 12, "end": "2026-11-26"}).json()
    assert len(long["weeks"]) == 12 and long["weeks"][-1]["week"] == "2026-W48"
    bad = api.call("app_a", "GET", url, params={"weeks": 6})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_weeks"
    assert api.call("kiosk_b", "GET", url).status_code == 404


@pytest.mark.parametrize("path, params", [
    ("weeks/2026-W60", {}), ("weeks/26-48", {}), ("days/2026-02-30", {}),
    ("days/2026-11-23", {"system": "who"}),
    ("habits", {"start": "2026-11-30", "end": "2026-11-01"}),
    ("habits", {"start": "2024-01-01", "end": "2026-01-01"}),
])
def test_diary_bad_input(api: Api, fixtures_dir: Any, path: str,
                         params: dict[str, str]) -> None:
    ids = _setup(api, fixtures_dir)
    r = api.call("kiosk_a", "GET", f"/v1/users/{ids['user']}/{path}", params=params)
    assert r.status_code == 422 and r.json()["detail"], r.text


def test_diary_scoping(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir)  # created by the kiosk key: not the app's user
    for who in ("kiosk_b", "app_a"):
        r = api.call(who, "GET", f"/v1/users/{ids['user']}/days/2026-11-23")
        assert r.status_code == 404
    assert api.call("admin", "GET", f"/v1/users/{ids['user']}/weeks/2026-W48").status_code == 200
    assert api.call("kiosk_a", "GET", "/v1/users/nope/habits").status_code == 404


def test_day_without_sex_or_age_says_why(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir)
    with api.session_factory().begin() as s:
        user = s.get(User, ids["user"])
        assert user is not None
        user.birth_year = None
    day = api.call("kiosk_a", "GET", f"/v1/users/{ids['user']}/days/2026-11-23").json()
    assert day["references"] == [] and any("birth_year" in n for n in day["notes"])


def test_waste_route(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir)
    before, after = _lunch(api, ids)
    api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": before,
                                                   "after_analysis_id": after})
    url = f"/v1/canteens/{api.canteen_a}/waste"
    r = api.call("kiosk_a", "GET", url, params={"start": "2026-11-23", "end": "2026-11-23"})
    assert r.status_code == 200, r.text
    w = r.json()
    assert (w["trays"], w["served_g"], w["leftover_g"], w["leftover_pct"]) == (1, 560, 200, 35.7)
    assert [(d["food_id"], d["leftover_g"], d["leftover_pct"]) for d in w["dishes"]] == [
        (SOUP, 120, 40.0), (KIMCHI, 50, 100.0), (RICE, 30, 14.3)]
    empty = api.call("kiosk_a", "GET", url, params={"start": "2026-11-24", "end": "2026-11-30"})
    assert empty.json()["trays"] == 0 and empty.json()["dishes"] == []
    assert api.call("app_a", "GET", url, params={"start": "2026-11-23",
                                                 "end": "2026-11-23"}).status_code == 403
    assert api.call("kiosk_b", "GET", url, params={"start": "2026-11-23",
                                                   "end": "2026-11-23"}).status_code == 404
    assert api.call("kiosk_a", "GET", url, params={"start": "2026-11-24",
                                                   "end": "2026-11-23"}).status_code == 422
    assert api.call("kiosk_a", "GET", url).status_code == 422

    daily = f"{url}/daily"
    r = api.call("kiosk_a", "GET", daily, params={"start": "2026-11-23", "end": "2026-11-24"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["trays"], d["served_g"], d["eaten_g"], d["leftover_g"]) == (1, 560, 360, 200)
    assert [(x["date"], x["trays"], x["diners"]) for x in d["days"]] == [
        ("2026-11-23", 1, 1), ("2026-11-24", 0, 0)]
    assert d["days"][0]["participation_pct"] == percent_of_users(d)
    assert api.call("app_a", "GET", daily, params={"start": "2026-11-23",
                                                   "end": "2026-11-23"}).status_code == 403
    assert api.call("kiosk_b", "GET", daily, params={"start": "2026-11-23",
                                                     "end": "2026-11-23"}).status_code == 404


def percent_of_users(report: dict[str, Any]) -> float:
    """One diner out of the canteen's users, as a percentage to 0.1."""
    return round(100.0 / report["users"], 1)

