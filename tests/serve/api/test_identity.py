"""Issue 15 §3-4 over HTTP on SQLite and PostgreSQL: an item is named only on its own
evidence, confidence is a product of probabilities, and analysed items become enrolment
examples (JSON route and corrections), with every tenant's access scoped."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from model.infer.images import load_image
from model.infer.menu_match import UNIDENTIFIED, MatchConfig
from tests.serve.api.test_menus import Api, make_api
from tests.serve.conftest import Service
from tests.serve.services.test_diary import KIMCHI, RICE, SOUP

# A Korean lunch nobody has enrolled yet: no dish is one of the model's classes.
KOREAN = [(RICE, 210), (SOUP, None), (KIMCHI, 50), ("mfds:D102-082120000-0001", None),
          ("kfct:사과, 생것", 150)]


@pytest.fixture
def api(service: Service) -> Api:
    """A fresh pair of tenants per test."""
    return make_api(service)


def _menu(api: Api, who: str = "kiosk_a", canteen_id: str | None = None,
          date: str = "2026-12-01") -> dict[str, Any]:
    dishes = [{"food_id": f, **({"serving_g": g} if g else {})} for f, g in KOREAN]
    body: dict[str, Any] = {"date": date, "meal": "lunch", "dishes": dishes}
    if canteen_id:
        body["canteen_id"] = canteen_id
    return dict(api.service.ok(api.call(who, "POST", "/v1/menus", json=body), 201))


def _analyze(api: Api, photo: bytes, who: str = "kiosk_a", **data: str) -> Any:
    files = {"image": ("tray.jpg", photo, "image/jpeg")}
    return api.service.ok(api.call(who, "POST", "/v1/analyze", files=files, data=data), 201)


def _detections(api: Api, photo: bytes) -> list[float]:
    """Detection scores of the food items model.predict finds on the photo, decoded as the
    service decodes it (JPEG reduced to the model's input size)."""
    loaded = api.client.app.state.models.active  # type: ignore[attr-defined]
    pred = loaded.model.predict([load_image(photo, fit=loaded.model.meta.input_size)])[0]
    return sorted(round(i.score, 4) for i in pred.items if i.label != "coin")


def test_menu_without_evidence_leaves_every_item_unidentified(
        api: Api, photo_bytes: dict[str, bytes]) -> None:
    menu = _menu(api)
    body = _analyze(api, photo_bytes["tray"], menu_id=menu["id"])
    assert body["items"], "the model found nothing on a real tray"
    dish_ids = [d["id"] for d in menu["dishes"]]
    for item in body["items"]:
        assert item["label"] == UNIDENTIFIED and item["menu_dish_id"] is None, item
        assert item["food_id"] is None and item["needs_review"] and item["evidence"] == "none"
        assert item["confidence"] == item["detection_score"] < 1.0
        assert [a["dish_id"] for a in item["alternatives"]] == dish_ids  # all, uniform
        assert {a["score"] for a in item["alternatives"]} == {0.2}
        assert item["alternatives"][0]["label"] == "쌀밥"
    assert body["totals"]["items_without_nutrients"] == len(body["items"])


def test_model_mode_confidence_is_detection_times_class(
        api: Api, photo_bytes: dict[str, bytes]) -> None:
    """Was: 1.00 for every item with alternatives at 0.0 (the class softmax alone)."""
    body = _analyze(api, photo_bytes["tray"])
    items = body["items"]
    assert items
    # the detection scores are exactly what model.predict (python -m model.predict) gives
    assert sorted(i["detection_score"] for i in items) == _detections(api, photo_bytes["tray"])
    cut = MatchConfig().min_class_score
    for item in items:
        if item["label"] == UNIDENTIFIED:
            assert item["needs_review"] and item["confidence"] == item["detection_score"]
            continue
        top = item["alternatives"][0]
        assert top["label"] == item["label"] and top["score"] >= cut
        assert item["confidence"] == pytest.approx(item["detection_score"] * top["score"],
                                                   abs=2e-4)
        assert item["needs_review"] == (item["confidence"] < 0.5)
    assert any(i["confidence"] < 1.0 for i in items)


# --- learning from the first trays ------------------------------------------------------


def _enrol_item(api: Api, menu: dict[str, Any], dish: int, analysis_id: str, item_id: str,
                who: str = "kiosk_a") -> Any:
    url = f"/v1/menus/{menu['id']}/dishes/{menu['dishes'][dish]['id']}/enrolments"
    return api.call(who, "POST", url, json={"analysis_id": analysis_id, "item_id": item_id})


def _enrolments(api: Api, menu: dict[str, Any], dish: int) -> list[dict[str, Any]]:
    url = f"/v1/menus/{menu['id']}/dishes/{menu['dishes'][dish]['id']}/enrolments"
    return list(api.call("kiosk_a", "GET", url).json())


def test_enrol_analysed_items_then_the_next_tray_names_them(
        api: Api, photo_bytes: dict[str, bytes]) -> None:
    menu = _menu(api)
    first = _analyze(api, photo_bytes["tray"], menu_id=menu["id"])
    items = first["items"][:len(KOREAN)]
    assert items
    for n, item in enumerate(items):  # the kitchen says which dish each item is
        r = _enrol_item(api, menu, n, first["id"], item["id"])
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["region"] == body["area_from"] == "mask" and body["mask_sha256"]
        assert body["image_sha256"] == first["image"]["sha256"]
        # the mask is the item's polygon, the outline of its mask's largest part: its area
        # is the polygon's, at most the item's (1.6.0's food-shaped mask of the faint
        # Plate here falls in pieces: 9,971 of its 14,849 px in the largest)
        polygon = np.asarray(item["polygon"], np.float32)
        assert body["area_px"] == pytest.approx(cv2.contourArea(polygon), rel=0.1)
        assert body["area_px"] <= 1.05 * item["area_px"]
    # the same item again: the existing example (200), not a second copy
    again = _enrol_item(api, menu, 0, first["id"], items[0]["id"])
    assert again.status_code == 200 and again.json()["id"] == _enrolments(api, menu, 0)[0]["id"]
    second = _analyze(api, photo_bytes["tray"], menu_id=menu["id"])
    named = {i["menu_dish_id"] for i in second["items"]}
    for n, item in enumerate(items):
        twin = next(i for i in second["items"] if i["box"] == item["box"])
        assert twin["menu_dish_id"] == menu["dishes"][n]["id"], twin
        assert twin["evidence"] == "embedding" and twin["label"] == menu["dishes"][n]["name"]
        assert twin["confidence"] == pytest.approx(
            twin["detection_score"] * twin["alternatives"][0]["score"], abs=2e-4)
    assert None not in named or len(second["items"]) > len(items)
    # another photo of the same canteen's trays: identified by the enrolled examples
    other = _analyze(api, photo_bytes["tray3"], menu_id=menu["id"])
    assert any(i["evidence"] == "embedding" for i in other["items"]), other["items"]


def test_correcting_a_dish_enrols_unless_told_not_to(
        api: Api, photo_bytes: dict[str, bytes]) -> None:
    menu = _menu(api)
    body = _analyze(api, photo_bytes["tray"], menu_id=menu["id"])
    first, second = body["items"][0], body["items"][1]
    url = f"/v1/analyses/{body['id']}/items/{first['id']}"
    fixed = api.service.ok(api.call("kiosk_a", "PATCH", url,
                                    json={"menu_dish_id": menu["dishes"][0]["id"]}))
    item = next(i for i in fixed["items"] if i["id"] == first["id"])
    assert (item["label"], item["food_id"], item["menu_dish_id"]) == (
        "쌀밥", RICE, menu["dishes"][0]["id"])
    assert item["identified_by"] == item["evidence"] == "user" and not item["needs_review"]
    assert item["names"]["ko"] == "쌀밥" and item["nutrients"]
    assert item["original"]["food_id"] is None and item["original"]["label"] == UNIDENTIFIED
    assert fixed["enrolment"] is not None
    assert [e["id"] for e in _enrolments(api, menu, 0)] == [fixed["enrolment"]["id"]]
    # corrected again to another dish: the example moves with it (one item, one dish)
    moved = api.service.ok(api.call("kiosk_a", "PATCH", url,
                                    json={"menu_dish_id": menu["dishes"][2]["id"]}))
    assert _enrolments(api, menu, 0) == [] and len(_enrolments(api, menu, 2)) == 1
    assert moved["enrolment"]["dish_id"] == menu["dishes"][2]["id"]
    # "enrol": false corrects without enrolling
    url2 = f"/v1/analyses/{body['id']}/items/{second['id']}"
    quiet = api.service.ok(api.call("kiosk_a", "PATCH", url2, json={
        "menu_dish_id": menu["dishes"][1]["id"], "enrol": False, "grams": 300}))
    assert quiet["enrolment"] is None and _enrolments(api, menu, 1) == []
    assert next(i for i in quiet["items"] if i["id"] == second["id"])["menu_dish_id"] == \
        menu["dishes"][1]["id"]
    # an app key corrects its canteen's analysis but may not write menus: no enrolment by
    # default, 403 when it insists
    app = api.call("app_a", "PATCH", url2, json={"menu_dish_id": menu["dishes"][3]["id"]})
    assert app.status_code in (200, 404), app.text  # apps see only their own analyses
    if app.status_code == 200:
        assert app.json()["enrolment"] is None
    mine = _analyze(api, photo_bytes["tray"], who="app_a", menu_id=menu["id"])
    url3 = f"/v1/analyses/{mine['id']}/items/{mine['items'][0]['id']}"
    r = api.call("app_a", "PATCH", url3, json={"menu_dish_id": menu["dishes"][3]["id"]})
    assert r.status_code == 200 and r.json()["enrolment"] is None, r.text
    assert _enrolments(api, menu, 3) == []
    r = api.call("app_a", "PATCH", url3, json={"menu_dish_id": menu["dishes"][3]["id"],
                                               "enrol": True})
    assert r.status_code == 403, r.text


def test_correction_with_a_dish_errors(api: Api, photo_bytes: dict[str, bytes]) -> None:
    menu = _menu(api)
    plain = _analyze(api, photo_bytes["tray"])  # no menu
    url = f"/v1/analyses/{plain['id']}/items/{plain['items'][0]['id']}"
    r = api.call("kiosk_a", "PATCH", url, json={"menu_dish_id": menu["dishes"][0]["id"]})
    assert r.status_code == 422 and r.json()["error"] == "no_menu", r.text
    with_menu = _analyze(api, photo_bytes["tray"], menu_id=menu["id"])
    url = f"/v1/analyses/{with_menu['id']}/items/{with_menu['items'][0]['id']}"
    r = api.call("kiosk_a", "PATCH", url, json={"menu_dish_id": "nope"})
    assert r.status_code == 422 and r.json()["error"] == "unknown_dish", r.text
    r = api.call("kiosk_a", "PATCH", url, json={"menu_dish_id": menu["dishes"][0]["id"],
                                                "food_id": RICE})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input", r.text
    r = api.call("kiosk_a", "PATCH", url, json={"menu_dish_id": menu["dishes"][0]["id"],
                                                "enrol": "perhaps"})
    assert r.status_code == 422, r.text


def test_enrol_from_item_errors_and_tenancy(api: Api, photo_bytes: dict[str, bytes]) -> None:
    menu = _menu(api)
    body = _analyze(api, photo_bytes["tray"], menu_id=menu["id"])
    other = _analyze(api, photo_bytes["tray2"], menu_id=menu["id"])
    item = body["items"][0]["id"]
    url = f"/v1/menus/{menu['id']}/dishes/{menu['dishes'][0]['id']}/enrolments"
    json_type = {"Content-Type": "application/json"}
    for raw, why in ((b"{not json", "Invalid JSON"), (b'{"analysis_id": "x"}', "item_id"),
                     (b'{"analysis_id": "a", "item_id": "b", "box": 1}', "box"), (b"", "")):
        r = api.client.post(url, content=raw, headers={**api.keys["kiosk_a"], **json_type})
        assert r.status_code == 422 and r.json()["error"] == "invalid_input", (raw, r.text)
        assert why in r.json()["detail"] or not why
    r = api.client.post(url, content=b"x" * 5000, headers={**api.keys["kiosk_a"], **json_type})
    assert r.status_code == 413
    r = api.client.post(url, content=b"hello", headers={**api.keys["kiosk_a"],
                                                        "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert _enrol_item(api, menu, 0, body["id"], "nope").status_code == 404
    assert _enrol_item(api, menu, 0, "nope", item).status_code == 404
    # an item of another analysis
    r = _enrol_item(api, menu, 0, other["id"], item)
    assert r.status_code == 404 and r.json()["detail"] == f"no item with id '{item}'"
    # other tenants: B's kiosk cannot reach A's menu, nor A's analysis from its own menu
    assert _enrol_item(api, menu, 0, body["id"], item, who="kiosk_b").status_code == 404
    menu_b = _menu(api, who="admin", canteen_id=api.canteen_b)
    assert _enrol_item(api, menu_b, 0, body["id"], item, who="kiosk_b").status_code == 404
    # even an admin cannot teach B's menu with A's tray
    r = _enrol_item(api, menu_b, 0, body["id"], item, who="admin")
    assert r.status_code == 404 and "analysis" in r.json()["detail"]
    assert _enrol_item(api, menu, 0, body["id"], item, who="app_a").status_code == 403
    assert _enrolments(api, menu, 0) == []
    assert _enrol_item(api, menu, 0, body["id"], item, who="admin").status_code == 201
