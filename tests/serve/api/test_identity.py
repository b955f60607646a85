"""Issue 15 §3-4 over HTTP on SQLite and PostgreSQL: an item is named only on its own
evidence, confidence is a product of probabilities, and analysed items become enrolment
examples (JSON route and corrections), with every tenant's access scoped."""
from __future__ import annotations

from typing import Any

import pytest

from model.infer.menu_match import UNIDENTIFIED, MatchConfig
from model.infer.runtime import load_image
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
