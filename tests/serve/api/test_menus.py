"""The canteen routes over HTTP (menus, dishes, enrolment, kiosks, pairs, diary, waste) on
SQLite and PostgreSQL, with real photos, real nutrient values and every role's scoping."""
from __future__ import annotations

import datetime as dt
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from model.data.importers.ecustfd import read_voc
from model.data.importers.mealtray import read_names, read_yolo
from model.infer.geometry import pair_iou
from model.infer.images import load_image
from model.infer.refine import MODEL_MASKS, REFINED_MASKS
from serve.core.auth import Principal
from serve.core.storage import LocalImageStore, purge_expired
from serve.db.tables.core import Role, StoredImage
from serve.db.tables.menus import Enrolment, Menu
from serve.services.enrolment import Refresh, refresh_enrolments
from serve.services.menus import identify, load_menu_context, menu_context
from tests.serve.conftest import DEV_MODEL, MEALTRAY, Service
from tests.serve.services.test_diary import KIMCHI, RICE, SOUP

APPLE, KIWI, DOUGHNUT = "kfct:사과, 생것", "kfct:키위, 그린, 생것", "mfds:D102-082120000-0001"


@dataclass
class Api:
    """The module's running app (tests/serve/conftest.py) with two fresh canteens and a key
    per role: canteen A's kiosk and app keys, canteen B's kiosk key, and the admin."""

    service: Service
    canteen_a: str
    canteen_b: str
    keys: dict[str, dict[str, str]]

    @property
    def client(self) -> TestClient:
        """The app's test client."""
        return self.service.client

    def call(self, who: str, method: str, url: str, **kw: Any) -> Any:
        """A request as one of admin, kiosk_a, app_a, kiosk_b."""
        return self.client.request(method, url, headers=self.keys[who], **kw)

    def session_factory(self) -> sessionmaker[Session]:
        """The running app's session factory."""
        factory: sessionmaker[Session] = self.client.app.state.session_factory  # type: ignore[attr-defined]
        return factory


def make_api(service: Service) -> Api:
    """Two new canteens (A in Seoul time) and their keys, on the module's app."""
    a = service.ok(service.client.post("/v1/canteens", headers=service.admin, json={
        "name": f"A-{uuid.uuid4().hex[:6]}", "timezone": "Asia/Seoul"}), 201)["id"]
    b = service.canteen("B")
    keys = {"admin": service.admin, "kiosk_a": service.key("kiosk", a),
            "app_a": service.key("app", a), "kiosk_b": service.key("kiosk", b)}
    return Api(service, a, b, keys)


@pytest.fixture
def api(service: Service) -> Api:
    """A fresh pair of tenants per test."""
    return make_api(service)


# --- kiosks -----------------------------------------------------------------------------


def test_kiosk_register_and_calibrate(api: Api) -> None:
    r = api.call("kiosk_a", "POST", "/v1/kiosks", json={"name": "line 1"})
    assert r.status_code == 201, r.text
    kiosk = r.json()
    assert kiosk["canteen_id"] == api.canteen_a and kiosk["px_per_cm"] is None
    # a 53.0 x 37.0 cm tray spanning 1060 x 740 px: 20.0 px/cm both ways
    r = api.call("kiosk_a", "PUT", f"/v1/kiosks/{kiosk['id']}/calibration",
                 json={"tray_box_px": [100, 50, 1160, 790], "tray_width_cm": 53.0,
                       "tray_height_cm": 37.0, "camera_height_cm": 60, "tray_template": "6-slot"})
    assert r.status_code == 200, r.text
    assert r.json()["px_per_cm"] == 20.0 and r.json()["calibrated_at"] is not None
    assert api.call("kiosk_a", "GET", f"/v1/kiosks/{kiosk['id']}").json()["px_per_cm"] == 20.0
    assert [k["id"] for k in api.call("kiosk_a", "GET", "/v1/kiosks").json()] == [kiosk["id"]]
    assert api.call("kiosk_b", "GET", "/v1/kiosks").json() == []
    assert kiosk["id"] in [k["id"] for k in api.call("admin", "GET", "/v1/kiosks").json()]


@pytest.mark.parametrize("body", [
    {"tray_box_px": [0, 0, 1060, 900], "tray_width_cm": 53, "tray_height_cm": 37},  # skewed
    {"px_per_cm": 20, "tray_box_px": [0, 0, 10, 10], "tray_width_cm": 1, "tray_height_cm": 1},
    {"tray_box_px": [0, 0, 100, 100]},  # sizes missing
    {"px_per_cm": -3},
    {"px_per_cm": 20, "surprise": 1},
])
def test_kiosk_bad_calibration_is_422(api: Api, body: dict[str, Any]) -> None:
    kiosk = api.call("kiosk_a", "POST", "/v1/kiosks", json={"name": "k"}).json()
    r = api.call("kiosk_a", "PUT", f"/v1/kiosks/{kiosk['id']}/calibration", json=body)
    assert r.status_code == 422 and r.json()["detail"], r.text


def test_kiosk_scoping(api: Api) -> None:
    kiosk = api.call("kiosk_a", "POST", "/v1/kiosks", json={"name": "line 1"}).json()
    assert api.call("kiosk_a", "POST", "/v1/kiosks", json={"name": "line 1"}).status_code == 409
    assert api.call("kiosk_b", "GET", f"/v1/kiosks/{kiosk['id']}").status_code == 404
    assert api.call("kiosk_b", "PUT", f"/v1/kiosks/{kiosk['id']}/calibration",
                    json={"px_per_cm": 9}).status_code == 404
    assert api.call("app_a", "GET", f"/v1/kiosks/{kiosk['id']}").status_code == 403
    assert api.call("app_a", "POST", "/v1/kiosks", json={"name": "x"}).status_code == 403
    assert api.call("admin", "GET", f"/v1/kiosks/{kiosk['id']}").status_code == 200
    r = api.call("admin", "GET", "/v1/kiosks/nope")
    assert r.status_code == 404 and r.json() == {"error": "not_found",
                                                 "detail": "no kiosk with id 'nope'"}
    assert api.call("admin", "POST", "/v1/kiosks", json={"name": "x"}).status_code == 422
    assert api.client.get("/v1/kiosks").status_code == 401


# --- menus and dishes -------------------------------------------------------------------


def _menu(api: Api, who: str = "kiosk_a", **extra: Any) -> dict[str, Any]:
    """A lunch menu of rice, soup and kimchi on 2026-11-23."""
    body = {"date": "2026-11-23", "meal": "lunch", "name": "Monday lunch",
            "dishes": [{"food_id": RICE, "serving_g": 210, "tray_slot": "A"},
                       {"food_id": SOUP}, {"food_id": KIMCHI, "serving_g": 50}], **extra}
    r = api.call(who, "POST", "/v1/menus", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_menu_crud(api: Api) -> None:
    menu = _menu(api)
    assert [d["food_id"] for d in menu["dishes"]] == [RICE, SOUP, KIMCHI]
    # 된장국_감자's typical serving in the MFDS table is 400 g; its name comes from the table
    assert menu["dishes"][1]["serving_g"] == 400 and menu["dishes"][1]["name"] == "된장국_감자"
    assert api.call("kiosk_a", "POST", "/v1/menus", json={
        "date": "2026-11-23", "meal": "lunch"}).status_code == 409
    listed = api.call("app_a", "GET", "/v1/menus", params={"date": "2026-11-23"}).json()
    assert [m["id"] for m in listed] == [menu["id"]]
    assert api.call("kiosk_a", "GET", "/v1/menus", params={"meal": "dinner"}).json() == []
    r = api.call("kiosk_a", "POST", f"/v1/menus/{menu['id']}/dishes",
                 json={"food_id": KIMCHI, "serving_g": 30, "name": "깍두기 대신 김치"})
    assert r.status_code == 201 and r.json()["position"] == 3
    assert api.call("kiosk_a", "DELETE",
                    f"/v1/menus/{menu['id']}/dishes/{r.json()['id']}").status_code == 204
    assert len(api.call("kiosk_a", "GET", f"/v1/menus/{menu['id']}").json()["dishes"]) == 3
    assert api.call("kiosk_a", "DELETE", f"/v1/menus/{menu['id']}").status_code == 204
    assert api.call("kiosk_a", "GET", f"/v1/menus/{menu['id']}").status_code == 404


def test_menu_bad_input(api: Api) -> None:
    r = api.call("kiosk_a", "POST", "/v1/menus", json={
        "date": "2026-11-23", "meal": "lunch", "dishes": [{"food_id": "mfds:nope"}]})
    assert r.status_code == 422 and r.json()["error"] == "unknown_food"
    # 쌀밥 (D501) has no typical serving in the table: the dish must say how much
    r = api.call("kiosk_a", "POST", "/v1/menus", json={
        "date": "2026-11-23", "meal": "lunch",
        "dishes": [{"food_id": "mfds:D501-022000000-0001"}]})
    assert r.status_code == 422 and r.json()["error"] == "serving_required"
    assert api.call("kiosk_a", "GET", "/v1/menus", params={"date": "2026-13-01"}
                    ).status_code == 422
    for body in ({"date": "2026-11-23", "meal": "brunch"}, {"date": "x", "meal": "lunch"},
                 {"date": "2026-11-23", "meal": "lunch", "dishes": [{"food_id": RICE,
                                                                     "serving_g": 0}]}):
        assert api.call("kiosk_a", "POST", "/v1/menus", json=body).status_code == 422


def test_menu_scoping(api: Api) -> None:
    menu = _menu(api)
    url = f"/v1/menus/{menu['id']}"
    assert api.call("kiosk_b", "GET", url).status_code == 404
    assert api.call("kiosk_b", "DELETE", url).status_code == 404
    assert api.call("kiosk_b", "POST", f"{url}/dishes", json={"food_id": RICE,
                                                              "serving_g": 1}).status_code == 404
    assert api.call("kiosk_b", "GET", "/v1/menus").json() == []
    assert api.call("app_a", "GET", url).status_code == 200  # apps read their canteen's menus
    assert api.call("app_a", "DELETE", url).status_code == 403
    assert api.call("app_a", "POST", "/v1/menus", json={
        "date": "2026-11-24", "meal": "lunch"}).status_code == 403
    other = _menu(api, "admin", canteen_id=api.canteen_b)
    assert other["canteen_id"] == api.canteen_b
    assert api.call("kiosk_a", "GET", f"/v1/menus/{other['id']}").status_code == 404
    assert api.call("kiosk_a", "GET", f"{url}/dishes/nope/enrolments").status_code == 404


# --- enrolment and menu-mode identification ---------------------------------------------

FRUIT_MENU = [("apple", APPLE, 150.0), ("qiwi", KIWI, 80.0), ("doughnut", DOUGHNUT, None)]
ENROL_OBJECTS = {"apple": ("001", "002", "004"), "qiwi": ("001", "002", "003"),
                 "doughnut": ("001", "002", "003")}
# Four objects per dish that are not enrolled (first photo of each). Not qiwi007T(3): its
# annotated qiwi box lies on the coin.
QUERIES = {"apple": ("apple003T(1)", "apple006T(1)", "apple007T(1)", "apple008T(1)"),
           "qiwi": ("qiwi004T(1)", "qiwi006T(1)", "qiwi007T(1)", "qiwi008T(1)"),
           "doughnut": ("doughnut004T(1)", "doughnut006T(1)", "doughnut007T(1)",
                        "doughnut008T(1)")}


def food_box(xml: Path, food: str) -> list[float]:
    """The annotated box of the food in an ECUSTFD photo, checked clear of the coin (a few
    ECUSTFD boxes are misplaced; a coin crop would test nothing)."""
    objects = read_voc(xml)[3]
    box = next(b for name, b in objects if name == food)
    coins = [b for name, b in objects if name == "coin"]
    assert all(pair_iou((box[0], box[1], box[2], box[3]), (c[0], c[1], c[2], c[3])) == 0
               for c in coins), f"{xml.name}: the food box lies on the coin"
    return box


def _fruit_menu(api: Api) -> dict[str, Any]:
    """A menu of apple, kiwi and doughnut: none is a model class, so only enrolment tells."""
    dishes = [{"food_id": f, **({"serving_g": g} if g else {})} for _, f, g in FRUIT_MENU]
    r = api.call("kiosk_a", "POST", "/v1/menus",
                 json={"date": "2026-11-24", "meal": "dinner", "dishes": dishes})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _enrol(api: Api, menu: dict[str, Any], dish: int, photo: Path, **form: Any) -> Any:
    """POST one example photo (multipart) for the menu's n-th dish."""
    files: dict[str, Any] = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    if "mask" in form:
        files["mask"] = ("mask.png", form.pop("mask"), "image/png")
    url = f"/v1/menus/{menu['id']}/dishes/{menu['dishes'][dish]['id']}/enrolments"
    return api.call("kiosk_a", "POST", url, files=files, data=form)


def _trained_model(api: Api, why: str) -> Any:
    """The app's model, which must be a trained one (carrying its evaluation metrics), since
    what is checked needs a trained network. Only the untrained development model, used when
    no shipped model exists (tests/serve/conftest.py), skips; any other model without
    metrics (a shipped file that lost them) fails."""
    loaded = api.client.app.state.models.active  # type: ignore[attr-defined]
    if Path(loaded.path).resolve() == DEV_MODEL.resolve():
        pytest.skip(f"the untrained development model {DEV_MODEL} is in use: {why}")
    assert loaded.model.meta.metrics, (
        f"model {loaded.version} ({loaded.path}) carries no evaluation metrics: {why}")
    return loaded


def _enrol_fruit(api: Api, shared_data: Path) -> dict[str, Any]:
    """The fruit menu with 3 ECUSTFD objects enrolled per dish (box from the annotation)."""
    menu = _fruit_menu(api)
    root = shared_data / "images" / "ecustfd"
    for n, (food, _, _) in enumerate(FRUIT_MENU):
        for obj in ENROL_OBJECTS[food]:
            stem = f"{food}{obj}T(1)"
            box = food_box(root / "Annotations" / f"{stem}.xml", food)
            r = _enrol(api, menu, n, root / "JPEGImages" / f"{stem}.JPG",
                       box=",".join(str(v) for v in box))
            assert r.status_code == 201, r.text
            assert r.json()["region"] == "box" and r.json()["area_px"] > 0
    return menu


def test_enrol_three_photos_per_dish_then_identify(api: Api, shared_data: Path) -> None:
    # Measured: an untrained network's region embeddings all lie within cosine ~0.99 of each
    # other, so nearest-example ranking is near chance; the trained model is what is judged.
    model = _trained_model(api, "embedding identification needs the trained model")
    menu = _enrol_fruit(api, shared_data)
    listed = api.call("app_a", "GET", f"/v1/menus/{menu['id']}").json()
    assert [len(d["enrolments"]) for d in listed["dishes"]] == [3, 3, 3]
    with api.client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        row = session.get(Menu, menu["id"])
        ctx = menu_context(row, model_food_ids=model.model.meta.food_ids,
                           model_version=model.version, masks=MODEL_MASKS)
    root = shared_data / "images" / "ecustfd"
    for food, expected in zip(QUERIES, (APPLE, KIWI, DOUGHNUT), strict=True):
        hits = []
        for stem in QUERIES[food]:
            box = food_box(root / "Annotations" / f"{stem}.xml", food)
            img = load_image(root / "JPEGImages" / f"{stem}.JPG")
            found = identify(ctx, model.model.embed_regions(img, boxes=[box])[0], None)
            assert found.source == "embedding"  # no dish is a model class: enrolment decides
            hits.append(found.dish.food_id == expected)
        # chance is 1 in 3; measured: 12 of 12 with model 1.0.0 and menu_match defaults
        assert sum(hits) >= 3, (food, hits)


def test_enrolment_bad_input(api: Api, fixtures_dir: Path) -> None:
    menu = _fruit_menu(api)
    photo = fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG"
    url = f"/v1/menus/{menu['id']}/dishes/{menu['dishes'][0]['id']}/enrolments"
    r = api.call("kiosk_a", "POST", url, files={"photo": ("a.jpg", b"x", "image/jpeg")})
    assert r.status_code == 422 and "'image'" in r.json()["detail"]
    r = api.call("kiosk_a", "POST", url, files={"image": ("a.jpg", b"not a jpeg", "image/jpeg")})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_image_type"
    truncated = photo.read_bytes()[:2000]
    r = api.call("kiosk_a", "POST", url, files={"image": ("a.jpg", truncated, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"] == "invalid_image"
    for box in ("1,2,3", "10,10,5,5", "0,0,9000,10", "a,b,c,d"):
        r = _enrol(api, menu, 0, photo, box=box)
        assert r.status_code == 422 and r.json()["error"] == "invalid_box", (box, r.text)
    small_mask = _png_mask((10, 10), (0, 0, 5, 5))
    r = _enrol(api, menu, 0, photo, mask=small_mask)
    assert r.status_code == 422 and r.json()["error"] == "invalid_mask"
    r = _enrol(api, menu, 0, photo, mask=_png_mask((816, 612), None))
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = _enrol(api, menu, 0, photo, box="361,226,583,464",
               mask=_png_mask((816, 612), (361, 226, 583, 464)))
    assert r.status_code == 422 and r.json()["error"] == "invalid_region"
    # JSON names an analysed item (tests/serve/api/test_identity.py): this is no such body
    r = api.call("kiosk_a", "POST", url, json={"image": "x"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"
    other = f"/v1/menus/{menu['id']}/dishes/nope/enrolments"
    assert api.call("kiosk_a", "POST", other,
                    files={"image": ("a.jpg", photo.read_bytes(), "image/jpeg")}
                    ).status_code == 404
    assert api.call("kiosk_b", "POST", url,
                    files={"image": ("a.jpg", photo.read_bytes(), "image/jpeg")}
                    ).status_code == 404
    assert api.call("app_a", "POST", url,
                    files={"image": ("a.jpg", photo.read_bytes(), "image/jpeg")}
                    ).status_code == 403


def _png_mask(size: tuple[int, int], ellipse: tuple[int, int, int, int] | None) -> bytes:
    """A black PNG with a white ellipse in the given box (the dish's pixels)."""
    img = Image.new("L", size, 0)
    if ellipse is not None:
        ImageDraw.Draw(img).ellipse(ellipse, fill=255)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_mask_enrolment_area_is_the_mask(api: Api, fixtures_dir: Path) -> None:
    menu = _fruit_menu(api)
    photo = fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG"
    mask = _png_mask((816, 612), (361, 226, 583, 464))
    r = _enrol(api, menu, 0, photo, mask=mask)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["region"] == body["area_from"] == "mask" and body["mask_sha256"] is not None
    # the ellipse inscribed in a 223 x 239 px box covers about pi/4 of it (~41,900 px)
    assert body["area_px"] == pytest.approx(3.14159 / 4 * 223 * 239, rel=0.02)
    enrolments = api.call("kiosk_a", "GET", f"/v1/menus/{menu['id']}/dishes/"
                          f"{menu['dishes'][0]['id']}/enrolments").json()
    assert [e["id"] for e in enrolments] == [body["id"]]
    r = api.call("kiosk_a", "DELETE", f"/v1/menus/{menu['id']}/dishes/"
                 f"{menu['dishes'][0]['id']}/enrolments/{body['id']}")
    assert r.status_code == 204


def test_whole_image_enrolment(api: Api, fixtures_dir: Path) -> None:
    menu = _fruit_menu(api)
    photo = fixtures_dir / "ecustfd" / "JPEGImages" / "qiwi007T(3).JPG"
    r = _enrol(api, menu, 1, photo)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["region"] == "image" and body["box"] is None and body["mask_sha256"] is None
    # measured by the model's own mask when it finds the food, else the whole 816 x 612 frame
    assert body["area_from"] in ("model_mask", "image")
    assert 0 < body["area_px"] <= 816 * 612
    loaded = api.client.app.state.models.active  # type: ignore[attr-defined]
    assert body["model_version"] == loaded.version
    with api.client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        ctx = menu_context(session.get(Menu, menu["id"]), model_version=loaded.version,
                           model_food_ids=loaded.model.meta.food_ids, masks=MODEL_MASKS)
    kiwi = ctx.dishes[1]
    assert kiwi.enrolled == 1  # its embedding counts for identification either way ...
    # ... but a whole-photo area is no food's size: never the reference for relative grams
    assert kiwi.area_px == (() if body["area_from"] == "image" else (body["area_px"],))


def _stale_enrolment(api: Api, photo: Path) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    """A fruit menu whose one enrolment looks made under an older model: (menu, enrolment,
    the embedding the active model gives it)."""
    menu = _fruit_menu(api)
    fresh = _enrol(api, menu, 0, photo, box="361,226,583,464").json()
    factory = api.client.app.state.session_factory  # type: ignore[attr-defined]
    with factory.begin() as session:
        row = session.get(Enrolment, fresh["id"])
        kept = list(row.embedding)
        row.model_version, row.embedding = "older-model", [0.0] * len(kept)
    return menu, fresh, kept


def test_stale_enrolments_are_re_embedded_from_the_stored_photo(api: Api,
                                                                fixtures_dir: Path) -> None:
    menu, fresh, kept = _stale_enrolment(api, fixtures_dir / "ecustfd" / "JPEGImages"
                                         / "apple003T(1).JPG")
    factory = api.client.app.state.session_factory  # type: ignore[attr-defined]
    loaded = api.client.app.state.models.active  # type: ignore[attr-defined]
    with factory.begin() as session:
        menu_row = session.get(Menu, menu["id"])
        stale = menu_context(menu_row, model_food_ids=loaded.model.meta.food_ids,
                             model_version=loaded.version, masks=MODEL_MASKS)
        assert (stale.dishes[0].enrolled, stale.dishes[0].stale) == (0, 1)
        store = LocalImageStore(api.service.settings.image_dir)
        ctx = load_menu_context(session, Principal("k", Role.ADMIN, None), menu["id"], loaded,
                                store, api.service.settings.max_pixels, refine=False)
    assert (ctx.dishes[0].enrolled, ctx.dishes[0].stale) == (1, 0)
    with factory() as session:
        row = session.get(Enrolment, fresh["id"])
        assert row.model_version == loaded.version
        assert row.embedding == pytest.approx(kept, abs=1e-5)
    # a photo purged by retention cannot be re-embedded: the enrolment stays stale, unused
    with factory.begin() as session:
        row = session.get(Enrolment, fresh["id"])
        row.model_version = "older-model"
        store.delete(row.image_sha256)
        done = refresh_enrolments(session, session.get(Menu, menu["id"]), loaded, store,
                                  api.service.settings.max_pixels, refine=False)
    assert (done.re_embedded, done.re_measured, done.left_stale) == (0, 0, 1)


def test_analyze_with_menu_re_embeds_stale_enrolments(api: Api, fixtures_dir: Path) -> None:
    """After a model swap, /v1/analyze brings the menu's enrolments up to the active model."""
    photo = fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG"
    menu, fresh, kept = _stale_enrolment(api, photo)
    factory = api.client.app.state.session_factory  # type: ignore[attr-defined]
    loaded = api.client.app.state.models.active  # type: ignore[attr-defined]
    files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    r = api.call("kiosk_a", "POST", "/v1/analyze", files=files, data={"menu_id": menu["id"]})
    assert r.status_code == 201, r.text
    with factory() as session:
        row = session.get(Enrolment, fresh["id"])
        assert row.model_version == loaded.version
        assert row.embedding == pytest.approx(kept, abs=1e-5)


def test_retention_keeps_enrolment_photos(api: Api, fixtures_dir: Path) -> None:
    """Retention purges meal photos, never the enrolled examples a model swap re-embeds."""
    menu = _fruit_menu(api)
    photo = fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG"
    enrolled = _enrol(api, menu, 0, photo, box="361,226,583,464").json()
    factory = api.client.app.state.session_factory  # type: ignore[attr-defined]
    settings = api.service.settings
    store = LocalImageStore(settings.image_dir)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.image_retention_days + 1)
    with factory.begin() as session:
        sha = session.get(Enrolment, enrolled["id"]).image_sha256
        session.execute(update(StoredImage).values(created_at=old))
        purge_expired(session, store, settings.image_retention_days)
        assert session.get(StoredImage, sha).purged_at is None
    assert store.get(sha) == photo.read_bytes()


def test_analyze_uses_the_kiosk_calibration(api: Api, photo_bytes: dict[str, bytes]) -> None:
    kiosk = api.call("kiosk_a", "POST", "/v1/kiosks", json={
        "name": "scale", "calibration": {"px_per_cm": 20.0}}).json()
    files = {"image": ("tray.jpg", photo_bytes["tray"], "image/jpeg")}
    r = api.call("kiosk_a", "POST", "/v1/analyze", files=files, data={"kiosk_id": kiosk["id"]})
    assert r.status_code == 201, r.text
    assert r.json()["scale"]["px_per_cm"] == 20.0
    other = api.call("kiosk_b", "POST", "/v1/analyze", files=files,
                     data={"kiosk_id": kiosk["id"]})
    assert other.status_code == 404


def test_analyze_with_menu_identifies_enrolled_dishes(api: Api, shared_data: Path,
                                                      photo_bytes: dict[str, bytes]) -> None:
    _trained_model(api, "it detects nothing to identify")
    menu = _enrol_fruit(api, shared_data)
    files = {"image": ("apple.jpg", photo_bytes["apple"], "image/jpeg")}
    r = api.call("kiosk_a", "POST", "/v1/analyze", files=files, data={"menu_id": menu["id"]})
    assert r.status_code == 201, r.text
    foods = [i for i in r.json()["items"] if i["food_id"] is not None]
    assert foods, r.text
    biggest = max(foods, key=lambda i: (i["box"][2] - i["box"][0]) * (i["box"][3] - i["box"][1]))
    assert biggest["food_id"] == APPLE and biggest["menu_dish_id"] == menu["dishes"][0]["id"]


# --- enrolled areas and the masks analyses measure items on (TRAYLENS_REFINE_MASKS) -----

SALAD = "fndds:75143000"  # the food of the model's "Starter" class: the mealtray salad


def _salad_box(fixtures_dir: Path) -> str:
    """The annotated box of the salad in its bowl on the 2770 tray: "x0,y0,x1,y1" pixels."""
    photo = fixtures_dir / MEALTRAY.format(n=2770)
    names = read_names(fixtures_dir / "mealtray" / "obj.names")
    _, cx, cy, w, h = next(r for r in read_yolo(photo.with_suffix(".txt"), len(names))
                           if names[r[0]] == "Starter")
    width, height = load_image(photo).size
    box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
           (cy + h / 2) * height)
    return ",".join(f"{v:.1f}" for v in box)


def _salad_menu(api: Api) -> dict[str, Any]:
    """A lunch menu of one dish: the salad, 150 g a serving."""
    r = api.call("kiosk_a", "POST", "/v1/menus", json={
        "date": "2026-11-25", "meal": "lunch",
        "dishes": [{"food_id": SALAD, "serving_g": 150.0}]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_refresh_re_measures_enrolments_on_the_other_masks(api: Api,
                                                           fixtures_dir: Path) -> None:
    """An example measured by the model's mask of the salad bowl is re-measured on refined
    masks once the setting is on (and back when it is off); meanwhile it sizes only the
    analyses measured the same way. A purged photo leaves it as it is."""
    photo = fixtures_dir / MEALTRAY.format(n=2770)
    menu = _salad_menu(api)
    body = _enrol(api, menu, 0, photo, box=_salad_box(fixtures_dir)).json()
    assert body["area_from"] == "model_mask", body
    factory = api.session_factory()
    loaded = api.client.app.state.models.active  # type: ignore[attr-defined]
    settings = api.service.settings
    store = LocalImageStore(settings.image_dir)

    def refresh(refine: bool) -> Refresh:
        with factory.begin() as session:
            return refresh_enrolments(session, session.get(Menu, menu["id"]), loaded, store,
                                      settings.max_pixels, refine=refine)

    def references(masks: str) -> tuple[float, ...]:
        with factory() as session:
            ctx = menu_context(session.get(Menu, menu["id"]), masks=masks,
                               model_food_ids=loaded.model.meta.food_ids,
                               model_version=loaded.version)
        assert ctx.dishes[0].enrolled == 1  # it identifies whatever its area
        return ctx.dishes[0].area_px

    assert (references(MODEL_MASKS), references(REFINED_MASKS)) == ((body["area_px"],), ())
    assert refresh(True) == Refresh(0, 1, 0, loaded.version)
    with factory() as session:
        row = session.get(Enrolment, body["id"])
        refined, area_from, version = row.area_px, row.area_from, row.model_version
    assert (area_from, version) == ("refined_mask", loaded.version)
    # the salad, not its bowl (the ellipse in the box, 48,490 px): 1.5.0's mask was the
    # bowl's 47,975 px, refined 32,018; 1.6.0's follows the salad, 36,880 px either way
    x0, y0, x1, y1 = (float(v) for v in _salad_box(fixtures_dir).split(","))
    assert 0 < refined <= body["area_px"], (refined, body["area_px"])
    assert refined < 0.85 * np.pi / 4 * (x1 - x0) * (y1 - y0), refined
    assert (references(MODEL_MASKS), references(REFINED_MASKS)) == ((), (refined,))
    assert refresh(True) == Refresh(0, 0, 0, loaded.version)  # in line: nothing to do
    assert refresh(False) == Refresh(0, 1, 0, loaded.version)
    assert references(MODEL_MASKS) == pytest.approx((body["area_px"],))
    store.delete(body["image_sha256"])
    try:  # a purged photo cannot be measured again: the example stays as it was measured
        assert refresh(True) == Refresh(0, 0, 1, loaded.version)
        assert (references(MODEL_MASKS), references(REFINED_MASKS)) == (
            pytest.approx((body["area_px"],)), ())
    finally:
        store.put(photo.read_bytes())


def test_relative_grams_follow_the_masks_setting(api: Api, refining: Service,
                                                 fixtures_dir: Path) -> None:
    """The salad enrolled while items were measured on the model's masks, then the same tray
    analysed with refined masks: the example is first re-measured on refined masks, so the
    salad weighs its serving (before the fix: its refined area over the bowl's model mask,
    about 2/3 of it). Analysed with the model's masks again, it is measured back; enrolled
    through the refining app, an example is measured on refined masks at once."""
    photo = fixtures_dir / MEALTRAY.format(n=2770)
    box = _salad_box(fixtures_dir)
    menu = _salad_menu(api)
    enrolled = _enrol(api, menu, 0, photo, box=box).json()
    assert enrolled["area_from"] == "model_mask", enrolled
    files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    salad_box = [float(v) for v in box.split(",")]
    for app, masks, area_from in ((refining, "refined", "refined_mask"),
                                  (api.service, "model", "model_mask")):
        r = app.client.post("/v1/analyze", headers=api.keys["kiosk_a"], files=files,
                            data={"menu_id": menu["id"]})
        assert r.status_code == 201, r.text
        assert r.json()["masks"] == masks
        salad = max(r.json()["items"], key=lambda i: pair_iou(i["box"], salad_box))
        assert pair_iou(salad["box"], salad_box) >= 0.5, r.text
        assert salad["menu_dish_id"] == menu["dishes"][0]["id"], salad
        with api.session_factory()() as session:
            row = session.get(Enrolment, enrolled["id"])
            reference = (row.area_from, row.area_px)
        assert reference[0] == area_from
        grams = salad["grams"]
        assert grams["source"] == "enrolled_serving", salad
        assert grams["value"] == pytest.approx(150.0 * salad["area_px"] / reference[1], abs=0.1)
        # the enrolled photo itself, decoded smaller for the model: its serving, within 5 %
        # on the model's masks. Refined, within 15 %: with 1.6.0 the refinement cuts the
        # salad at the analysis's reduced decode (32,376 px) but not at the full decode the
        # example is measured on (36,880 px), so it reads 132 g (1.5.0: within 1 %)
        tolerance = 0.05 if masks == "model" else 0.15
        assert grams["value"] == pytest.approx(150.0, rel=tolerance), (masks, salad)
    url = f"/v1/menus/{menu['id']}/dishes/{menu['dishes'][0]['id']}/enrolments"
    again = refining.client.post(url, headers=api.keys["kiosk_a"], files=files,
                                 data={"box": box})
    assert again.status_code == 201, again.text
    assert again.json()["area_from"] == "refined_mask"
    assert again.json()["area_px"] <= enrolled["area_px"]  # 1.5.0: 0.67 of it; 1.6.0: equal
