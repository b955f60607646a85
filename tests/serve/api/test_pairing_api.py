"""Before/after pairs over HTTP on SQLite and PostgreSQL, by place and appearance: real photos
through /v1/analyze with a synthetic "after" (part of a food painted out with the plate, the
whole photo turned and shifted), plus stored analyses for layout slots and extra items."""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from benchmarks.pairing import keep_share, move, paint_out, table_colour
from model.infer.images import load_image
from model.infer.runtime import full_item_mask
from serve.db.tables.analyses import Analysis
from serve.services.model_registry import LoadedModel
from serve.services.pipeline import stored_embedding
from tests.serve.api.test_menus import Api, make_api
from tests.serve.api.test_pairs import _setup
from tests.serve.conftest import Service
from tests.serve.services.test_diary import KIMCHI, LUNCH, RICE, SOUP, stored_analysis

PHOTOS = Path(__file__).resolve().parents[2] / "fixtures" / "ecustfd" / "JPEGImages"
TURN, SHIFT = 10.0, (40, 25)
# Measured with the shipped model 1.4.0 through the service (tests/serve/services/
# test_matching.py measured 0.70 -> 0.70-0.72, 0.50 -> 0.52-0.61 on predict() directly).
AREA_TOLERANCE = 0.12


@pytest.fixture
def api(service: Service) -> Api:
    """A fresh pair of tenants per test."""
    return make_api(service)


@dataclass(frozen=True)
class Case:
    """A real before photo, its synthetic after photo and the eaten food's truth."""

    before: bytes
    after: bytes
    food: str  # the model's label of the food partly eaten
    true_left: float


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_case(model: LoadedModel, photo: str, food: str, left: float, angle: float) -> Case:
    """Eat all but `left` of `food` (cut at `angle`), then turn and shift the whole tray."""
    img = load_image(PHOTOS / photo)
    items = model.model.predict([img])[0].items
    mask = full_item_mask(next(it for it in items if it.label == food), img.size)
    keep = keep_share(mask, left, angle)
    eaten, cut = paint_out(img, [mask], [keep])
    after = move(eaten, TURN, SHIFT, table_colour(img))
    return Case((PHOTOS / photo).read_bytes(), _jpeg(after), food,
                float((mask & ~cut).sum() / mask.sum()))


def _analyze(api: Api, ids: dict[str, str], data: bytes, state: str, at: str) -> Any:
    r = api.call("kiosk_a", "POST", "/v1/analyze",
                 files={"image": ("tray.jpg", data, "image/jpeg")},
                 data={"kiosk_id": ids["kiosk"], "user_id": ids["user"], "meal_state": state,
                       "captured_at": at})
    assert r.status_code == 201, r.text
    return r.json()


def _pair(api: Api, fixtures_dir: Any, model: LoadedModel, food: str, left: float
          ) -> tuple[Case, Any, Any, str]:
    """Eat from mix001T(1) (coin, apple, orange), analyse both photos (auto-paired by user +
    kiosk): the case, the before and after analyses, the pair id."""
    ids = _setup(api, fixtures_dir)
    case = make_case(model, "mix001T(1).JPG", food, left, 90.0)
    before = _analyze(api, ids, case.before, "before", "2026-11-23T03:05:00Z")
    after = _analyze(api, ids, case.after, "after", "2026-11-23T03:30:00Z")
    assert after["pair_id"] == before["pair_id"] is not None
    return case, before, after, before["pair_id"]


def _result(api: Api, pair: str) -> Any:
    r = api.call("kiosk_a", "GET", f"/v1/pairs/{pair}")
    assert r.status_code == 200, r.text
    return r.json()["result"]


def _by_class(analysis: Any) -> dict[str, Any]:
    """Items by the model's top class, their first alternative: the open-set check may leave
    a region "unidentified" (since 1.6.1 both fixture foods at times), and pairing goes by
    place and appearance, never by name."""
    return {i["alternatives"][0]["label"]: i for i in analysis["items"]}


def _food(item: Any) -> str:
    """The food id of the item's top class (its own when named)."""
    return str(item["alternatives"][0]["food_id"])


@pytest.mark.slow
def test_moved_tray_pairs_and_leftover_is_the_area_ratio(
        api: Api, fixtures_dir: Any, loaded_model: LoadedModel) -> None:
    case, before, after, pair = _pair(api, fixtures_dir, loaded_model, "orange", 0.7)
    res = _result(api, pair)
    b, a = _by_class(before), _by_class(after)
    assert set(b) == set(a) == {"apple", "orange"}  # the coin is the scale, not an item
    items = {i["before_ref"]: i for i in res["items"]}
    assert len(res["items"]) == 2  # no unmatched after region
    # an untouched dish's mask may measure a little larger after: clipped and flagged
    assert all(set(i["flags"]) <= {"after_exceeds_before"} for i in res["items"])
    for label in b:  # every dish found its own after region although the tray moved
        assert items[b[label]["id"]]["after_ref"] == a[label]["id"]
        assert items[b[label]["id"]]["method"] == "appearance"
        assert items[b[label]["id"]]["measure"] == "area"
    orange = items[b["orange"]["id"]]
    assert orange["leftover_fraction"] == pytest.approx(case.true_left, abs=AREA_TOLERANCE)
    served = b["orange"]["grams"]["value"]
    assert orange["served_g"] == served and orange["before_g"] == served
    assert orange["leftover_g"] == pytest.approx(served * orange["leftover_fraction"], abs=0.1)
    assert orange["eaten_g"] == pytest.approx(served - orange["leftover_g"], abs=0.1)
    assert items[b["apple"]["id"]]["leftover_fraction"] == pytest.approx(1.0, abs=0.1)
    assert res["served_g"] == pytest.approx(sum(i["served_g"] for i in res["items"]), abs=0.1)

    # renamed in the after photo (here by a correction): the pair keeps the before dish
    apple_food = _food(b["apple"])
    r = api.call("kiosk_a", "PATCH", f"/v1/analyses/{after['id']}/items/{a['orange']['id']}",
                 json={"food_id": apple_food})
    assert r.status_code == 200, r.text
    renamed = {i["before_ref"]: i for i in _result(api, pair)["items"]}[b["orange"]["id"]]
    assert renamed["after_ref"] == a["orange"]["id"] and renamed["after_food_id"] == apple_food
    assert renamed["food_id"] == b["orange"]["food_id"] and renamed["flags"] == ["relabelled"]
    assert renamed["leftover_fraction"] == orange["leftover_fraction"]

    # corrections of the before item: grams scale what was served, food names the dish
    r = api.call("kiosk_a", "PATCH", f"/v1/analyses/{before['id']}/items/{b['orange']['id']}",
                 json={"grams": 200.0, "food_id": KIMCHI})
    assert r.status_code == 200, r.text
    fixed = {i["before_ref"]: i for i in _result(api, pair)["items"]}[b["orange"]["id"]]
    assert (fixed["served_g"], fixed["food_id"]) == (200.0, KIMCHI)
    assert fixed["leftover_g"] == pytest.approx(200.0 * orange["leftover_fraction"], abs=0.1)


@pytest.mark.slow
def test_removed_dish_is_fully_eaten_and_a_same_food_item_is_not_it(
        api: Api, fixtures_dir: Any, loaded_model: LoadedModel) -> None:
    _, before, after, pair = _pair(api, fixtures_dir, loaded_model, "apple", 0.0)
    b, a = _by_class(before), _by_class(after)
    assert "apple" not in a and set(a) == {"orange"}
    # the orange in the after photo is given the apple's food (the bread-roll case: a
    # matcher by name would take it for the apple and call the orange fully eaten)
    r = api.call("kiosk_a", "PATCH", f"/v1/analyses/{after['id']}/items/{a['orange']['id']}",
                 json={"food_id": _food(b["apple"])})
    assert r.status_code == 200, r.text
    res = _result(api, pair)
    items = {i["before_ref"]: i for i in res["items"]}
    apple = items[b["apple"]["id"]]
    assert apple["flags"] == ["fully_eaten"] and apple["after_ref"] is None
    assert (apple["leftover_fraction"], apple["leftover_g"], apple["method"]) == (0.0, 0.0,
                                                                                  "none")
    assert apple["eaten_g"] == apple["served_g"] == b["apple"]["grams"]["value"]
    orange = items[b["orange"]["id"]]
    assert orange["after_ref"] == a["orange"]["id"] and "relabelled" in orange["flags"]
    assert orange["food_id"] == b["orange"]["food_id"]
    assert not any("unmatched_after" in i["flags"] for i in res["items"])


def _emb(k: int, dim: int = 64) -> list[float]:
    vec = np.zeros(dim)
    vec[k] = 1.0
    return stored_embedding(vec) or []


def _stored_pair(api: Api, ids: dict[str, str], before_items: list[tuple[str, float]],
                 after_items: list[tuple[str, float]], edit: Any) -> str:
    """Two stored analyses (via the service layer), `edit(before, after)` applied, paired."""
    with api.session_factory().begin() as s:
        b = stored_analysis(s, ids["sha"], ids, LUNCH, "before", before_items)
        a = stored_analysis(s, ids["sha"], ids, LUNCH + dt.timedelta(minutes=25), "after",
                            after_items)
        edit(b, a)
        b_id, a_id = b.id, a.id
    r = api.call("kiosk_a", "POST", "/v1/pairs", json={"before_analysis_id": b_id,
                                                       "after_analysis_id": a_id})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_extra_after_region_is_listed_not_counted(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir)

    def edit(b: Analysis, a: Analysis) -> None:
        for item, look in zip([*b.items, *a.items], (0, 1, 0, 1, 2), strict=True):
            item.embedding = _emb(look)  # rice, soup; rice, soup, cake
        a.items[2].box = [700.0, 500.0, 900.0, 700.0]  # a cake brought along, elsewhere

    pair = _stored_pair(api, ids, [(RICE, 210), (SOUP, 300)],
                        [(RICE, 30), (SOUP, 120), ("n5k:54", 80)], edit)
    res = _result(api, pair)
    rice, soup, cake = res["items"]
    assert (rice["leftover_g"], soup["leftover_g"]) == (30.0, 120.0)
    assert rice["method"] == soup["method"] == "appearance"
    assert cake["flags"] == ["unmatched_after"] and cake["before_ref"] is None
    assert (cake["served_g"], cake["eaten_g"], cake["leftover_fraction"]) == (0.0, 0.0, None)
    assert (res["served_g"], res["eaten_g"], res["leftover_g"]) == (510.0, 360.0, 150.0)
    # rice 180 g x 1.66 + soup 180 g x 0.25 kcal: the cake is not intake
    assert res["eaten_nutrients"]["energy_kcal"] == pytest.approx(343.8)


def test_layout_mode_pairs_by_slot(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir)

    def edit(b: Analysis, a: Analysis) -> None:
        b.layout = a.layout = "registered"
        for item, slot, fill in zip(b.items, "ABC", (0.8, 0.9, 0.5), strict=True):
            item.tray_slot, item.fill = slot, fill
        # the after photo names the rice soup and vice versa, and lies elsewhere: the slots
        # decide; compartment C was read empty (fill 0)
        for item, slot, fill in zip(a.items, "BAC", (0.45, 0.2, 0.0), strict=True):
            item.tray_slot, item.fill = slot, fill
            item.box = [600.0, 400.0, 700.0, 500.0]

    pair = _stored_pair(api, ids, [(RICE, 210), (SOUP, 300), (KIMCHI, 50)],
                        [(RICE, 999), (SOUP, 1), (KIMCHI, 0)], edit)
    rice, soup, kimchi = _result(api, pair)["items"]
    assert all(i["method"] == "slot" and i["measure"] == "fill"
               for i in (rice, soup, kimchi))
    assert (rice["food_id"], rice["leftover_fraction"], rice["leftover_g"]) == (RICE, 0.25, 52.5)
    assert (soup["food_id"], soup["leftover_fraction"], soup["leftover_g"]) == (SOUP, 0.5, 150.0)
    assert kimchi["flags"] == ["fully_eaten"] and kimchi["eaten_g"] == 50.0


def test_legacy_items_without_embedding_pair_by_place(api: Api, fixtures_dir: Any) -> None:
    ids = _setup(api, fixtures_dir)

    def edit(b: Analysis, a: Analysis) -> None:
        for item in a.items:  # the after tray was put back 40 px to the right
            item.box = [item.box[0] + 40, item.box[1], item.box[2] + 40, item.box[3]]

    pair = _stored_pair(api, ids, [(RICE, 210), (SOUP, 300)], [(RICE, 30), (SOUP, 120)], edit)
    items = _result(api, pair)["items"]
    assert [(i["food_id"], i["method"], i["leftover_g"]) for i in items] == [
        (RICE, "position", 30.0), (SOUP, "position", 120.0)]
    assert all(0.45 < i["match_score"] <= 1 and i["flags"] == [] for i in items)
