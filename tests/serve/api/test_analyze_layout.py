"""POST /v1/analyze in layout mode on composed stainless trays (model.data.traybed) with
truth: one item per filled compartment with its slot's dish and fill, empty compartments
and food off the tray not reported, a plate -> layout "not_found" and the plain items."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from model.data import traybed as tb
from model.infer.tray import EMPTY_FILL
from serve.services.layout_mode import DEFAULT_STANDARD_FILL, LAYOUT_FILL
from tests.serve.conftest import Service

SIZE = (640, 480)
FILL_TOLERANCE = 0.08  # absolute fill vs the composed truth (test bed MAE ~0.02)
APPLE = "sr28:09003"


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bed(fixtures_dir: Path) -> dict[str, Any]:
    crops = tb.load_crops(fixtures_dir, per_label=1, sets=("labelme", "maskpng", "mealtray"))
    kiosk = tb.make_kiosk(5, SIZE)
    turned = tb.pose_homography(SIZE, (25.0, -15.0), 14.0, (0.03, -0.02))
    return {"kiosk": kiosk,
            "meal": tb.make_pair(kiosk, crops, 1),
            "stray": tb.make_pair(kiosk, crops, 2, stray=True),
            "turned": tb.make_pair(kiosk, crops, 3, poses=(turned, turned))}


@pytest.fixture(scope="module")
def setup(service: Service, bed: dict[str, Any]) -> dict[str, Any]:
    c = service.canteen("layout-analyze")
    key = service.key("kiosk", c)
    kiosk = service.ok(service.client.post("/v1/kiosks", json={"name": "k"}, headers=key),
                       201)["id"]
    art: tb.Kiosk = bed["kiosk"]
    comps = [{"slot": s, "polygon": p.tolist()} for s, p in art.compartments.items()]
    service.ok(service.client.put(
        f"/v1/kiosks/{kiosk}/layout", headers=key, data={"compartments": json.dumps(comps)},
        files={"reference": ("r.jpg", jpeg(art.reference), "image/jpeg")}))
    dishes = [{"food_id": APPLE, "name": f"dish {s}", "serving_g": 100.0 + 10 * i,
               "tray_slot": s} for i, s in enumerate(art.compartments)]
    menu = service.ok(service.client.post("/v1/menus", headers=key, json={
        "date": "2026-11-30", "meal": "lunch", "dishes": dishes}), 201)
    by_slot = {d["tray_slot"]: d for d in menu["dishes"]}
    return {"key": key, "kiosk": kiosk, "menu": menu["id"], "dishes": by_slot}


def analyze(service: Service, setup: dict[str, Any], image: bytes, **data: str) -> Any:
    return service.ok(service.client.post(
        "/v1/analyze", files={"image": ("t.jpg", image, "image/jpeg")}, headers=setup["key"],
        data={"kiosk_id": setup["kiosk"], **data}), 201)


def check_compartments(body: dict[str, Any], shot: tb.TrayShot, setup: dict[str, Any],
                       scale: float = 1.0) -> None:
    assert body["layout"] == "registered"
    slotted = {i["tray_slot"]: i for i in body["items"] if i["tray_slot"] is not None}
    served = {s for s, f in shot.fill.items() if f >= 2 * EMPTY_FILL}
    empty = {s for s in setup["dishes"] if shot.fill.get(s, 0.0) == 0.0}
    assert served <= set(slotted), (served, sorted(slotted))
    assert not empty & set(slotted), (empty, sorted(slotted))
    for slot, item in slotted.items():
        truth = shot.fill.get(slot, 0.0)
        assert abs(item["fill"] - truth) <= FILL_TOLERANCE, (slot, item["fill"], truth)
        dish = setup["dishes"][slot]
        assert item["menu_dish_id"] == dish["id"] and item["identified_by"] == "menu"
        assert item["grams"]["source"] == LAYOUT_FILL
        expected = dish["serving_g"] * item["fill"] / DEFAULT_STANDARD_FILL
        assert item["grams"]["value"] == pytest.approx(expected, abs=0.2)
        assert item["grams"]["low"] < item["grams"]["value"] < item["grams"]["high"]
        # The item's outline lies in its compartment (photo px).
        x0, y0, x1, y1 = item["box"]
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) / scale
        poly = shot.polygons[slot].astype(np.float32)
        assert cv2.pointPolygonTest(poly, (float(centre[0]), float(centre[1])), True) > -3


def test_one_item_per_filled_compartment(service: Service, setup: dict[str, Any],
                                         bed: dict[str, Any]) -> None:
    shot = bed["meal"].before
    body = analyze(service, setup, jpeg(shot.image), menu_id=setup["menu"])
    check_compartments(body, shot, setup)
    stored = service.ok(service.client.get(f"/v1/analyses/{body['id']}", headers=setup["key"]))
    assert stored["layout"] == "registered"
    assert [i["fill"] for i in stored["items"]] == [i["fill"] for i in body["items"]]


def test_after_the_meal_fills_drop(service: Service, setup: dict[str, Any],
                                   bed: dict[str, Any]) -> None:
    check_compartments(analyze(service, setup, jpeg(bed["meal"].after.image),
                               menu_id=setup["menu"]), bed["meal"].after, setup)


def test_a_turned_and_shifted_tray_is_registered(service: Service, setup: dict[str, Any],
                                                 bed: dict[str, Any]) -> None:
    shot = bed["turned"].before
    check_compartments(analyze(service, setup, jpeg(shot.image), menu_id=setup["menu"]),
                       shot, setup)


def test_a_large_photo_decoded_reduced_answers_in_its_own_pixels(
        service: Service, setup: dict[str, Any], bed: dict[str, Any]) -> None:
    shot = bed["meal"].before
    big = cv2.resize(shot.image, (SIZE[0] * 2, SIZE[1] * 2), interpolation=cv2.INTER_LINEAR)
    body = analyze(service, setup, jpeg(big), menu_id=setup["menu"])
    assert max(max(i["box"]) for i in body["items"]) > SIZE[0]  # full-photo pixels
    check_compartments(body, shot, setup, scale=2.0)


def test_food_off_the_tray_is_not_reported(service: Service, setup: dict[str, Any],
                                           bed: dict[str, Any]) -> None:
    shot = bed["stray"].before
    assert shot.stray_mask.any(), "the test bed dropped no food off the tray"
    body = analyze(service, setup, jpeg(shot.image))
    assert body["layout"] == "registered"
    off = cv2.dilate(shot.stray_mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    for item in body["items"]:
        x0, y0, x1, y1 = item["box"]
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        assert not off[min(cy, SIZE[1] - 1), min(cx, SIZE[0] - 1)], item
    # Without a menu the compartment items still carry slot and fill (identity by model).
    assert any(i["tray_slot"] for i in body["items"])
    assert all(i["identified_by"] != "menu" for i in body["items"])


def test_a_plate_is_not_found_and_falls_back_to_the_detector(
        service: Service, setup: dict[str, Any], photo_bytes: dict[str, bytes]) -> None:
    body = analyze(service, setup, photo_bytes["apple"])
    assert body["layout"] == "not_found"
    plain = service.ok(service.client.post(
        "/v1/analyze", files={"image": ("t.jpg", photo_bytes["apple"], "image/jpeg")},
        headers=setup["key"]), 201)
    assert plain["layout"] is None
    assert [i["label"] for i in body["items"]] == [i["label"] for i in plain["items"]]
    assert all(i["tray_slot"] is None and i["fill"] is None for i in body["items"])


# --- learned standard fill --------------------------------------------------------------


def test_enrolling_a_layout_item_teaches_its_dish_the_standard_fill(
        service: Service, setup: dict[str, Any], bed: dict[str, Any],
        photo_bytes: dict[str, bytes]) -> None:
    art: tb.Kiosk = bed["kiosk"]
    dishes = [{"food_id": APPLE, "name": f"learned {s}", "serving_g": 150.0, "tray_slot": s}
              for s in art.compartments]
    menu = service.ok(service.client.post("/v1/menus", headers=setup["key"], json={
        "date": "2026-12-01", "meal": "lunch", "dishes": dishes}), 201)
    by_slot = {d["tray_slot"]: d for d in menu["dishes"]}
    photo = jpeg(bed["meal"].before.image)
    first = analyze(service, setup, photo, menu_id=menu["id"])
    taught, other = sorted((i for i in first["items"] if i["fill"] >= 0.1),
                           key=lambda i: i["tray_slot"])[:2]
    dish = by_slot[taught["tray_slot"]]
    url = f"/v1/menus/{menu['id']}/dishes/{dish['id']}/enrolments"
    # A photo upload carries no fill: it does not count.
    upload = service.ok(service.client.post(url, headers=setup["key"], files={
        "image": ("a.jpg", photo_bytes["apple"], "image/jpeg")}), 201)
    assert upload["fill"] is None
    again = analyze(service, setup, photo, menu_id=menu["id"])
    same = {i["tray_slot"]: i for i in again["items"]}[taught["tray_slot"]]
    # Still the default 0.6 (the fill is measured again, from this kiosk's last pose: it
    # may differ in the third decimal).
    assert same["grams"]["value"] == pytest.approx(150.0 * same["fill"] / DEFAULT_STANDARD_FILL,
                                                   abs=0.1)
    # The analysed item itself, enrolled as its slot's dish: its fill is the standard.
    enrolled = service.ok(service.client.post(url, headers=setup["key"], json={
        "analysis_id": first["id"], "item_id": taught["id"]}), 201)
    assert enrolled["fill"] == pytest.approx(taught["fill"])
    learned = analyze(service, setup, photo, menu_id=menu["id"])
    items = {i["tray_slot"]: i for i in learned["items"]}
    item = items[taught["tray_slot"]]
    fill, std = item["fill"], taught["fill"]
    # By hand: the same serving photographed again weighs one standard serving, 150 g (its
    # fill, measured again, within a few thousandths of the enrolled one).
    assert fill == pytest.approx(std, abs=0.01)
    assert item["grams"]["value"] == pytest.approx(150.0 * fill / std, abs=0.1)
    assert item["grams"]["value"] == pytest.approx(150.0, abs=3.0)
    assert item["grams"]["source"] == LAYOUT_FILL
    # One example: spread = std x 25% (the default's 0.15 / 0.6), at least 0.05.
    spread = min(max(std * 0.25, 0.05), std / 2)
    assert item["grams"]["low"] == pytest.approx(150.0 * (fill - 0.05) / (std + spread), abs=0.1)
    assert item["grams"]["high"] == pytest.approx(150.0 * (fill + 0.05) / (std - spread), abs=0.1)
    # The other slots' dishes have no enrolled fill: still the default.
    untaught = items[other["tray_slot"]]
    assert untaught["grams"]["value"] == pytest.approx(
        150.0 * untaught["fill"] / DEFAULT_STANDARD_FILL, abs=0.1)


def test_standard_fill_rule() -> None:
    from serve.services.layout_mode import STANDARD_FILL_SPREAD, standard_fill
    assert standard_fill([]) == (DEFAULT_STANDARD_FILL, STANDARD_FILL_SPREAD)
    std, spread = standard_fill([0.4])
    assert std == pytest.approx(0.4) and spread == pytest.approx(0.1)  # 25% of 0.4
    std, spread = standard_fill([0.3, 0.5, 0.45, 0.35])
    assert std == pytest.approx(0.4) and spread == pytest.approx(0.05)  # 0.4 x 25% / 2
    std, spread = standard_fill([0.02])  # a crumb enrolled is no standard serving
    assert std == pytest.approx(0.1) and spread == pytest.approx(0.05)


def test_pose_memory_scales_with_the_photo_and_forgets_an_old_reference() -> None:
    from serve.services.layouts import PoseMemory
    memory = PoseMemory(2)
    ref_a, ref_b = object(), object()
    hom = np.array([[1.0, 0, 10], [0, 1, 20], [0, 0, 1]])
    memory.put("k", ref_a, hom, (640, 480))  # type: ignore[arg-type]
    twice = memory.get("k", ref_a, (1280, 960))  # type: ignore[arg-type]
    assert twice is not None and np.allclose(twice, np.diag([2.0, 2.0, 1.0]) @ hom)
    assert memory.get("k", ref_b, (640, 480)) is None  # type: ignore[arg-type]
    for kiosk in ("x", "y"):
        memory.put(kiosk, ref_a, hom, (640, 480))  # type: ignore[arg-type]
    assert memory.get("k", ref_a, (640, 480)) is None  # type: ignore[arg-type]
