"""The tray layout page (GET /kiosks/layout) in headless Chromium against the real service.

An admin opens the page, picks a kiosk, uploads a photo of its empty tray (drawn by
model.data.traybed), proposes the compartments, renames and drags them, saves, reloads.
The tests run in order on one page, as an admin would use it.

Set TRAYLENS_LAYOUT_SCREENSHOT=docs/images/layout-page.png to refresh the docs' screenshot.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from benchmarks.serve_speed import LiveService, running_service
from model.data.traybed import make_kiosk
from tests.serve.api.browser import (
    admin_client,
    chromium_context,
    first_page,
    playwright_or_skip,
)
from tests.serve.conftest import model_path_for_tests

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REFERENCE_SIZE = (1280, 960)  # larger than the photo is shown: screen px != reference px
SCREENSHOT = Path("/tmp/layout-page.png")


@pytest.fixture(scope="module")
def chromium() -> Any:
    """Playwright's sync API, or a skip saying what is missing."""
    return playwright_or_skip()


@pytest.fixture(scope="module")
def service(chromium: Any) -> Iterator[LiveService]:
    """The real service in its own process (the layout routes need no model, startup does)."""
    env = {"TRAYLENS_MODEL_PATH": str(model_path_for_tests())}
    with running_service(workers=1, env=env) as live:
        yield live


@pytest.fixture(scope="module")
def api(service: LiveService) -> Iterator[httpx.Client]:
    with admin_client(service) as client:
        yield client


@pytest.fixture(scope="module")
def kiosk_id(api: httpx.Client) -> str:
    """A canteen and its kiosk, registered through the API."""
    canteen = api.post("/v1/canteens", json={"name": "Layout page canteen"})
    assert canteen.status_code == 201, canteen.text
    kiosk = api.post("/v1/kiosks", json={"name": "Line 1 kiosk 키오스크",
                                         "canteen_id": canteen.json()["id"]})
    assert kiosk.status_code == 201, kiosk.text
    return str(kiosk.json()["id"])


@pytest.fixture(scope="module")
def reference_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic kiosk camera's photo of its empty stainless compartment tray (JPEG)."""
    kiosk = make_kiosk(7, REFERENCE_SIZE)
    path = tmp_path_factory.mktemp("layout") / "empty-tray.jpg"
    Image.fromarray(kiosk.reference).save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def page(chromium: Any, service: LiveService, kiosk_id: str) -> Iterator[Any]:
    """A fresh Chromium profile on the layout page (the kiosk registered first), the admin
    key passed in the URL fragment."""
    with chromium_context(chromium) as context:
        browser_page = first_page(context)
        errors: list[str] = []
        browser_page.on("pageerror", lambda exc: errors.append(str(exc)))
        browser_page.goto(f"{service.url}/kiosks/layout#key={service.admin_key}")
        browser_page.wait_for_selector("body[data-state=ready]")
        yield browser_page
    assert not errors, f"script errors on the page: {errors}"


def _act(page: Any, action: Any, expect: str = "ready") -> None:
    """Do something that makes the page call the service; wait until it has finished."""
    page.evaluate("document.body.removeAttribute('data-state')")
    action()
    page.wait_for_selector("body[data-state]:not([data-state=busy])")
    state = page.get_attribute("body", "data-state")
    assert state == expect, f"page state {state!r}: {page.inner_text('#error')}"


def _polygons(page: Any) -> int:
    return int(page.locator("#layout-overlay polygon.compartment").count())


def _slot_names(page: Any) -> list[str]:
    return list(page.eval_on_selector_all(".slot-name", "(inputs) => inputs.map((i) => i.value)"))


def _point(page: Any, c: int, v: int) -> tuple[float, float]:
    handle = page.locator(f'#layout-overlay circle.handle[data-c="{c}"][data-v="{v}"]')
    return float(handle.get_attribute("cx")), float(handle.get_attribute("cy"))


def _points(page: Any, c: int) -> int:
    return int(page.locator(f'#layout-overlay circle.handle[data-c="{c}"]').count())


def _scale(page: Any) -> float:
    """Reference pixels per screen pixel, as shown now."""
    return float(page.evaluate("""() => { const img = document.getElementById('reference-photo');
        return img.naturalWidth / img.getBoundingClientRect().width; }"""))


def _grabbable_vertex(page: Any, c: int) -> tuple[int, float, float]:
    """A vertex of compartment c whose handle is the topmost element at its own centre
    (proposals may put points a few px apart), with that centre in screen px."""
    page.locator("#layout-figure").scroll_into_view_if_needed()
    found = page.evaluate("""(c) => {
        for (const h of document.querySelectorAll(`#layout-overlay circle.handle[data-c="${c}"]`)) {
            const r = h.getBoundingClientRect();
            const [x, y] = [r.left + r.width / 2, r.top + r.height / 2];
            if (document.elementFromPoint(x, y) === h) return [Number(h.dataset.v), x, y];
        }
        return null;
    }""", c)
    assert found, f"no handle of compartment {c} can be grabbed"
    return int(found[0]), float(found[1]), float(found[2])


def _overlay_box(page: Any) -> dict[str, float]:
    """The drawing's box on screen, scrolled into view (focus moves may scroll the page)."""
    page.locator("#layout-figure").scroll_into_view_if_needed()
    return dict(page.locator("#layout-overlay").bounding_box())


def _drag(page: Any, x: float, y: float, dx: float, dy: float) -> None:
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=4)
    page.mouse.move(x + dx, y + dy, steps=4)
    page.mouse.up()


class Moved:
    """What the drag test moved, for the later tests."""

    vertex: int = 0
    point: tuple[float, float] = (0.0, 0.0)


def test_page_lists_the_kiosk_and_it_has_no_layout(page: Any, kiosk_id: str) -> None:
    assert page.locator(f"#kiosk-select option[value='{kiosk_id}']").count() == 1
    _act(page, lambda: page.select_option("#kiosk-select", kiosk_id))
    assert "no layout yet" in page.inner_text("#status")
    assert page.locator("#layout-figure").is_hidden()
    assert page.is_disabled("#save-button") and page.is_disabled("#delete-button")


def test_proposal_is_drawn_on_the_uploaded_photo(page: Any, reference_photo: Path) -> None:
    _act(page, lambda: page.set_input_files("#reference-input", str(reference_photo)))
    assert page.locator("#layout-figure").is_visible()
    assert page.evaluate("document.getElementById('reference-photo').naturalWidth") == \
        REFERENCE_SIZE[0]
    _act(page, lambda: page.click("#propose-button"), expect="proposed")
    count = _polygons(page)
    assert count >= 4, f"only {count} compartments proposed on a traybed tray"
    assert page.locator(".compartment-row").count() == count
    assert page.locator("#dirty").is_visible()
    # Drawn in reference px: the SVG's grid is the photo's, and it covers the shown photo.
    box = page.locator("#layout-overlay").bounding_box()
    photo = page.locator("#reference-photo").bounding_box()
    assert abs(box["width"] - photo["width"]) < 1 and abs(box["height"] - photo["height"]) < 1
    assert page.get_attribute("#layout-overlay", "viewBox") == \
        f"0 0 {REFERENCE_SIZE[0]} {REFERENCE_SIZE[1]}"


def test_rename_and_drag_a_vertex_then_save(page: Any, api: httpx.Client, kiosk_id: str
                                            ) -> None:
    page.fill("#slot-0", "rice")
    page.fill("#slot-1", "밥")
    assert page.locator(".field-error:not([hidden])").count() == 0
    assert page.text_content('#layout-overlay .labels text[data-c="1"]') == "밥"

    vertex, x, y = _grabbable_vertex(page, 0)
    before = _point(page, 0, vertex)
    scale = _scale(page)
    assert scale > 1.05, "the photo should be shown smaller than its pixels"
    dx, dy = -20, 16
    _drag(page, x, y, dx, dy)
    after = _point(page, 0, vertex)
    assert after[0] - before[0] == pytest.approx(dx * scale, abs=1.5), (before, after, scale)
    assert after[1] - before[1] == pytest.approx(dy * scale, abs=1.5), (before, after, scale)
    Moved.vertex, Moved.point = vertex, after

    page.fill("#tray-width", "37")
    page.fill("#tray-height", "28")
    _act(page, lambda: page.click("#save-button"), expect="saved")
    assert page.locator("#dirty").is_hidden()
    assert page.is_enabled("#delete-button")

    saved = api.get(f"/v1/kiosks/{kiosk_id}/layout")
    assert saved.status_code == 200, saved.text
    layout = saved.json()
    slots = [c["slot"] for c in layout["compartments"]]
    assert slots[:2] == ["rice", "밥"] and len(slots) == _polygons(page)
    assert layout["compartments"][0]["polygon"][vertex] == pytest.approx(list(after), abs=0.11)
    assert layout["tray_width_cm"] == 37 and layout["tray_height_cm"] == 28
    assert (layout["reference"]["width"], layout["reference"]["height"]) == REFERENCE_SIZE


def test_reloaded_page_draws_the_saved_layout(page: Any) -> None:
    """The kiosk is remembered; the reference photo comes back through the API as a blob."""
    _act(page, page.reload)
    assert "Loaded the saved layout" in page.inner_text("#status")
    assert page.evaluate("document.getElementById('reference-photo').src").startswith("blob:")
    names = _slot_names(page)
    assert names[:2] == ["rice", "밥"] and _polygons(page) == len(names)
    assert _point(page, 0, Moved.vertex) == pytest.approx(Moved.point, abs=0.11)
    assert page.input_value("#tray-width") == "37"
    assert page.locator("#dirty").is_hidden()


def test_duplicate_slot_name_is_refused_inline(page: Any, api: httpx.Client, kiosk_id: str
                                              ) -> None:
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    page.fill("#slot-1", "rice")
    error = page.locator("#slot-1-error")
    assert error.is_visible() and "unique" in error.inner_text()
    assert page.get_attribute("#slot-1", "aria-invalid") == "true"
    assert page.get_attribute("#slot-0", "aria-invalid") == "true"
    page.click("#save-button")
    assert page.get_attribute("body", "data-state") == "invalid"
    assert "Not saved" in page.inner_text("#error")
    assert page.evaluate("document.activeElement.classList.contains('slot-name')")
    assert not puts, "a layout with duplicate slots was sent"
    assert [c["slot"] for c in api.get(f"/v1/kiosks/{kiosk_id}/layout").json()["compartments"]
            ][:2] == ["rice", "밥"]
    page.fill("#slot-1", "밥")
    assert page.locator(".field-error:not([hidden])").count() == 0


def test_edges_add_points_and_points_can_be_removed(page: Any) -> None:
    count = _points(page, 0)
    # Click the middle of the compartment's longest edge: a point is added there.
    edge = page.evaluate("""() => {
        let best = null;
        for (const e of document.querySelectorAll('#layout-overlay line.edge[data-c="0"]')) {
            const r = e.getBoundingClientRect();
            const x1 = +e.getAttribute('x1'), x2 = +e.getAttribute('x2');
            const y1 = +e.getAttribute('y1'), y2 = +e.getAttribute('y2');
            const length = Math.hypot(x2 - x1, y2 - y1);
            const middle = [r.left + r.width / 2, r.top + r.height / 2];
            if (!best || length > best[0]) best = [length, ...middle];
        }
        return best;
    }""")
    page.mouse.click(edge[1], edge[2])
    assert _points(page, 0) == count + 1
    assert page.inner_text(".compartment-row[data-c='0'] .points") == f"{count + 1} points"
    # Double-click another point: it goes.
    _, x, y = _grabbable_vertex(page, 0)
    page.wait_for_timeout(750)  # past the guard that keeps a just-added point
    page.mouse.dblclick(x, y)
    assert _points(page, 0) == count
    # Keyboard: a focused point moves with the arrow keys and goes with Delete.
    handle = page.locator('#layout-overlay circle.handle[data-c="0"][data-v="0"]')
    handle.focus()
    x0, y0 = _point(page, 0, 0)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")
    assert _point(page, 0, 0) == pytest.approx((min(x0 + 1, REFERENCE_SIZE[0]),
                                                min(y0 + 10, REFERENCE_SIZE[1])))
    page.keyboard.press("Delete")
    assert _points(page, 0) == count - 1
    # Right-click removes a point too.
    _, x, y = _grabbable_vertex(page, 0)
    page.mouse.click(x, y, button="right")
    assert _points(page, 0) == count - 2
    assert page.locator("#dirty").is_visible()


def test_a_compartment_moves_whole(page: Any) -> None:
    """Dragging inside a compartment moves every point by the same reference px."""
    page.locator("#layout-figure").scroll_into_view_if_needed()
    centre = page.evaluate("""() => {
        const r = document.querySelector('#layout-overlay polygon.compartment[data-c="2"]')
            .getBoundingClientRect();
        return [r.left + r.width / 2, r.top + r.height / 2];
    }""")
    before = [_point(page, 2, v) for v in range(_points(page, 2))]
    scale = _scale(page)
    _drag(page, centre[0], centre[1], 12, 9)
    after = [_point(page, 2, v) for v in range(_points(page, 2))]
    for (x0, y0), (x1, y1) in zip(before, after, strict=True):
        assert x1 - x0 == pytest.approx(12 * scale, abs=1.5)
        assert y1 - y0 == pytest.approx(9 * scale, abs=1.5)


def test_a_compartment_can_be_drawn_named_and_deleted(page: Any) -> None:
    count = _polygons(page)
    page.click("#add-button")
    assert page.get_attribute("#add-button", "aria-pressed") == "true"
    box = _overlay_box(page)
    corners = [(0.05, 0.05), (0.2, 0.05), (0.2, 0.15), (0.05, 0.15)]
    for fx, fy in corners:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.mouse.click(box["x"] + 0.05 * box["width"] + 2, box["y"] + 0.05 * box["height"] + 1)
    assert _polygons(page) == count + 1
    assert _points(page, count) == 4
    # Focus goes to the new compartment's name, ready to type.
    assert page.evaluate("document.activeElement.id") == f"slot-{count}"
    page.keyboard.type("국")
    assert _slot_names(page)[count].endswith("국")
    # Enter finishes a compartment too; three points is the least.
    page.click("#add-button")
    box = _overlay_box(page)
    for fx, fy in [(0.8, 0.8), (0.95, 0.8), (0.9, 0.95)]:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.keyboard.press("Enter")
    assert _polygons(page) == count + 2 and _points(page, count + 1) == 3
    for index in (count + 1, count):
        page.click(f".compartment-row[data-c='{index}'] button[data-action=delete]")
    assert _polygons(page) == count


def test_the_services_422_detail_is_shown(page: Any) -> None:
    """A compartment the service cannot use (no area): its own explanation is shown."""
    page.click("#add-button")
    box = _overlay_box(page)
    for fx in (0.1, 0.2, 0.3):  # three points on one line
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + 0.9 * box["height"])
    page.keyboard.press("Enter")
    flat = _polygons(page) - 1
    _act(page, lambda: page.click("#save-button"), expect="error")
    message = page.inner_text("#error")
    assert "HTTP 422" in message and "no area" in message, message
    page.click(f".compartment-row[data-c='{flat}'] button[data-action=delete]")
    page.fill("#slot-0", "rice")
    _act(page, lambda: page.click("#save-button"), expect="saved")
    assert page.locator("#error").is_hidden()


def test_narrow_screen_has_no_sideways_scrolling(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _act(page, page.reload)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    photo = page.locator("#reference-photo").bounding_box()
    assert photo["x"] >= 0 and photo["x"] + photo["width"] <= 390
    # Still editable at this size: a vertex moves by the shown scale.
    vertex, x, y = _grabbable_vertex(page, 0)
    before, scale = _point(page, 0, vertex), _scale(page)
    _drag(page, x, y, 10, -8)
    after = _point(page, 0, vertex)
    assert after[0] - before[0] == pytest.approx(10 * scale, abs=1.5)
    assert after[1] - before[1] == pytest.approx(-8 * scale, abs=1.5)
    page.screenshot(path=str(SCREENSHOT.with_name("layout-page-390.png")), full_page=True)
    page.set_viewport_size({"width": 1360, "height": 1000})
    _act(page, page.reload)
    page.click('#layout-overlay polygon.compartment[data-c="1"]')  # selected: larger handles
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    target = os.environ.get("TRAYLENS_LAYOUT_SCREENSHOT")
    if target:
        shot = Image.open(io.BytesIO(page.locator("main").screenshot())).convert("RGB")
        shot = shot.resize((900, round(shot.height * 900 / shot.width)), Image.Resampling.LANCZOS)
        shot.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(target, optimize=True)


def test_delete_layout(page: Any, api: httpx.Client, kiosk_id: str) -> None:
    page.once("dialog", lambda dialog: dialog.accept())
    _act(page, lambda: page.click("#delete-button"), expect="deleted")
    assert api.get(f"/v1/kiosks/{kiosk_id}/layout").status_code == 404
    assert page.is_disabled("#delete-button")
    assert page.locator("#dirty").is_visible(), "the drawing stays, unsaved, to save again"
