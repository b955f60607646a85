"""The analysis page's usability in headless Chromium (issue 17): the button says what it
does, the menu is picked from the canteen's menus (or none), and a 390 px phone never
scrolls sideways - before a photo, with an answer, and with the dish picker open."""
from __future__ import annotations

from typing import Any

import pytest

from benchmarks.serve_speed import LiveService
from tests.serve.api.test_page_browser import _run, browser_page, service  # noqa: F401
from tests.serve.api.test_page_identity import _korean_menu

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TRAY = "#sample-list button[data-sample^='tray-']"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _sideways(page: Any) -> dict[str, Any]:
    """The page's scroll width against the viewport's, and the widest elements past it."""
    return dict(page.evaluate("""() => {
        const width = window.innerWidth;
        const over = [...document.querySelectorAll('body *')]
            .filter((n) => n.getBoundingClientRect().right > width + 0.5
                           && n.getClientRects().length)
            .slice(0, 5).map((n) => n.tagName + '#' + n.id + '.' + n.className);
        return {scroll: document.scrollingElement.scrollWidth, width, over};
    }"""))


def _fits(page: Any, width: int) -> None:
    seen = _sideways(page)
    assert seen["scroll"] <= width, seen


def test_the_button_reads_analyze_until_an_analysis_exists(browser_page: Any) -> None:  # noqa: F811
    page = browser_page
    button = page.locator("#analyze-button")
    assert button.inner_text() == "Analyze" and button.is_disabled()
    result = _run(page, lambda: page.click(TRAY))
    assert result is not None, page.inner_text("#error")
    assert button.inner_text() == "Analyze again" and button.is_enabled()


def test_the_menu_is_picked_from_the_canteens_menus(
        browser_page: Any, service: LiveService) -> None:  # noqa: F811
    page = browser_page
    menu = _korean_menu(service)
    picker = page.locator("#menu-id")
    assert picker.evaluate("n => n.tagName") == "SELECT"
    page.focus("#menu-id")  # menus made since the page opened show up
    page.wait_for_selector(f"#menu-id option[value='{menu['id']}']", state="attached")
    options = page.eval_on_selector_all("#menu-id option", "os => os.map(o => [o.value, o.text])")
    assert options[0] == ["", "No menu"]
    label = dict(options)[menu["id"]]
    assert label == "2026-12-02 · lunch · 쌀밥, 된장국_감자, 배추김치, …", label
    assert not any(len(value) == 32 and text == value for value, text in options)
    picker.select_option(menu["id"])
    with_menu = _run(page, lambda: page.click("#analyze-button"))
    assert with_menu is not None and with_menu["menu_id"] == menu["id"]
    picker.select_option("")
    without = _run(page, lambda: page.click("#analyze-button"))
    assert without is not None and without["menu_id"] is None
    # the choice survives a reload (local storage), and so does "none"
    picker.select_option(menu["id"])
    page.reload()
    page.wait_for_selector(f"#menu-id option[value='{menu['id']}']", state="attached")
    assert picker.input_value() == menu["id"]


def test_no_sideways_scroll_at_390_px(browser_page: Any) -> None:  # noqa: F811
    page = browser_page
    try:
        for size in (PHONE, DESKTOP):
            page.set_viewport_size(size)
            page.reload()
            page.wait_for_selector("#sample-list button")
            _fits(page, size["width"])  # before any photo
            result = _run(page, lambda: page.click(TRAY))
            assert result is not None and result["items"], page.inner_text("#error")
            _fits(page, size["width"])
            assert page.locator("#items-body tr[data-item]").count() == len(result["items"])
            assert page.locator("#photo").bounding_box()["width"] <= size["width"]
            if result["menu_id"]:  # the dish picker, when the tray had a menu
                page.click("#items-body tr[data-item='0']")
                page.wait_for_selector("#dish-picker:not([hidden])")
                _fits(page, size["width"])
                page.click("#picker-close")
        assert page.evaluate("getComputedStyle(document.querySelector('#items-table thead'))"
                             ".position") == "static"  # a real table again on a desktop
    finally:
        page.set_viewport_size({"width": 1360, "height": 1000})
