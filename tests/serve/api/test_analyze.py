"""POST /v1/analyze and friends on real photos, on SQLite and PostgreSQL."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from model.data.importers.mealtray import import_mealtray
from model.infer.geometry import pair_iou
from nutrition_db.table import nutrients_for
from serve.core.responses import rounded
from serve.db.tables.analyses import Analysis, AnalysisItem
from tests.serve.conftest import MEALTRAY, Service

# SR28 foods with complete rows: apples (raw, with skin), bananas (raw), oranges (raw).
APPLE, BANANA, ORANGE = "sr28:09003", "sr28:09040", "sr28:09200"


def _analyze(service: Service, photo: bytes, headers: dict[str, str], status: int = 201,
             **fields: Any) -> Any:
    """POST one photo and return the JSON (asserting the status)."""
    response = service.client.post(
        "/v1/analyze", files={"image": ("tray.jpg", photo, "image/jpeg")},
        data={k: str(v) for k, v in fields.items()}, headers=headers,
    )
    return service.ok(response, status)


def _annotated_foods(fixtures_dir: Path, n: int) -> list[tuple[str, list[float]]]:
    """(label, [x0, y0, x1, y1]) of the foods annotated on mealtray fixture photo n."""
    ds = import_mealtray(fixtures_dir / "mealtray" / "labeled")
    names = ds.category_names()
    image = next(im for im in ds.images if im.file_name == Path(MEALTRAY.format(n=n)).name)
    return [(names[a.category_id], [a.bbox[0], a.bbox[1], a.bbox[0] + a.bbox[2],
                                    a.bbox[1] + a.bbox[3]])
            for a in ds.annotations if a.image_id == image.id]


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
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes],
    fixtures_dir: Path,
) -> None:
    body = _analyze(service, photo_bytes["tray"], tenant["kiosk"])
    assert body["id"] and body["canteen_id"] == tenant["canteen"]
    assert body["image"]["width"] == 1024 and body["image"]["height"] == 768
    assert body["overlay_url"] == f"/v1/analyses/{body['id']}/overlay.png"
    # The photo's annotated foods: an answer without any of them found is a broken service.
    truth = _annotated_foods(fixtures_dir, 2770)
    assert truth and body["items"], "no item on a tray photo with annotated foods"
    found = [(label, box) for label, box in truth
             if any(i["label"] == label and pair_iou(i["box"], box) >= 0.5 for i in body["items"])]
    assert found, f"none of the annotated foods {truth} among {body['items']}"
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
    assert counted, "no item of the tray got nutrients"
    kcal = sum(i["nutrients"]["energy_kcal"] or 0.0 for i in counted)
    assert body["totals"]["items_counted"] == len(counted)
    assert body["totals"]["nutrients"]["energy_kcal"] == pytest.approx(kcal)
    # What each box shows is recorded and answered: the salad bowl holds coloured food.
    assert {i["label"]: i["container"] for i in body["items"]}.get("Starter") == "food"
    assert all(i["container"] in ("food", "empty", None) for i in body["items"])
    again = service.ok(service.client.get(f"/v1/analyses/{body['id']}", headers=tenant["kiosk"]))
    assert again == body


def test_user_meal_is_logged_once(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    body = _analyze(service, photo_bytes["tray2"], tenant["app"], user_id=tenant["app_user"],
                    captured_at="2026-11-28T12:30:00+09:00")
    assert body["user_id"] == tenant["app_user"]
    assert body["captured_at"] == "2026-11-28T03:30:00Z"
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


def _analysis_with_items(service: Service, tenant: dict[str, Any], photo: bytes) -> Any:
    """An analysed real photo with two model-estimate items of known food and grams added
    (so corrections are tested whatever the model finds on the photo)."""
    body = _analyze(service, photo, tenant["kiosk"])
    factory = service.client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as session, session.begin():
        analysis = session.get(Analysis, body["id"])
        assert analysis is not None
        start = len(analysis.items)
        for offset, (food_id, grams) in enumerate([(BANANA, 118.0), (ORANGE, 131.0)]):
            session.add(AnalysisItem(
                analysis_id=analysis.id, position=start + offset, label="Fruit",
                food_id=food_id, confidence=0.6, box=[10.0, 10.0, 200.0, 200.0],
                grams=grams, grams_low=grams * 0.8, grams_high=grams * 1.2,
                grams_source="kiosk_calibration", nutrients=nutrients_for(food_id, grams)))
    return service.ok(service.client.get(f"/v1/analyses/{body['id']}", headers=tenant["kiosk"]))


def test_correction_keeps_the_original_and_updates_totals(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    body = _analysis_with_items(service, tenant, photo_bytes["mix"])
    item = body["items"][-2]  # the banana
    url = f"/v1/analyses/{body['id']}/items/{item['id']}"
    fixed = service.ok(service.client.patch(url, json={"food_id": APPLE, "grams": 150.0},
                                            headers=tenant["kiosk"]))
    new = next(i for i in fixed["items"] if i["id"] == item["id"])
    assert new["food_id"] == APPLE and new["grams"]["value"] == 150.0
    assert new["names"]["en"] == "Apples, raw, with skin"
    assert new["provenance"] == {"item": "user_correction", "food": "user_correction",
                                 "grams": "user_correction", "nutrients": "database_value"}
    assert (new["original"]["food_id"], new["original"]["grams"]) == (BANANA, 118.0)
    assert new["nutrients"] == rounded(nutrients_for(APPLE, 150.0))  # as answered
    # Totals: the corrected apple plus every other item with nutrients, by hand.
    counted = [i for i in fixed["items"] if i["nutrients"]]
    assert fixed["totals"]["grams"] == pytest.approx(sum(i["grams"]["value"] for i in counted),
                                                     abs=0.05)
    kcal = sum(i["nutrients"]["energy_kcal"] for i in counted)
    assert fixed["totals"]["nutrients"]["energy_kcal"] == pytest.approx(kcal, abs=0.05)
    # A second correction still keeps the model's first estimate.
    again = service.ok(service.client.patch(url, json={"grams": 90}, headers=tenant["kiosk"]))
    second = next(i for i in again["items"] if i["id"] == item["id"])
    assert second["original"] == new["original"] and second["food_id"] == APPLE
    assert second["nutrients"] == rounded(nutrients_for(APPLE, 90.0))
    assert service.ok(service.client.get(f"/v1/analyses/{body['id']}",
                                         headers=tenant["kiosk"])) == again


def test_correction_errors_are_clear(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    body = _analysis_with_items(service, tenant, photo_bytes["apple"])
    c, kiosk = service.client, tenant["kiosk"]
    assert c.patch(f"/v1/analyses/{body['id']}/items/nope", json={"grams": 5},
                   headers=kiosk).status_code == 404
    url = f"/v1/analyses/{body['id']}/items/{body['items'][-1]['id']}"
    bad = c.patch(url, json={"food_id": "mfds:nonexistent"}, headers=kiosk)
    assert bad.status_code == 422 and bad.json()["error"] == "unknown_food"
    for wrong in ({}, {"grams": -1}, {"grams": 9000}, {"grams": "lots"}, {"colour": 1}):
        r = c.patch(url, json=wrong, headers=kiosk)
        assert r.status_code == 422 and r.json()["error"] == "invalid_input", (wrong, r.text)
    other_app = service.key("app", tenant["canteen"])
    assert c.patch(url, json={"grams": 5}, headers=other_app).status_code == 404


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
        assert single["items"], f"no item found on the {name} photo"
        assert [i["label"] for i in batch_items] == [i["label"] for i in single["items"]]
        for a, b in zip(batch_items, single["items"], strict=True):
            assert a["box"] == pytest.approx(b["box"], abs=0.2)


def test_one_transaction_per_analysis(
    service: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash between writing the analysis and its items leaves nothing half-written."""
    import serve.services.analyze as analyze_service

    factory = service.client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as s:
        before = (s.scalar(select(func.count(Analysis.id))),
                  s.scalar(select(func.count(AnalysisItem.id))))
    real = analyze_service.analysis_payload

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected crash after the rows were flushed")

    monkeypatch.setattr(analyze_service, "analysis_payload", crash)
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
    monkeypatch.setattr(analyze_service, "analysis_payload", real)
    ok = _analyze(service, photo_bytes["tray"], {**tenant["kiosk"], "Idempotency-Key": "crash-1"})
    assert ok["id"]


def test_refine_masks_setting_answers_and_stores_refined_masks(
    service: Service, refining: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes],
) -> None:
    kiosk = tenant["kiosk"]
    plain = _analyze(service, photo_bytes["tray"], kiosk)
    refined = _analyze(refining, photo_bytes["tray"], kiosk)
    assert (plain["masks"], refined["masks"]) == ("model", "refined")
    assert [i["box"] for i in refined["items"]] == [i["box"] for i in plain["items"]]
    areas = [(p["area_px"], r["area_px"]) for p, r in zip(plain["items"], refined["items"],
                                                         strict=True)]
    # the salad bowl's mask cut to the salad (1.5.0: 48,063 -> 32,372 px; 1.6.0, whose
    # masks follow the food: 36,780 -> 32,376), nothing grown
    assert all(r <= p for p, r in areas) and any(r < 0.95 * p for p, r in areas), areas
    # Stored as made: each app reads the other's analysis as it was answered.
    assert service.ok(service.client.get(f"/v1/analyses/{refined['id']}",
                                         headers=kiosk)) == refined
    assert refining.ok(refining.client.get(f"/v1/analyses/{plain['id']}",
                                           headers=kiosk)) == plain


def test_a_pair_across_a_change_of_masks_measures_no_leftover_from_areas(
    service: Service, refining: Service, tenant: dict[str, Any], photo_bytes: dict[str, bytes],
) -> None:
    """A tray photographed before the setting changed and after it: its regions pair, but no
    leftover comes from the two photos' areas (not_measurable + masks_differ); the same tray
    on one mask method compares areas."""
    kiosk = tenant["kiosk"]
    results = {}
    for name, after_app in (("across", refining), ("same", service)):
        user = service.user(kiosk)
        before = _analyze(service, photo_bytes["tray"], kiosk, user_id=user,
                          meal_state="before")
        after = _analyze(after_app, photo_bytes["tray2"], kiosk, user_id=user,
                         meal_state="after")
        assert before["pair_id"] and after["pair_id"] == before["pair_id"]
        pair = service.ok(service.client.get(f"/v1/pairs/{before['pair_id']}", headers=kiosk))
        results[name] = pair["result"]["items"]
    across = [i for i in results["across"] if i["before_ref"] and i["after_ref"]]
    assert across, "the tray's regions did not pair"
    for item in across:
        assert item["flags"][:2] == ["not_measurable", "masks_differ"], item
        assert (item["leftover_fraction"], item["measure"], item["leftover_g"]) == (
            None, None, 0.0)
    assert all("masks_differ" not in i["flags"] for i in results["same"])
    assert any(i["measure"] == "area" and i["leftover_fraction"] is not None
               for i in results["same"])
