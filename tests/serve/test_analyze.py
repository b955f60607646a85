"""POST /v1/analyze and friends on real photos, on SQLite and PostgreSQL."""
from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nutrition_db.table import nutrients_for
from serve.models import Analysis, AnalysisItem
from tests.serve.conftest import Service


def _analyze(service: Service, photo: bytes, headers: dict[str, str], status: int = 201,
             **fields: Any) -> Any:
    """POST one photo and return the JSON (asserting the status)."""
    response = service.client.post(
        "/v1/analyze", files={"image": ("tray.jpg", photo, "image/jpeg")},
        data={k: str(v) for k, v in fields.items()}, headers=headers,
    )
    return service.ok(response, status)


@pytest.fixture(scope="module")
def tenant(service: Service) -> dict[str, Any]:
    """One canteen with a kiosk key, an app key and a user of each."""
    canteen = service.canteen("analyze")
    kiosk = service.key("kiosk", canteen)
    app = service.key("app", canteen)
    return {"canteen": canteen, "kiosk": kiosk, "app": app,
            "kiosk_user": service.user(kiosk, external_ref="badge-1"),
            "app_user": service.user(app, display_name="app person")}


def test_analyze_answers_items_grams_nutrients_and_totals(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    body = _analyze(service, photo_bytes["tray"], tenant["kiosk"])
    assert body["id"] and body["canteen_id"] == tenant["canteen"]
    assert body["image"]["width"] == 1024 and body["image"]["height"] == 768
    assert body["overlay_url"] == f"/v1/analyses/{body['id']}/overlay.png"
    for item in body["items"]:
        x0, y0, x1, y1 = item["box"]
        assert 0 <= x0 < x1 <= 1024 and 0 <= y0 < y1 <= 768
        assert 0.0 <= item["confidence"] <= 1.0
        assert item["alternatives"] and item["alternatives"][0]["score"] >= \
            item["alternatives"][-1]["score"]
        if item["grams"] is not None:
            g = item["grams"]
            assert g["low"] <= g["value"] <= g["high"] and g["source"]
        if item["nutrients"]:  # database values for the item's grams, exactly
            expected = nutrients_for(item["food_id"], item["grams"]["value"])
            assert item["nutrients"]["energy_kcal"] == pytest.approx(expected["energy_kcal"])
            assert item["provenance"]["nutrients"] == "database_value"
    counted = [i for i in body["items"] if i["nutrients"]]
    kcal = sum(i["nutrients"]["energy_kcal"] or 0.0 for i in counted)
    assert body["totals"]["items_counted"] == len(counted)
    assert body["totals"]["nutrients"]["energy_kcal"] == pytest.approx(kcal) or not counted
    again = service.ok(service.client.get(f"/v1/analyses/{body['id']}", headers=tenant["kiosk"]))
    assert again == body


def test_user_meal_is_logged_once(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    body = _analyze(service, photo_bytes["tray2"], tenant["app"], user_id=tenant["app_user"],
                    captured_at="2026-11-28T12:30:00+09:00")
    assert body["user_id"] == tenant["app_user"]
    assert body["captured_at"] == "2026-11-28T03:30:00+00:00"
    listed = service.ok(service.client.get(
        "/v1/analyses", params={"user_id": tenant["app_user"]}, headers=tenant["app"]))
    assert listed == [body]


def test_overlay_is_a_png_of_the_photo_size(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    import io

    from PIL import Image

    body = _analyze(service, photo_bytes["tray3"], tenant["kiosk"])
    response = service.client.get(body["overlay_url"], headers=tenant["kiosk"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(response.content))
    assert img.format == "PNG"
    assert img.size == (body["image"]["width"], body["image"]["height"])


def test_correction_keeps_the_original_and_updates_totals(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    body = _analyze(service, photo_bytes["mix"], tenant["kiosk"])
    if not body["items"]:
        pytest.skip("the model found no item on this photo to correct")
    item = body["items"][0]
    patch = {"food_id": "sr28:09003", "grams": 150.0}  # SR28 apples, raw, with skin
    fixed = service.ok(service.client.patch(
        f"/v1/analyses/{body['id']}/items/{item['id']}", json=patch, headers=tenant["kiosk"]))
    new = next(i for i in fixed["items"] if i["id"] == item["id"])
    assert new["food_id"] == "sr28:09003" and new["grams"]["value"] == 150.0
    assert new["provenance"] == {"item": "user_correction", "food": "user_correction",
                                 "grams": "user_correction", "nutrients": "database_value"}
    assert new["original"]["food_id"] == item["food_id"]
    assert new["original"]["grams"] == (item["grams"]["value"] if item["grams"] else None)
    expected = nutrients_for("sr28:09003", 150.0)["energy_kcal"]
    assert new["nutrients"]["energy_kcal"] == pytest.approx(expected)
    # A second correction still keeps the model's first estimate.
    again = service.ok(service.client.patch(
        f"/v1/analyses/{body['id']}/items/{item['id']}", json={"grams": 90},
        headers=tenant["kiosk"]))
    assert next(i for i in again["items"] if i["id"] == item["id"])["original"] == new["original"]


def test_correction_errors_are_clear(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    body = _analyze(service, photo_bytes["apple"], tenant["kiosk"])
    url = f"/v1/analyses/{body['id']}/items/nope"
    assert service.client.patch(url, json={"grams": 5}, headers=tenant["kiosk"]).status_code == 404
    if body["items"]:
        url = f"/v1/analyses/{body['id']}/items/{body['items'][0]['id']}"
        bad = service.client.patch(url, json={"food_id": "mfds:nonexistent"},
                                   headers=tenant["kiosk"])
        assert bad.status_code == 422 and bad.json()["error"] == "unknown_food"
        empty = service.client.patch(url, json={}, headers=tenant["kiosk"])
        assert empty.status_code == 422 and "food_id" in empty.json()["detail"]


def test_batch_matches_single_requests(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    names = ["tray", "apple", "mix"]
    files = [("images", (f"{n}.jpg", photo_bytes[n], "image/jpeg")) for n in names]
    files.append(("images", ("bad.jpg", b"not a photo", "image/jpeg")))
    body = service.ok(service.client.post("/v1/analyze/batch", files=files,
                                          headers=tenant["kiosk"]))
    assert body["analysed"] == 3 and body["failed"] == 1
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert body["results"][3]["error"] == "unsupported_image_type"
    for name, result in zip(names, body["results"], strict=False):
        single = _analyze(service, photo_bytes[name], tenant["kiosk"])
        batch_items = result["analysis"]["items"]
        assert [i["label"] for i in batch_items] == [i["label"] for i in single["items"]]
        for a, b in zip(batch_items, single["items"], strict=True):
            assert a["box"] == pytest.approx(b["box"], abs=0.2)


def test_one_transaction_per_analysis(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash between writing the analysis and its items leaves nothing half-written."""
    import serve.routers.analyze as analyze_router

    factory = service.client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as s:
        before = (s.scalar(select(func.count(Analysis.id))),
                  s.scalar(select(func.count(AnalysisItem.id))))
    real = analyze_router.analysis_payload

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected crash after the rows were flushed")

    monkeypatch.setattr(analyze_router, "analysis_payload", crash)
    # Without re-raising in the test, to see what a client sees (the lifespan already ran).
    client = TestClient(service.client.app, raise_server_exceptions=False)
    response = client.post(
        "/v1/analyze", files={"image": ("t.jpg", photo_bytes["tray"], "image/jpeg")},
        headers={**tenant["kiosk"], "Idempotency-Key": "crash-1"})
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
    with factory() as s:
        after = (s.scalar(select(func.count(Analysis.id))),
                 s.scalar(select(func.count(AnalysisItem.id))))
    assert after == before
    monkeypatch.setattr(analyze_router, "analysis_payload", real)
    ok = _analyze(service, photo_bytes["tray"], {**tenant["kiosk"], "Idempotency-Key": "crash-1"})
    assert ok["id"]
