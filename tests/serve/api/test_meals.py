"""Foods, manual meals and item corrections (add, remove, history) over HTTP, on SQLite and
PostgreSQL. Who may call each route is tests/serve/api/test_auth_matrix.py's job; here the
numbers, the history and the scoping of a meal to its person."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from nutrition_db import get_food, search
from serve.core.responses import rounded
from serve.services.analyses import retotal
from serve.services.nutrients import meal_totals
from serve.services.pairing import link_analysis
from tests.serve.api.test_menus import Api, make_api
from tests.serve.conftest import Service
from tests.serve.services.test_diary import (
    KIMCHI,
    LUNCH,
    RICE,
    SOUP,
    WINDOW,
    record_photo,
    stored_analysis,
)

APPLE = "sr28:09003"


@pytest.fixture
def api(service: Service) -> Api:
    """A fresh pair of tenants per test."""
    return make_api(service)


def _person(api: Api, who: str = "app_a") -> str:
    """A woman born 1996 in canteen A (Seoul time), created by `who`."""
    r = api.call(who, "POST", "/v1/users", json={"sex": "female", "birth_year": 1996})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _totals(items: list[tuple[str, float]]) -> dict[str, Any]:
    """The totals as the service answers them (numbers rounded by core.responses)."""
    return dict(rounded(meal_totals(items).to_dict()))


# --- foods ------------------------------------------------------------------------------


def test_food_search_ranks_as_the_cli_and_reads_one_food(api: Api) -> None:
    for q in ("apple", "김치", "rice cooked"):
        found = _ok(api.call("app_a", "GET", "/v1/foods", params={"q": q, "limit": 7}))
        assert [f["food_id"] for f in found] == [f.food_id for f in search(q, limit=7)], q
        assert found, q
    one = _ok(api.call("kiosk_a", "GET", f"/v1/foods/{APPLE}"))
    food = get_food(APPLE)
    assert (one["food_id"], one["name_en"], one["source"]) == (APPLE, food.name_en, "sr28")
    energy = next(n for n in one["nutrients"] if n["key"] == "energy_kcal")
    assert energy == {"key": "energy_kcal", "name_en": "Energy", "name_ko": "에너지",
                      "unit": "kcal", "per_100g": food.nutrients["energy_kcal"]}
    r = api.call("app_a", "GET", "/v1/foods/sr28:0900")
    assert r.status_code == 404 and "did you mean" in r.json()["detail"], r.text
    for params in ({"q": ""}, {"q": "   "}, {"q": "x" * 101}, {"q": "apple", "limit": 0},
                   {"q": "apple", "limit": 51}, {}):
        r = api.call("app_a", "GET", "/v1/foods", params=params)
        assert r.status_code == 422, (params, r.text)


# --- manual meals -----------------------------------------------------------------------


def test_a_manual_meal_is_logged_listed_and_counted_by_the_diary(
    api: Api, fixtures_dir: Path
) -> None:
    user = _person(api)
    kiosk = _ok(api.call("kiosk_a", "POST", "/v1/kiosks", json={"name": "line"}), 201)["id"]
    sha = record_photo(api.session_factory(), fixtures_dir)
    ids = {"canteen": api.canteen_a, "user": user, "kiosk": kiosk}
    with api.session_factory().begin() as s:  # a photo at lunch: rice and soup
        stored = stored_analysis(s, sha, ids, LUNCH, None, [(RICE, 210), (SOUP, 300)])
        retotal(stored)  # as the pipeline stores it
        photo = stored.id
    dinner = (LUNCH + dt.timedelta(hours=6)).isoformat()
    meal = _ok(api.call("app_a", "POST", f"/v1/users/{user}/meals", json={
        "eaten_at": dinner, "items": [{"food_id": RICE, "grams": 150},
                                      {"food_id": KIMCHI, "grams": 40}]}), 201)
    assert meal["source"] == "manual" and meal["image"] is None
    assert meal["model_version"] is None and meal["overlay_url"] is None
    assert meal["user_id"] == user and meal["canteen_id"] == api.canteen_a
    assert dt.datetime.fromisoformat(meal["captured_at"]) == LUNCH + dt.timedelta(hours=6)
    assert [(i["food_id"], i["grams"]["value"]) for i in meal["items"]] == [
        (RICE, 150), (KIMCHI, 40)]
    first = meal["items"][0]
    assert first["provenance"] == {"item": "user_correction", "food": "user_correction",
                                   "grams": "user_correction", "nutrients": "database_value"}
    assert first["original"] is None and first["identified_by"] == "user"
    assert meal["totals"] == _totals([(RICE, 150), (KIMCHI, 40)])
    # one path: the diary counts the manual meal beside the photo
    day = _ok(api.call("app_a", "GET", f"/v1/users/{user}/days/{LUNCH.date()}"))
    assert sorted(m["kind"] for m in day["meals"]) == ["manual", "photo"]
    both = meal_totals([(RICE, 210), (SOUP, 300), (RICE, 150), (KIMCHI, 40)]).nutrients
    assert day["totals"]["energy_kcal"] == pytest.approx(both["energy_kcal"], abs=0.2)
    # listed newest first, paged by cursor, with a local date range
    page = _ok(api.call("kiosk_a", "GET", f"/v1/users/{user}/meals"))
    assert [(m["id"], m["source"]) for m in page["meals"]] == [
        (meal["id"], "manual"), (photo, "photo")]
    assert page["next_cursor"] is None
    one = _ok(api.call("app_a", "GET", f"/v1/users/{user}/meals", params={"limit": 1}))
    assert [m["id"] for m in one["meals"]] == [meal["id"]] and one["next_cursor"]
    two = _ok(api.call("app_a", "GET", f"/v1/users/{user}/meals",
                       params={"limit": 1, "cursor": one["next_cursor"]}))
    assert [m["id"] for m in two["meals"]] == [photo] and two["next_cursor"] is None
    day_after = str(LUNCH.date() + dt.timedelta(days=1))
    assert _ok(api.call("app_a", "GET", f"/v1/users/{user}/meals",
                        params={"start": day_after}))["meals"] == []
    assert len(_ok(api.call("app_a", "GET", f"/v1/users/{user}/meals", params={
        "start": str(LUNCH.date()), "end": str(LUNCH.date())}))["meals"]) == 2
    for params in ({"limit": 101}, {"cursor": "nonsense!"},
                   {"start": day_after, "end": str(LUNCH.date())}):
        r = api.call("app_a", "GET", f"/v1/users/{user}/meals", params=params)
        assert r.status_code == 422, (params, r.text)
    # another tenant's key does not find the person
    assert api.call("kiosk_b", "GET", f"/v1/users/{user}/meals").status_code == 404
    assert api.call("kiosk_b", "POST", f"/v1/users/{user}/meals", json={
        "eaten_at": dinner, "items": [{"food_id": RICE, "grams": 1}]}).status_code == 404


def test_a_manual_meal_is_exported_in_every_format(api: Api) -> None:
    user = _person(api)
    meal = _ok(api.call("app_a", "POST", f"/v1/users/{user}/meals", json={
        "eaten_at": LUNCH.isoformat(), "items": [{"food_id": RICE, "grams": 150}]}), 201)
    data = _ok(api.call("app_a", "GET", f"/v1/users/{user}/export"))
    [exported] = data["meals"]
    assert (exported["analysis_id"], exported["kind"]) == (meal["id"], "manual")
    assert [(f["food_id"], f["grams"]) for f in exported["eaten"]] == [(RICE, 150)]
    fhir = _ok(api.call("app_a", "GET", f"/v1/users/{user}/export", params={"format": "fhir"}))
    intakes = [e["resource"] for e in fhir["entry"]
               if e["resource"]["resourceType"] == "NutritionIntake"]
    assert len(intakes) == 1 and "logged by hand" in json.dumps(intakes[0])
    csv = api.call("app_a", "GET", f"/v1/users/{user}/export", params={"format": "csv"})
    assert csv.status_code == 200 and meal["id"] in csv.text


def test_a_manual_meal_is_validated(api: Api) -> None:
    user = _person(api)
    url = f"/v1/users/{user}/meals"
    naive = _ok(api.call("app_a", "POST", url, json={
        "eaten_at": "2026-11-23T03:05:00", "items": [{"food_id": APPLE, "grams": 120}]}), 201)
    assert naive["captured_at"] == "2026-11-23T03:05:00Z"  # a naive time is UTC
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    bad = [
        ({"eaten_at": "2026-11-23T12:00:00+09:00", "items": []}, "at least 1"),
        ({"eaten_at": "2026-11-23T12:00:00+09:00", "items": [{"food_id": APPLE, "grams": 0}]},
         "greater than 0"),
        ({"eaten_at": "2026-11-23T12:00:00+09:00",
          "items": [{"food_id": APPLE, "grams": 5000.5}]}, "less than or equal"),
        ({"eaten_at": "2026-11-23T12:00:00+09:00",
          "items": [{"food_id": "sr28:0900", "grams": 10}]}, "did you mean"),
        ({"eaten_at": soon.isoformat(), "items": [{"food_id": APPLE, "grams": 10}]},
         "in the future"),
        ({"eaten_at": "1999-12-31T12:00:00Z", "items": [{"food_id": APPLE, "grams": 10}]},
         "before 2000"),
        ({"eaten_at": "yesterday", "items": [{"food_id": APPLE, "grams": 10}]}, "eaten_at"),
        ({"eaten_at": "2026-11-23T12:00:00Z", "items": [{"food_id": APPLE, "grams": 10}],
          "photo": "x"}, "photo"),
    ]
    for body, words in bad:
        r = api.call("app_a", "POST", url, json=body)
        assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)
    meals = _ok(api.call("app_a", "GET", url))["meals"]
    assert [m["id"] for m in meals] == [naive["id"]]  # nothing else was stored


# --- corrections: patch, add, remove, history ---------------------------------------------


def test_corrections_add_and_remove_items_and_keep_the_history(
    api: Api, fixtures_dir: Path
) -> None:
    user = _person(api, "kiosk_a")
    kiosk = _ok(api.call("kiosk_a", "POST", "/v1/kiosks", json={"name": "line"}), 201)["id"]
    sha = record_photo(api.session_factory(), fixtures_dir)
    ids = {"canteen": api.canteen_a, "user": user, "kiosk": kiosk}
    with api.session_factory().begin() as s:
        before = stored_analysis(s, sha, ids, LUNCH, "before",
                                 [(RICE, 210), (SOUP, 300), (KIMCHI, 50)])
        retotal(before)  # as the pipeline stores it
        pair = link_analysis(s, before, pair_id=None, window=WINDOW)
        after = stored_analysis(s, sha, ids, LUNCH + dt.timedelta(minutes=25), "after",
                                [(RICE, 30), (SOUP, 120), (KIMCHI, 50)])
        link_analysis(s, after, pair_id=None, window=WINDOW)
        assert pair is not None
        before_id, pair_id = before.id, pair.id
    items = _ok(api.call("kiosk_a", "GET", f"/v1/analyses/{before_id}"))["items"]
    rice, soup, kimchi = (i["id"] for i in items)
    key_id = _ok(api.call("kiosk_a", "GET", "/v1/keys/me"))["id"]
    app_key = _ok(api.call("app_a", "GET", "/v1/keys/me"))["id"]
    base = f"/v1/analyses/{before_id}"

    _ok(api.call("kiosk_a", "PATCH", f"{base}/items/{rice}", json={"grams": 250}))
    added = _ok(api.call("kiosk_a", "POST", f"{base}/items", json={
        "food_id": APPLE, "grams": 120, "box": [10, 20, 110, 220]}), 201)
    apple = added["items"][-1]
    assert (apple["food_id"], apple["grams"]["value"], apple["box"]) == (
        APPLE, 120, [10, 20, 110, 220])
    assert apple["original"] is None and apple["identified_by"] == "user"
    assert apple["position"] == 3 and apple["provenance"]["food"] == "user_correction"
    assert added["totals"] == _totals([(RICE, 250), (SOUP, 300), (KIMCHI, 50), (APPLE, 120)])
    # the model invented the kimchi: an app key of the canteen's... is not the user's owner
    assert api.call("app_a", "DELETE", f"{base}/items/{kimchi}").status_code == 404
    removed = _ok(api.call("kiosk_a", "DELETE", f"{base}/items/{kimchi}"))
    assert [i["id"] for i in removed["items"]] == [rice, soup, apple["id"]]
    assert removed["totals"] == _totals([(RICE, 250), (SOUP, 300), (APPLE, 120)])
    got = _ok(api.call("kiosk_a", "GET", base))
    assert got["items"] == removed["items"] and got["totals"] == removed["totals"]
    assert got["items"][0]["original"]["grams"] == 210  # the model's estimate is kept
    # gone is gone: no second removal, no correction of it
    assert api.call("kiosk_a", "DELETE", f"{base}/items/{kimchi}").status_code == 404
    assert api.call("kiosk_a", "PATCH", f"{base}/items/{kimchi}",
                    json={"grams": 1}).status_code == 404
    # pairs read the current items: the removed kimchi is neither served nor eaten
    paired = _ok(api.call("kiosk_a", "GET", f"/v1/pairs/{pair_id}"))["result"]
    assert kimchi not in {i["before_ref"] for i in paired["items"]}
    assert KIMCHI not in {i["food_id"] for i in paired["items"] if i["before_ref"]}
    assert paired["served_g"] == pytest.approx(250 + 300 + 120)

    history = _ok(api.call("kiosk_a", "GET", f"{base}/corrections"))
    assert [(h["action"], h["item_id"]) for h in history] == [
        ("patch", rice), ("add", apple["id"]), ("remove", kimchi)]
    assert all(h["api_key_id"] == key_id for h in history) and key_id != app_key
    patch, add, remove = history
    assert (patch["before"]["grams"], patch["after"]["grams"]) == (210, 250)
    assert patch["before"]["provenance"] == "model_estimate"
    assert add["before"] is None and add["after"]["food_id"] == APPLE
    assert remove["before"]["food_id"] == KIMCHI and remove["before"]["grams"] == 50
    assert remove["after"] is None
    times = [dt.datetime.fromisoformat(h["at"]) for h in history]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)

    for body, code in (({"food_id": APPLE, "grams": 10, "box": [0, 0, 5000, 10]}, "invalid_box"),
                       ({"food_id": APPLE, "grams": 10, "box": [50, 0, 10, 10]}, "invalid_box"),
                       ({"food_id": "sr28:0900", "grams": 10}, "unknown_food"),
                       ({"food_id": APPLE, "grams": 0}, "invalid_input"),
                       ({"food_id": APPLE, "grams": 10, "box": [1, 2, 3]}, "invalid_input")):
        r = api.call("kiosk_a", "POST", f"{base}/items", json=body)
        assert r.status_code == 422 and r.json()["error"] == code, (body, r.text)
    assert len(_ok(api.call("kiosk_a", "GET", f"{base}/corrections"))) == 3
    assert api.call("kiosk_b", "GET", f"{base}/corrections").status_code == 404


def test_a_manual_meal_is_corrected_like_a_photo(api: Api) -> None:
    user = _person(api)
    meal = _ok(api.call("app_a", "POST", f"/v1/users/{user}/meals", json={
        "eaten_at": LUNCH.isoformat(), "items": [{"food_id": RICE, "grams": 200}]}), 201)
    base = f"/v1/analyses/{meal['id']}"
    r = api.call("app_a", "POST", f"{base}/items", json={"food_id": SOUP, "grams": 250,
                                                       "box": [0, 0, 10, 10]})
    assert r.status_code == 422 and r.json()["error"] == "no_photo", r.text
    added = _ok(api.call("app_a", "POST", f"{base}/items",
                         json={"food_id": SOUP, "grams": 250}), 201)
    rice = added["items"][0]["id"]
    fixed = _ok(api.call("app_a", "PATCH", f"{base}/items/{rice}", json={"grams": 180}))
    assert fixed["totals"] == _totals([(RICE, 180), (SOUP, 250)])
    assert api.call("app_a", "GET", f"{base}/overlay.png").status_code == 404
    assert [h["action"] for h in _ok(api.call("app_a", "GET", f"{base}/corrections"))] == [
        "add", "patch"]
