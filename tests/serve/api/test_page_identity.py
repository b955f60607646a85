"""The page teaches a menu in headless Chromium (issue 15 §4): analyse a tray with a menu
nobody enrolled, see every item unidentified (needs review), click one, pick its dish by
its Korean and English names, see it named, analyse again and see it identified."""
from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from benchmarks.serve_speed import LiveService
from tests.serve.api.test_page_browser import _run, browser_page, service  # noqa: F401
from tests.serve.services.test_diary import KIMCHI, RICE, SOUP

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _post(live: LiveService, path: str, body: dict[str, Any]) -> Any:
    """A JSON POST with the admin key."""
    request = urllib.request.Request(
        f"{live.url}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {live.admin_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _korean_menu(live: LiveService) -> dict[str, Any]:
    canteen = _post(live, "/v1/canteens", {"name": "page canteen", "timezone": "Asia/Seoul"})
    return dict(_post(live, "/v1/menus", {
        "canteen_id": canteen["id"], "date": "2026-12-02", "meal": "lunch",
        "dishes": [{"food_id": RICE, "serving_g": 210}, {"food_id": SOUP},
                   {"food_id": KIMCHI, "serving_g": 50},
                   # the canteen's own Korean name; the table gives the English one
                   {"food_id": "n5k:482", "name": "흰쌀밥", "serving_g": 200}]}))


def _row(page: Any, index: int) -> str:
    return str(page.inner_text(f"#items-body tr[data-item='{index}']"))


def _food_cell(page: Any, index: int) -> str:
    return str(page.inner_text(f"#items-body tr[data-item='{index}'] td:nth-child(2)"))


def test_pick_a_dish_on_the_page_and_the_next_photo_uses_it(
        browser_page: Any, service: LiveService) -> None:  # noqa: F811
    page = browser_page
    menu = _korean_menu(service)
    page.fill("#menu-id", menu["id"])
    page.dispatch_event("#menu-id", "change")
    sample = "#sample-list button[data-sample^='tray-']"
    first = _run(page, lambda: page.click(sample))
    assert first is not None and first["menu_id"] == menu["id"], page.inner_text("#error")
    assert first["items"], "the shipped model found nothing on a sample tray"
    # nothing is named by default: every item unidentified, flagged, with its confidence
    assert all(i["label"] == "unidentified" and i["needs_review"] for i in first["items"])
    row = _row(page, 0)
    assert "Unidentified food" in row and "needs review" in row
    assert f"{round(100 * first['items'][0]['confidence'])}%" in row
    assert "쌀밥" not in _food_cell(page, 0) and "쌀밥 25%" in row  # only as an alternative
    assert page.locator("#pick-help").is_visible()
    # click the item, pick 흰쌀밥 by its Korean and English names
    page.click("#items-body tr[data-item='0']")
    page.wait_for_selector("#dish-picker:not([hidden])")
    assert page.locator("#picker-list button").count() == 4
    buttons = page.locator("#picker-list button")
    assert "쌀밥" in page.inner_text("#picker-list")
    apple = page.locator(f"#picker-list button[data-dish='{menu['dishes'][3]['id']}']")
    assert apple.inner_text().split("\n") == ["흰쌀밥", "rice"]
    assert buttons.first.get_attribute("data-dish") in {d["id"] for d in menu["dishes"]}
    with page.expect_response(lambda r: "/items/" in r.url and r.request.method == "PATCH"):
        apple.click()
    page.wait_for_selector("body[data-state=corrected]")
    assert page.locator("#dish-picker").is_hidden()
    row = _row(page, 0)
    food = _food_cell(page, 0)
    assert "흰쌀밥" in food and "rice" in food and "corrected" in food
    assert "needs review" not in row and "100%" in row
    assert "enrolled as an example" in page.inner_text("#status")
    assert "흰쌀밥" in page.text_content("#overlay")  # the tag on the photo uses the dish's name
    # the next photo of the tray: named 쌀밥 from the enrolled example, by itself
    second = _run(page, lambda: page.click("#analyze-button"))
    assert second is not None, page.inner_text("#error")
    box = first["items"][0]["box"]
    index, twin = next((n, i) for n, i in enumerate(second["items"]) if i["box"] == box)
    assert twin["menu_dish_id"] == menu["dishes"][3]["id"] and twin["evidence"] == "embedding"
    food = _food_cell(page, index)
    assert "흰쌀밥" in food and "enrolled examples" in food, food
