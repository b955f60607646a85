"""The diary dashboard (GET /dashboard) and the canteen page (GET /canteen) in headless
Chromium against the real service, at desktop and phone (390 px) widths.

A hand-built history goes straight into the live service's database (tray photos through the
model would take minutes on this machine); the pages then read it through the API like any
client. Each chart is checked against the API's own answer twice: the numbers the chart says
it draws (its figure's data-values) and where Chart.js drew them (each bar's or point's pixel
position mapped back through its axis, and a painted pixel there).

Set TRAYLENS_DASHBOARD_SCREENSHOT=docs/images/dashboard.png to refresh the docs' screenshot.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from benchmarks.serve_speed import LiveService, running_service
from serve.core.storage import record_image
from serve.db.session import make_engine, make_session_factory
from serve.services.pairing import link_analysis
from tests.serve.api.browser import (
    DESKTOP,
    TIMEOUT_MS,
    admin_client,
    chromium_context,
    playwright_or_skip,
)
from tests.serve.conftest import model_path_for_tests
from tests.serve.services.test_diary import KIMCHI, RICE, SOUP, WINDOW, stored_analysis

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KST = dt.timezone(dt.timedelta(hours=9))
WEEK = "2026-W48"
MONDAY = dt.datetime(2026, 11, 23, 12, 5, tzinfo=KST)
SHA = "d" * 64  # an image row the hand-made analyses point at (no file is ever read)
PHONE = {"width": 390, "height": 844}
DASHBOARD_CHARTS = ["chart-days-energy", "chart-days-sodium", "chart-nutrients",
                    "chart-trend-energy", "chart-trend-macros", "chart-trend-sodium",
                    "chart-trend-sugars-fibre", "chart-most-left"]
CANTEEN_CHARTS = ["chart-waste-dish", "chart-served-eaten", "chart-waste-day",
                  "chart-participation"]

# For every dataset of a figure's chart: the values, and for each element the value its
# drawn position stands for on the value axis, and whether a pixel there is painted.
DRAWN = """(id) => {
  const figure = document.getElementById(id);
  const chart = window.Chart.getChart(figure.querySelector('canvas'));
  if (!chart) return null;
  const ctx = chart.canvas.getContext('2d');
  const ratio = chart.currentDevicePixelRatio;
  const painted = (x, y) =>
    ctx.getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data[3] > 0;
  return chart.data.datasets.map((ds, i) => {
    const meta = chart.getDatasetMeta(i);
    const horizontal = meta.iScale.axis === 'y';
    const range = meta.vScale.max - meta.vScale.min;
    const dashed = (ds.borderDash || []).length > 0;  // a dashed line may have a gap there
    return {label: ds.label, type: meta.type, range, dashed, points: meta.data.map((el, j) => {
      const pos = horizontal ? el.x : el.y;
      let px = el.x, py = el.y;
      if (meta.type === 'bar') {
        if (horizontal) px = (el.x + el.base) / 2; else py = (el.y + el.base) / 2;
      }
      const value = ds.data[j];
      return {value, drawn: value === null ? null : meta.vScale.getValueForPixel(pos),
              painted: value === null ? null : painted(px, py)};
    })};
  });
}"""


@pytest.fixture(scope="module")
def chromium() -> Any:
    """Playwright's sync API, or a skip saying what is missing."""
    return playwright_or_skip()


@pytest.fixture(scope="module")
def service(chromium: Any) -> Iterator[LiveService]:
    """The real service in its own process (these pages need no model; startup loads one)."""
    with running_service(workers=1, env={"TRAYLENS_MODEL_PATH": str(model_path_for_tests())}
                         ) as live:
        yield live


@pytest.fixture(scope="module")
def api(service: LiveService) -> Iterator[httpx.Client]:
    with admin_client(service) as client:
        yield client


def _created(response: httpx.Response) -> Any:
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def world(service: LiveService, api: httpx.Client) -> dict[str, Any]:
    """A Seoul canteen with a kiosk, four people and keys made through the API; four ISO
    weeks of one person's meals and a second diner's tray written into its database."""
    canteen = _created(api.post("/v1/canteens", json={"name": "Dashboard canteen 구내식당",
                                                      "timezone": "Asia/Seoul"}))["id"]
    kiosk = _created(api.post("/v1/kiosks", json={"name": "line 1", "canteen_id": canteen}))["id"]
    users = [_created(api.post("/v1/users", json={
        "canteen_id": canteen, "display_name": name, "sex": "female", "birth_year": 1996}))["id"]
        for name in ("Kim Ji-woo", "Lee", "Park", "Choi")]
    keys = {role: _created(api.post("/v1/keys", json={
        "name": f"{role} key", "role": role, "canteen_id": canteen}))["key"]
        for role in ("kiosk", "app")}
    engine = make_engine(f"sqlite:///{service.data_dir / 'traylens.db'}")
    factory = make_session_factory(engine)
    try:
        with factory.begin() as s:
            record_image(s, sha256=SHA, kind="photo", content_type="image/jpeg",
                         size_bytes=1, width=1024, height=768)
        with factory.begin() as s:
            ids = {"canteen": canteen, "kiosk": kiosk, "user": users[0]}

            def meal(at: dt.datetime, items: list[tuple[str, float]], state: str | None = None,
                     who: str = users[0], after: list[tuple[str, float]] | None = None) -> None:
                before = stored_analysis(s, SHA, {**ids, "user": who}, at, state, items)
                if state == "before":
                    link_analysis(s, before, pair_id=None, window=WINDOW)
                if after is not None:
                    a = stored_analysis(s, SHA, {**ids, "user": who},
                                        at + dt.timedelta(minutes=25), "after", after)
                    link_analysis(s, a, pair_id=None, window=WINDOW)

            # W48: Monday's lunch tray before/after, Monday dinner, Wednesday's salty lunch
            meal(MONDAY, [(RICE, 210), (SOUP, 300), (KIMCHI, 50)], "before",
                 after=[(RICE, 30), (SOUP, 120), (KIMCHI, 50)])
            meal(MONDAY.replace(hour=19), [(RICE, 200), (KIMCHI, 40)])
            meal(MONDAY + dt.timedelta(days=2), [(KIMCHI, 500), (RICE, 210)])
            # Thursday: a photo on which no food was found (a gap, not a day of 0 kcal)
            meal(MONDAY + dt.timedelta(days=3), [])
            # earlier weeks: W47 nothing, W46 Tuesday, W45 Thursday
            meal(MONDAY - dt.timedelta(days=13), [(RICE, 300), (SOUP, 200)])
            meal(MONDAY - dt.timedelta(days=18), [(RICE, 250)])
            # Tuesday of W48: another diner's tray (soup left), and a third's open tray
            meal(MONDAY + dt.timedelta(days=1), [(SOUP, 250), (KIMCHI, 60)], "before",
                 who=users[1], after=[(SOUP, 100), (KIMCHI, 60)])
            meal(MONDAY + dt.timedelta(days=1, minutes=3), [(RICE, 200)], "before", who=users[2])
    finally:
        engine.dispose()
    return {"canteen": canteen, "user": users[0], "keys": keys}


@pytest.fixture(scope="module")
def context(chromium: Any) -> Iterator[Any]:
    with chromium_context(chromium, DESKTOP) as ctx:
        yield ctx


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A new tab; script errors and refused requests (CSP included) fail the test."""
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" and
           "Content Security Policy" in m.text else None)
    yield tab
    tab.close()
    assert not errors, f"errors on the page: {errors}"


def _open(page: Any, url: str, size: dict[str, int], state: str = "ready") -> None:
    page.set_viewport_size(size)
    page.goto(url)
    page.wait_for_selector("body[data-state]:not([data-state=busy])")
    got = page.get_attribute("body", "data-state")
    assert got == state, f"page state {got!r}: {page.inner_text('#error')}"


def _values(page: Any, figure: str) -> dict[str, Any]:
    """What a chart says it draws: {labels, series: [{key, label, unit, data}]}."""
    return dict(json.loads(page.get_attribute(f"#{figure}", "data-values")))


def _series(page: Any, figure: str) -> dict[str, list[float | None]]:
    return {s["key"]: s["data"] for s in _values(page, figure)["series"]}


def _check_drawn(page: Any, figure: str) -> None:
    """Every non-null value of the chart sits where its axis puts that value (0.5 % of the
    axis range), and the canvas is painted there."""
    datasets = page.evaluate(DRAWN, figure)
    assert datasets, f"{figure}: no chart drawn"
    values = 0
    for ds in datasets:
        for p in ds["points"]:
            if p["value"] is None:
                continue
            values += 1
            assert p["drawn"] == pytest.approx(p["value"], abs=0.005 * ds["range"]), (figure, ds)
            if p["value"] != 0 and not ds["dashed"]:
                assert p["painted"], f"{figure}: nothing painted for {ds['label']} {p}"
    assert values, f"{figure}: the chart drew no value"


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    client = page.evaluate("document.documentElement.clientWidth")
    assert width <= client <= PHONE["width"], f"page is {width} px wide in a {client} px window"
    for figure in page.eval_on_selector_all("figure.chart", "(fs) => fs.map((f) => f.id)"):
        right = page.evaluate(f"document.getElementById('{figure}').getBoundingClientRect().right")
        assert right <= client, f"{figure} reaches {right} px"


def _dashboard_url(service: LiveService, key: str, user: str) -> str:
    return f"{service.url}/dashboard#key={key}&user={user}&week={WEEK}"


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_dashboard_draws_the_apis_numbers(service: LiveService, api: httpx.Client,
                                          world: dict[str, Any], page: Any,
                                          size: dict[str, int]) -> None:
    user = world["user"]
    week = api.get(f"/v1/users/{user}/weeks/{WEEK}").json()
    trends = api.get(f"/v1/users/{user}/trends", params={"weeks": 4, "end": "2026-11-29"}).json()
    _open(page, _dashboard_url(service, service.admin_key, user), size)
    for figure in DASHBOARD_CHARTS:
        _check_drawn(page, figure)

    days = week["days"]
    assert [len(d["meals"]) for d in days] == [2, 0, 1, 1, 0, 0, 0]
    assert days[3]["meals"][0]["no_food_found"] and days[3]["totals"]["energy_kcal"] == 0
    logged = [any(not m["no_food_found"] for m in d["meals"]) for d in days]
    energy = [d["totals"]["energy_kcal"] if on else None
              for d, on in zip(days, logged, strict=True)]
    assert _series(page, "chart-days-energy")["energy_kcal"] == energy
    assert [v is not None for v in energy] == [True, False, True, False, False, False, False]
    assert "no food found on photo" in page.inner_text("#days-notes")
    assert _series(page, "chart-days-energy")["target"] == [1900] * 7  # KDRI 2020 EER
    sodium = _series(page, "chart-days-sodium")
    assert sodium["sodium_mg"] == [d["totals"]["sodium_mg"] if on else None
                                   for d, on in zip(days, logged, strict=True)]
    assert sodium["upper"] == [2300] * 7
    means = [m["pct_of_target"] for m in week["daily_means"] if m["pct_of_target"] is not None]
    assert _series(page, "chart-nutrients")["pct_of_target"] == means and len(means) > 5

    weeks = trends["weeks"]
    assert _values(page, "chart-trend-energy")["labels"] == [
        "2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    for figure, keys in [("chart-trend-energy", ["energy_kcal_per_day"]),
                         ("chart-trend-macros", ["protein_pct_energy", "fat_pct_energy",
                                                 "carbohydrate_pct_energy"]),
                         ("chart-trend-sodium", ["sodium_mg_per_day"]),
                         ("chart-trend-sugars-fibre", ["sugars_g_per_day", "fiber_g_per_day"])]:
        drawn = _series(page, figure)
        for key in keys:
            assert drawn[key] == [w[key] for w in weeks], (figure, key)
    assert weeks[2]["energy_kcal_per_day"] is None  # W47: nothing logged, a gap in the line
    directions = page.eval_on_selector_all(
        "#trend-lines tbody tr",
        "(rows) => rows.map((r) => [r.dataset.series, r.cells[3].textContent])")
    for line in trends["series"]:
        text = dict(directions)[line["series"]]
        assert text == line["direction"] or (line["direction"] is None
                                             and text.startswith("too few")), (line, text)

    left = week["habits"]["most_left_foods"]
    most_left = _values(page, "chart-most-left")
    assert most_left["labels"] == [f["name_ko"] for f in left] == [
        "된장국_감자", "배추김치", "쌀밥"]  # 120, 50 and 30 g left on Monday's tray
    assert most_left["series"][0]["data"] == [f["leftover_g"] for f in left]

    for name, evidence in week["habits"]["evidence"].items():
        item = page.locator(f"#habit-list li[data-habit='{name}']")
        assert evidence["statement"] in item.inner_text()
        shown = item.locator("code[data-meal-id]").evaluate_all(
            "(codes) => codes.map((c) => c.dataset.mealId)")
        assert shown == evidence["meal_ids"], name
    _keep_shot(page, f"dashboard-{size['width']}")
    if size is PHONE:
        _no_sideways_scroll(page)
    else:
        target = os.environ.get("TRAYLENS_DASHBOARD_SCREENSHOT")
        if target:  # the docs' picture: the first screens of the desktop page
            top = {"x": 0, "y": 0, "width": DESKTOP["width"], "height": 1500}
            _save_png(page.screenshot(full_page=True, clip=top), Path(target))


def _save_png(png: bytes, target: Path) -> None:
    # 256 colours keep the picture small
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    shot.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(target, optimize=True)


def _keep_shot(page: Any, name: str) -> None:
    """Full-page screenshots for a person to look at, when TRAYLENS_PAGE_SHOTS names a folder."""
    folder = os.environ.get("TRAYLENS_PAGE_SHOTS")
    if folder:
        _save_png(page.screenshot(full_page=True), Path(folder) / f"{name}.png")


def test_dashboard_lists_only_the_people_a_key_may_see(
        service: LiveService, world: dict[str, Any], page: Any) -> None:
    """The app key made none of the canteen's people: none is offered, nothing is drawn."""
    _open(page, f"{service.url}/dashboard#key={world['keys']['app']}", DESKTOP, state="idle")
    options = page.eval_on_selector_all("#user-select option", "(os) => os.map((o) => o.value)")
    assert options == [""] and page.locator("#report").is_hidden()


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_canteen_page_draws_the_apis_numbers(service: LiveService, api: httpx.Client,
                                             world: dict[str, Any], page: Any,
                                             size: dict[str, int]) -> None:
    canteen, dates = world["canteen"], {"start": "2026-11-23", "end": "2026-11-29"}
    by_dish = api.get(f"/v1/canteens/{canteen}/waste", params=dates).json()
    daily = api.get(f"/v1/canteens/{canteen}/waste/daily", params=dates).json()
    url = (f"{service.url}/canteen#key={world['keys']['kiosk']}&canteen={canteen}"
           f"&start={dates['start']}&end={dates['end']}")
    _open(page, url, size)
    for figure in CANTEEN_CHARTS:
        _check_drawn(page, figure)
    dishes = by_dish["dishes"]
    assert _values(page, "chart-waste-dish")["labels"] == [d["name_ko"] for d in dishes]
    assert _series(page, "chart-waste-dish")["leftover_g"] == [d["leftover_g"] for d in dishes]
    served = _series(page, "chart-served-eaten")
    assert served == {"served_g": [d["served_g"] for d in dishes],
                      "eaten_g": [d["eaten_g"] for d in dishes]}
    days = daily["days"]
    assert len(days) == 7 and daily["users"] == 4 and daily["trays"] == 2
    assert _series(page, "chart-waste-day") == {
        "leftover_g": [d["leftover_g"] for d in days],
        "leftover_pct": [d["leftover_pct"] for d in days]}
    participation = _series(page, "chart-participation")
    assert participation["diners"] == [d["diners"] for d in days] == [1, 2, 0, 0, 0, 0, 0]
    assert participation["participation_pct"] == [25.0, 50.0, 0, 0, 0, 0, 0]
    _keep_shot(page, f"canteen-{size['width']}")
    if size is PHONE:
        _no_sideways_scroll(page)


def test_canteen_page_refuses_an_app_key(service: LiveService, world: dict[str, Any],
                                         page: Any) -> None:
    url = f"{service.url}/canteen#key={world['keys']['app']}&canteen={world['canteen']}"
    _open(page, url, DESKTOP, state="error")
    assert "HTTP 403" in page.inner_text("#error")
    assert page.locator("#report").is_hidden()
