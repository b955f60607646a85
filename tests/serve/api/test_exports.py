"""POST /v1/exports: corrected analyses as the model's COCO-extended data set, round trip."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from model.data.coco import load
from model.data.ops import remap_to_label_map
from nutrition_db import label_map
from serve.core.responses import rounded
from serve.core.storage import sha256_hex
from tests.serve.conftest import Service

APPLE, BANANA = "sr28:09003", "sr28:09040"


@pytest.fixture(scope="module")
def tenant(service: Service) -> dict[str, Any]:
    canteen = service.canteen("exports")
    return {"canteen": canteen, "kiosk": service.key("kiosk", canteen),
            "app": service.key("app", canteen)}


def _analyze(service: Service, headers: dict[str, str], photo: bytes) -> dict[str, Any]:
    body = service.ok(service.client.post(
        "/v1/analyze", files={"image": ("p.jpg", photo, "image/jpeg")}, headers=headers), 201)
    assert body["items"], "the fixture photo must give items"
    return dict(body)


def _unzip(content: bytes, folder: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        zf.extractall(folder)
    return folder / "annotations.json"


@pytest.fixture(scope="module")
def corrected(service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
              ) -> dict[str, Any]:
    """One analysis with a corrected item (food and grams) and one left alone."""
    body = _analyze(service, tenant["kiosk"], photo_bytes["mix"])
    item = body["items"][0]
    food = BANANA if item["food_id"] == APPLE else APPLE  # a real change of food
    url = f"/v1/analyses/{body['id']}/items/{item['id']}"
    service.ok(service.client.patch(url, json={"food_id": food, "grams": 151.5},
                                    headers=tenant["kiosk"]))
    untouched = _analyze(service, tenant["kiosk"], photo_bytes["tray"])
    fresh = service.ok(service.client.get(f"/v1/analyses/{body['id']}",
                                          headers=tenant["kiosk"]))
    return {"analysis": fresh, "item_id": item["id"], "food": food, "untouched": untouched}


def test_export_round_trips_the_stored_corrections(
    service: Service, tenant: dict[str, Any], corrected: dict[str, Any],
    photo_bytes: dict[str, bytes], tmp_path: Path,
) -> None:
    r = service.client.post("/v1/exports", json={"format": "coco"}, headers=tenant["kiosk"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["x-traylens-export-images"] == "1"
    ds = load(_unzip(r.content, tmp_path))  # validates
    analysis = corrected["analysis"]
    assert len(ds.images) == 1  # corrected_only: the untouched tray stays out
    image = ds.images[0]
    assert image.file_name == f"images/{analysis['image']['sha256']}.jpg"
    assert sha256_hex(ds.image_path(image).read_bytes()) == analysis["image"]["sha256"]
    assert ds.image_path(image).read_bytes() == photo_bytes["mix"]
    assert (image.width, image.height) == (analysis["image"]["width"],
                                           analysis["image"]["height"])
    assert image.px_per_cm == pytest.approx(analysis["scale"]["px_per_cm"], abs=0.005)
    assert image.split_group and image.dish and image.dish["analysis_id"] == analysis["id"]
    names, lm = ds.category_names(), label_map()
    foods = {c.id: c.food_id for c in ds.categories}
    anns = {a.object_id: a for a in ds.annotations}
    assert set(anns) == {f"item:{i['id']}" for i in analysis["items"]}
    for item in analysis["items"]:
        ann = anns[f"item:{item['id']}"]
        x0, y0, x1, y1 = item["box"]
        assert ann.bbox == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.01)
        assert foods[ann.category_id] == item["food_id"]
        assert ann.grams == (item["grams"]["value"] if item["grams"] else None)
        flat = [v for point in item["polygon"] for v in point]
        if len(flat) >= 6:
            assert ann.segmentation == [flat] and ann.mask_source == "model"
        if item["id"] == corrected["item_id"]:
            assert ann.grams == 151.5 and foods[ann.category_id] == corrected["food"]
            # the answer rounds its numbers (core.responses); the export keeps them as stored
            assert rounded(ann.original) == item["original"]
            assert ann.original["food_id"] != corrected["food"]
            by_food = {lm.food_id(x): x for x in reversed(lm.labels)}
            assert names[ann.category_id] == by_food.get(item["food_id"], item["names"]["en"])
        else:
            assert ann.original is None
    # Foods of the model's label map keep the model's label name: remapping keeps them.
    in_map = [a for a in ds.annotations if foods[a.category_id] in
              {lm.food_id(x) for x in lm.labels}]
    remapped = remap_to_label_map(ds, drop_unknown=True)
    assert len(remapped.annotations) == len(in_map)


def test_all_analyses_dates_and_who_may_export(
    service: Service, tenant: dict[str, Any], corrected: dict[str, Any], tmp_path: Path,
) -> None:
    c = service.client
    everything = c.post("/v1/exports", json={"corrected_only": False}, headers=tenant["kiosk"])
    assert everything.status_code == 200, everything.text
    ds = load(_unzip(everything.content, tmp_path / "all"))
    assert len(ds.images) == 2 and all(a.original is None for a in ds.annotations
                                       if a.image_id != 1)
    none = c.post("/v1/exports", json={"end": "2000-01-01T00:00:00"}, headers=tenant["kiosk"])
    assert none.status_code == 200
    assert load(_unzip(none.content, tmp_path / "none")).images == []
    admin = c.post("/v1/exports", json={"canteen_id": tenant["canteen"]}, headers=service.admin)
    assert admin.status_code == 200 and admin.headers["x-traylens-export-images"] == "1"
    app = c.post("/v1/exports", json={}, headers=tenant["app"])
    assert app.status_code == 403 and app.json()["error"] == "forbidden"
    other = service.key("kiosk", service.canteen("other"))
    foreign = c.post("/v1/exports", json={"canteen_id": tenant["canteen"]}, headers=other)
    assert foreign.status_code == 404
    assert c.post("/v1/exports", json={}, headers=other).headers[
        "x-traylens-export-images"] == "0"
    bad = c.post("/v1/exports", json={"format": "voc"}, headers=tenant["kiosk"])
    assert bad.status_code == 422
    backwards = c.post("/v1/exports", json={"start": "2030-01-02", "end": "2030-01-01"},
                       headers=tenant["kiosk"])
    assert backwards.status_code == 422 and backwards.json()["error"] == "invalid_range"


def test_an_export_over_the_size_limit_is_refused(
    service: Service, tenant: dict[str, Any], corrected: dict[str, Any],
) -> None:
    from serve.core.auth import Principal
    from serve.core.errors import ApiError
    from serve.core.storage import LocalImageStore
    from serve.db.tables.core import Role
    from serve.services.exports import ExportQuery, write_export

    factory = service.client.app.state.session_factory  # type: ignore[attr-defined]
    admin = Principal("admin", Role.ADMIN, None)
    with factory() as session, pytest.raises(ApiError) as err:
        write_export(session, admin, LocalImageStore(service.settings.image_dir),
                     ExportQuery(canteen_id=tenant["canteen"]), max_bytes=1000)
    assert err.value.status_code == 413 and err.value.code == "export_too_large"


def test_people_out_of_canteen_statistics_stay_out_of_exports(
    service: Service, photo_bytes: dict[str, bytes], tmp_path: Path,
) -> None:
    kiosk = service.key("kiosk", service.canteen("exports-consent"))
    user = service.user(kiosk)
    consent = {"consent": {"canteen_statistics": False}}
    service.ok(service.client.patch(f"/v1/users/{user}", json=consent, headers=kiosk))
    body = service.ok(service.client.post(
        "/v1/analyze", files={"image": ("p.jpg", photo_bytes["mix"], "image/jpeg")},
        data={"user_id": user}, headers=kiosk), 201)
    assert body["user_id"] == user and body["items"]
    item = body["items"][0]
    service.ok(service.client.patch(f"/v1/analyses/{body['id']}/items/{item['id']}",
                                    json={"grams": 99.0}, headers=kiosk))
    out = service.client.post("/v1/exports", json={}, headers=kiosk)
    assert out.status_code == 200 and out.headers["x-traylens-export-images"] == "0"
    consent["consent"]["canteen_statistics"] = True
    service.ok(service.client.patch(f"/v1/users/{user}", json=consent, headers=kiosk))
    # a meal logged by hand has user items but no photo: nothing to train on
    service.ok(service.client.post(f"/v1/users/{user}/meals", headers=kiosk, json={
        "eaten_at": "2026-12-01T12:00:00Z", "items": [{"food_id": APPLE, "grams": 100}]}), 201)
    back = service.client.post("/v1/exports", json={}, headers=kiosk)
    assert back.status_code == 200, back.text
    assert back.headers["x-traylens-export-images"] == "1"
    assert len(load(_unzip(back.content, tmp_path)).images) == 1


def test_an_item_added_without_a_box_is_counted_not_exported(
    service: Service, photo_bytes: dict[str, bytes], tmp_path: Path,
) -> None:
    kiosk = service.key("kiosk", service.canteen("exports-added"))
    body = _analyze(service, kiosk, photo_bytes["mix"])
    service.ok(service.client.post(f"/v1/analyses/{body['id']}/items", headers=kiosk,
                                   json={"food_id": BANANA, "grams": 80}), 201)
    r = service.client.post("/v1/exports", json={}, headers=kiosk)
    assert r.status_code == 200, r.text
    assert r.headers["x-traylens-export-empty-box"] == "1"
    ds = load(_unzip(r.content, tmp_path))
    assert len(ds.annotations) == len(body["items"])  # the model's items, not the added one
