"""The web page in headless Chromium against the real service: samples, uploads, overlay pixels.

Set TRAYLENS_PAGE_SCREENSHOT=docs/images/result.png to refresh the README's screenshot.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from benchmarks.serve_speed import LiveService, running_service
from serve.api.pages import SAMPLES_DIR
from serve.services.model_registry import LoadedModel
from tests.no_food import empty_tray_jpeg
from tests.serve.api.browser import chromium_context, first_page, playwright_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def service(loaded_model: LoadedModel) -> Iterator[LiveService]:
    """The real service in its own process, on the model the other service tests use."""
    with running_service(workers=1, env={"TRAYLENS_MODEL_PATH": str(loaded_model.path)}) as live:
        yield live


@pytest.fixture(scope="module")
def browser_page(service: LiveService) -> Iterator[Any]:
    """A fresh Chromium profile on the page, with the admin key passed in the URL fragment."""
    with chromium_context(playwright_or_skip()) as context:
        page = first_page(context)
        page.goto(f"{service.url}/#key={service.admin_key}")
        page.wait_for_selector("#sample-list button")
        yield page


def _run(page: Any, action: Any) -> dict[str, Any] | None:
    """Do an action that posts to /v1/analyze; wait until the page has shown the answer."""
    page.evaluate("document.body.removeAttribute('data-state')")
    with page.expect_response(lambda r: r.url.endswith("/v1/analyze")) as response_info:
        action()
    response = response_info.value
    page.wait_for_selector("body[data-state=done], body[data-state=error]")
    return response.json() if response.ok else None


def _frame_pixels(page: Any) -> np.ndarray:
    """A screenshot of the photo with its overlay, as an RGB array."""
    png = page.locator("#photo-frame").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _shape_boxes(page: Any) -> list[list[float]]:
    """Each drawn shape's bounding box, in pixels relative to the photo frame."""
    return list(page.evaluate("""() => {
        const frame = document.getElementById('photo-frame').getBoundingClientRect();
        return [...document.querySelectorAll('#overlay polygon')].map((shape) => {
            const r = shape.getBoundingClientRect();
            return [r.left - frame.left, r.top - frame.top, r.right - frame.left,
                    r.bottom - frame.top];
        });
    }"""))


def test_sample_tray_is_analysed_and_drawn(browser_page: Any) -> None:
    page = browser_page
    result = _run(page, lambda: page.click("#sample-list button[data-sample^='tray-']"))
    assert result is not None, page.inner_text("#error")
    items = result["items"]
    assert items, "the shipped model found nothing on a real tray photo"
    assert page.locator("#items-body tr[data-item]").count() == len(items)
    assert page.locator("#overlay polygon").count() == len(items)
    assert page.locator("#totals-body tr[data-nutrient='energy_kcal']").count() == 1
    assert "kcal" in page.inner_text("#totals-body")
    first_row = page.inner_text("#items-body tr[data-item='0']")
    assert " g" in first_row and "%" in first_row
    _check_shapes_follow_the_boxes(page, result)
    _check_overlay_changes_pixels(page)
    _save_screenshot(page)


def _check_shapes_follow_the_boxes(page: Any, result: dict[str, Any]) -> None:
    """Shapes sit inside the answer's boxes scaled to the displayed photo (2 px slack)."""
    shown = page.evaluate("() => { const i = document.getElementById('photo');"
                          " return [i.clientWidth, i.clientHeight, i.naturalWidth]; }")
    scale = shown[0] / shown[2]
    for item, drawn in zip(result["items"], _shape_boxes(page), strict=True):
        expected = [v * scale for v in item["box"]]
        assert drawn[0] >= expected[0] - 2 and drawn[1] >= expected[1] - 2, (item, drawn)
        assert drawn[2] <= expected[2] + 2 and drawn[3] <= expected[3] + 2, (item, drawn)
        assert drawn[2] - drawn[0] > 3 and drawn[3] - drawn[1] > 3, "a shape drawn as a dot"


def _check_overlay_changes_pixels(page: Any) -> None:
    """Inside every shape, the rendered overlay visibly changes the photo's pixels."""
    with_overlay = _frame_pixels(page)
    page.evaluate("document.getElementById('overlay').style.visibility = 'hidden'")
    bare = _frame_pixels(page)
    page.evaluate("document.getElementById('overlay').style.visibility = ''")
    assert with_overlay.shape == bare.shape
    for left, top, right, bottom in _shape_boxes(page):
        region = (slice(int(top) + 1, int(bottom) - 1), slice(int(left) + 1, int(right) - 1))
        change = np.abs(with_overlay[region] - bare[region]).mean()
        assert change > 8, f"overlay barely visible in box {left, top, right, bottom}: {change:.1f}"


def _save_screenshot(page: Any) -> None:
    """Keep a screenshot of the result where the README can use it, when asked to."""
    target = os.environ.get("TRAYLENS_PAGE_SCREENSHOT")
    if target:
        shot = Image.open(io.BytesIO(page.locator("#result").screenshot())).convert("RGB")
        # 256 colours keep the README image a few hundred kB instead of most of a MB.
        shot.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(target, optimize=True)


def test_uploaded_plate_photo_is_analysed(browser_page: Any) -> None:
    page = browser_page
    photo = SAMPLES_DIR / "plate-apple-banana-coin.jpg"
    result = _run(page, lambda: page.set_input_files("#photo-input", str(photo)))
    assert result is not None, page.inner_text("#error")
    assert page.locator("#items-body tr[data-item]").count() == len(result["items"])
    assert photo.name in page.inner_text("#photo-caption")
    assert page.locator("#error").is_hidden()


def test_photo_without_food_says_no_food_found(browser_page: Any, tmp_path: Any) -> None:
    """An empty tray: "No food found" with the service's words instead of an empty table and
    totals of 0 (on a narrow screen too); the next photo with food shows its tables again."""
    page = browser_page
    photo = tmp_path / "empty-tray.jpg"
    photo.write_bytes(empty_tray_jpeg())
    result = _run(page, lambda: page.set_input_files("#photo-input", str(photo)))
    assert result is not None, page.inner_text("#error")
    assert result["items"] == [] and result["no_food_found"], result["items"]
    assert page.locator("#no-food").is_visible()
    assert page.inner_text("#no-food-title") == "No food found"
    assert page.inner_text("#no-food-message") == result["message"]
    assert page.locator("#items-table").is_hidden()
    assert page.locator("#totals-table").is_hidden()
    assert page.locator("#overlay polygon").count() == 0
    assert page.inner_text("#status") == "No food found in empty-tray.jpg."
    assert page.inner_text("#photo-caption") == "empty-tray.jpg: no food found."
    size = page.viewport_size
    page.set_viewport_size({"width": 380, "height": 800})
    try:
        assert page.locator("#items-table").is_hidden() and page.locator("#no-food").is_visible()
    finally:
        page.set_viewport_size(size)
    food = SAMPLES_DIR / "plate-apple-banana-coin.jpg"
    result = _run(page, lambda: page.set_input_files("#photo-input", str(food)))
    assert result is not None and result["items"] and not result["no_food_found"]
    assert page.locator("#no-food").is_hidden()
    assert page.locator("#items-table").is_visible() and page.locator("#totals-table").is_visible()


def test_non_image_upload_shows_the_services_error(browser_page: Any) -> None:
    page = browser_page
    not_a_photo = SAMPLES_DIR / "ATTRIBUTION.md"
    result = _run(page, lambda: page.set_input_files("#photo-input", str(not_a_photo)))
    assert result is None
    message = page.inner_text("#error")
    assert page.locator("#error").is_visible()
    assert "HTTP 4" in message, message
    assert page.locator("#result").is_hidden()


def test_photo_dropped_on_the_page_is_analysed(browser_page: Any) -> None:
    """Drag and drop: a real photo dropped on the drop zone goes through the same request."""
    page = browser_page
    drop = """async () => {
        const blob = await (await fetch('/samples/tray-fries.jpg')).blob();
        const data = new DataTransfer();
        data.items.add(new File([blob], 'dropped-tray.jpg', { type: 'image/jpeg' }));
        document.getElementById('drop-zone').dispatchEvent(
            new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    }"""
    result = _run(page, lambda: page.evaluate(drop))
    assert result is not None, page.inner_text("#error")
    assert "dropped-tray.jpg" in page.inner_text("#photo-caption")
    assert page.locator("#items-body tr[data-item]").count() == len(result["items"])
