"""A photo with no food says so (`no_food_found` and `message`), on SQLite and PostgreSQL:
single and batch answers, stored analyses read back (GET, lists, meals, the diary), layout
mode, before/after pairs. The photos are real and hold no food (tests/no_food.py); each test
checks the shipped model finds none on them rather than trusting it."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.data import traybed as tb
from serve.services.analyses import NO_FOOD_AFTER, NO_FOOD_BEFORE
from tests.no_food import coin_only_jpeg, empty_tray_jpeg, empty_tray_kiosk, jpeg
from tests.serve.api.test_menus import Api, make_api
from tests.serve.conftest import Service

APPLE = "sr28:09003"
DAY = "2026-11-23"
BEFORE_AT, AFTER_AT = f"{DAY}T03:05:00Z", f"{DAY}T03:30:00Z"


@pytest.fixture(scope="module")
def kiosk_bed() -> tb.Kiosk:
    return empty_tray_kiosk()


@pytest.fixture(scope="module")
def photos(kiosk_bed: tb.Kiosk, fixtures_dir: Path, photo_bytes: dict[str, bytes]
           ) -> dict[str, bytes]:
    """No food: the empty tray from the kiosk's pose and turned, a coin alone; food: a real
    canteen tray, and the same composed tray served (layout mode)."""
    turned = tb.pose_homography(kiosk_bed.size, (25.0, -15.0), 14.0, (0.03, -0.02))
    crops = tb.load_crops(fixtures_dir, per_label=1, sets=("labelme", "maskpng", "mealtray"))
    return {"empty": empty_tray_jpeg(kiosk_bed),
            "empty_turned": jpeg(tb.shoot(kiosk_bed, [], turned, np.random.default_rng(0)).image),
            "coin": coin_only_jpeg(fixtures_dir), "tray": photo_bytes["tray"],
            "served": jpeg(tb.make_pair(kiosk_bed, crops, 1).before.image)}


@pytest.fixture
def api(service: Service) -> Api:
    return make_api(service)


def _ids(api: Api, kiosk_bed: tb.Kiosk | None = None) -> dict[str, str]:
    """A kiosk (with the empty tray's layout when kiosk_bed is given) and a user."""
    kiosk = api.call("kiosk_a", "POST", "/v1/kiosks", json={"name": "line"}).json()["id"]
    if kiosk_bed is not None:
        comps = [{"slot": s, "polygon": p.tolist()} for s, p in kiosk_bed.compartments.items()]
        r = api.call("kiosk_a", "PUT", f"/v1/kiosks/{kiosk}/layout",
                     data={"compartments": json.dumps(comps)},
                     files={"reference": ("r.jpg", jpeg(kiosk_bed.reference), "image/jpeg")})
        assert r.status_code == 200, r.text
    user = api.call("kiosk_a", "POST", "/v1/users", json={"sex": "female", "birth_year": 1996})
    assert user.status_code == 201, user.text
    return {"kiosk": kiosk, "user": user.json()["id"]}


def _analyze(api: Api, photo: bytes, **data: str) -> Any:
    r = api.call("kiosk_a", "POST", "/v1/analyze", data=data,
                 files={"image": ("p.jpg", photo, "image/jpeg")})
    assert r.status_code == 201, r.text
    return r.json()


def _assert_no_food(body: Any) -> None:
    assert body["items"] == [], "the shipped model found something on a photo with no food"
    assert body["no_food_found"] is True
    assert body["message"].startswith("No food found on this photo")
    assert "not because the meal has no nutrients" in body["message"]
    assert body["totals"]["grams"] == 0 and body["totals"]["items_counted"] == 0


def _assert_food(body: Any) -> None:
    assert body["items"], "the shipped model found no food on a photo of a meal"
    assert body["no_food_found"] is False and body["message"] is None


def test_single_answer_and_every_read_say_no_food(api: Api, photos: dict[str, bytes]) -> None:
    ids = _ids(api)
    empty = _analyze(api, photos["empty"], user_id=ids["user"], captured_at=BEFORE_AT)
    _assert_no_food(empty)
    assert NO_FOOD_BEFORE not in empty["message"] and NO_FOOD_AFTER not in empty["message"]
    food = _analyze(api, photos["tray"], user_id=ids["user"], captured_at=AFTER_AT)
    _assert_food(food)
    # A coin alone: the scale is found, the coin is not food.
    coin = _analyze(api, photos["coin"])
    _assert_no_food(coin)
    assert coin["scale"]["source"] == "reference_object"
    # Read back: GET, the list, the person's meals, their day in the diary.
    got = api.call("kiosk_a", "GET", f"/v1/analyses/{empty['id']}").json()
    assert got == empty
    listed = {a["id"]: a for a in api.call("kiosk_a", "GET", "/v1/analyses",
                                           params={"user_id": ids["user"]}).json()}
    assert (listed[empty["id"]]["no_food_found"], listed[food["id"]]["no_food_found"]) == (
        True, False)
    assert listed[empty["id"]]["message"] == empty["message"]
    meals = {m["id"]: m for m in api.call(
        "kiosk_a", "GET", f"/v1/users/{ids['user']}/meals").json()["meals"]}
    assert meals[empty["id"]]["no_food_found"] and not meals[food["id"]]["no_food_found"]
    day = api.call("kiosk_a", "GET", f"/v1/users/{ids['user']}/days/{DAY}").json()
    logged = {m["analysis_id"]: m for m in day["meals"]}
    assert logged[empty["id"]]["no_food_found"] and not logged[food["id"]]["no_food_found"]
    assert f"no food found on photo {empty['id']}: nothing counted from it" in day["notes"]


def test_batch_answers_each_photo_flag(api: Api, photos: dict[str, bytes]) -> None:
    files = [("images", (f"{n}.jpg", photos[n], "image/jpeg"))
             for n in ("empty", "tray", "coin")]
    r = api.call("kiosk_a", "POST", "/v1/analyze/batch", files=files)
    assert r.status_code == 200, r.text
    empty, food, coin = (e["analysis"] for e in r.json()["results"])
    _assert_no_food(empty)
    _assert_food(food)
    _assert_no_food(coin)


def test_corrections_change_the_flag(api: Api, photos: dict[str, bytes]) -> None:
    """Derived from the current items: adding a food clears it, removing every item sets it."""
    empty = _analyze(api, photos["empty"])
    added = api.call("kiosk_a", "POST", f"/v1/analyses/{empty['id']}/items",
                     json={"food_id": APPLE, "grams": 150})
    assert added.status_code == 201, added.text
    _assert_food(added.json())
    food = _analyze(api, photos["tray"])
    for item in food["items"]:
        r = api.call("kiosk_a", "DELETE", f"/v1/analyses/{food['id']}/items/{item['id']}")
        assert r.status_code == 200, r.text
    _assert_no_food(r.json())
    assert api.call("kiosk_a", "GET", f"/v1/analyses/{food['id']}").json()["no_food_found"]


def test_layout_mode_registered_tray_with_every_compartment_empty(
        api: Api, kiosk_bed: tb.Kiosk, photos: dict[str, bytes]) -> None:
    ids = _ids(api, kiosk_bed)
    for name in ("empty", "empty_turned"):
        body = _analyze(api, photos[name], kiosk_id=ids["kiosk"])
        assert body["layout"] == "registered", name
        _assert_no_food(body)
        assert "every compartment of the kiosk's tray is empty" in body["message"]
    served = _analyze(api, photos["served"], kiosk_id=ids["kiosk"])
    assert served["layout"] == "registered" and any(i["tray_slot"] for i in served["items"])
    _assert_food(served)


@pytest.mark.parametrize("layout", [False, True], ids=["regions", "slots"])
def test_an_after_photo_with_no_food_is_everything_eaten(
        api: Api, kiosk_bed: tb.Kiosk, photos: dict[str, bytes], layout: bool) -> None:
    ids = _ids(api, kiosk_bed if layout else None)
    who = {"kiosk_id": ids["kiosk"], "user_id": ids["user"]}
    before = _analyze(api, photos["served" if layout else "tray"], meal_state="before",
                      captured_at=BEFORE_AT, **who)
    _assert_food(before)
    after = _analyze(api, photos["empty_turned" if layout else "empty"], meal_state="after",
                     captured_at=AFTER_AT, **who)
    _assert_no_food(after)
    assert after["pair_id"] == before["pair_id"] is not None
    assert after["message"].endswith(NO_FOOD_AFTER)
    result = api.call("kiosk_a", "GET", f"/v1/pairs/{before['pair_id']}").json()["result"]
    assert len(result["items"]) == len(before["items"])
    for item in result["items"]:
        assert item["flags"] == ["fully_eaten"] and item["leftover_g"] == 0.0, item
        assert item["method"] == ("slot" if layout else "none")
    assert result["leftover_g"] == 0.0 and result["eaten_g"] == result["served_g"]
    assert result["served_g"] == pytest.approx(
        sum(i["grams"]["value"] for i in before["items"] if i["grams"]), abs=0.2)


def test_a_before_photo_with_no_food_opens_no_pair(api: Api, photos: dict[str, bytes]
                                                   ) -> None:
    ids = _ids(api)
    who = {"kiosk_id": ids["kiosk"], "user_id": ids["user"]}
    before = _analyze(api, photos["empty"], meal_state="before", captured_at=BEFORE_AT, **who)
    _assert_no_food(before)
    assert before["pair_id"] is None and before["message"].endswith(NO_FOOD_BEFORE)
    # The tray's after photo finds no open pair: nothing served, no waste, no tray counted.
    after = _analyze(api, photos["tray"], meal_state="after", captured_at=AFTER_AT, **who)
    assert after["pair_id"] is None
    pairs = api.call("kiosk_a", "GET", "/v1/pairs", params={"user_id": ids["user"]}).json()
    assert pairs == []
    waste = api.call("kiosk_a", "GET", f"/v1/canteens/{api.canteen_a}/waste",
                     params={"start": DAY, "end": DAY}).json()
    assert (waste["trays"], waste["served_g"], waste["dishes"]) == (0, 0.0, [])
    # Asked for by hand, the pair is refused until the before photo holds food.
    r = api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": before["id"],
                                                       "after_analysis_id": after["id"]})
    assert r.status_code == 422 and r.json()["error"] == "no_food_before", r.text
    added = api.call("kiosk_a", "POST", f"/v1/analyses/{before['id']}/items",
                     json={"food_id": APPLE, "grams": 150})
    assert added.status_code == 201, added.text
    r = api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": before["id"],
                                                       "after_analysis_id": after["id"]})
    assert r.status_code == 201, r.text
    assert r.json()["result"]["served_g"] == 150.0


def test_a_day_of_photos_without_food_is_not_a_logged_day(
        api: Api, photos: dict[str, bytes]) -> None:
    """The week's habits skip a day whose only photo found no food: missing data, not 0 kcal."""
    ids = _ids(api)
    _analyze(api, photos["empty"], user_id=ids["user"], captured_at=f"{DAY}T03:00:00Z")
    food_day = (dt.date.fromisoformat(DAY) + dt.timedelta(days=1)).isoformat()
    _analyze(api, photos["tray"], user_id=ids["user"], captured_at=f"{food_day}T03:00:00Z")
    week = api.call("kiosk_a", "GET", f"/v1/users/{ids['user']}/weeks/2026-W48").json()
    assert week["habits"]["days_logged"] == 1
    energy = week["habits"]["evidence"]["energy"]
    assert energy["dates"] == [food_day] and energy["days"] == 1
