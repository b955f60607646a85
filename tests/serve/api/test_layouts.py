"""Kiosk tray layouts over HTTP: create/replace, read, reference photo, propose, delete,
validation 4xx and tenancy (SQLite and PostgreSQL)."""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model.data import traybed as tb
from tests.serve.conftest import Service

SIZE = (480, 360)


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def compartments_of(kiosk: tb.Kiosk) -> list[dict[str, Any]]:
    return [{"slot": s, "polygon": np.round(p, 1).tolist()} for s, p in kiosk.compartments.items()]


@pytest.fixture(scope="module")
def kiosk_art() -> tb.Kiosk:
    return tb.make_kiosk(3, SIZE)


@pytest.fixture(scope="module")
def tenant(service: Service) -> dict[str, Any]:
    c = service.canteen("layout")
    kiosk_key = service.key("kiosk", c)
    kiosk = service.ok(service.client.post("/v1/kiosks", json={"name": "k1"},
                                           headers=kiosk_key), 201)["id"]
    return {"canteen": c, "kiosk_key": kiosk_key, "app_key": service.key("app", c),
            "kiosk": kiosk}


def put(service: Service, tenant: dict[str, Any], reference: bytes, compartments: Any,
        headers: dict[str, str] | None = None, **fields: str) -> Any:
    text = compartments if isinstance(compartments, str) else json.dumps(compartments)
    return service.client.put(
        f"/v1/kiosks/{tenant['kiosk']}/layout",
        files={"reference": ("ref.jpg", reference, "image/jpeg")},
        data={"compartments": text, **fields}, headers=headers or tenant["kiosk_key"])


def test_layout_lifecycle(service: Service, tenant: dict[str, Any], kiosk_art: tb.Kiosk) -> None:
    ref = jpeg(kiosk_art.reference)
    url = f"/v1/kiosks/{tenant['kiosk']}/layout"
    h = tenant["kiosk_key"]
    assert service.client.get(url, headers=h).status_code == 404
    body = service.ok(put(service, tenant, ref, compartments_of(kiosk_art), tray_width_cm="37",
                          tray_height_cm="28"))
    assert body["kiosk_id"] == tenant["kiosk"]
    assert [c["slot"] for c in body["compartments"]] == list(kiosk_art.compartments)
    assert body["reference"]["width"] == SIZE[0] and body["reference"]["height"] == SIZE[1]
    assert body["tray_width_cm"] == 37 and body["reference_url"] == url + "/reference"
    assert service.ok(service.client.get(url, headers=h)) == body
    photo = service.client.get(body["reference_url"], headers=h)
    assert photo.status_code == 200 and photo.content == ref
    assert photo.headers["content-type"] == "image/jpeg"
    # Replacing keeps one layout: new compartments, same kiosk.
    one = compartments_of(kiosk_art)[:2]
    replaced = service.ok(put(service, tenant, ref, one))
    assert [c["slot"] for c in replaced["compartments"]] == [c["slot"] for c in one]
    assert replaced["tray_width_cm"] is None
    assert replaced["created_at"] == body["created_at"]
    assert replaced["updated_at"] >= body["updated_at"]
    proposed = service.ok(service.client.post(url + "/propose", headers=h))
    assert (proposed["width"], proposed["height"]) == SIZE and proposed["compartments"]
    assert service.client.delete(url, headers=h).status_code == 204
    assert service.client.get(url, headers=h).status_code == 404
    assert service.client.get(url + "/reference", headers=h).status_code == 404
    assert service.client.delete(url, headers=h).status_code == 404
    assert service.client.post(url + "/propose", headers=h).status_code == 404


def test_propose_from_a_sent_photo(service: Service, tenant: dict[str, Any],
                                   kiosk_art: tb.Kiosk) -> None:
    r = service.ok(service.client.post(
        f"/v1/kiosks/{tenant['kiosk']}/layout/propose", headers=tenant["kiosk_key"],
        files={"reference": ("r.jpg", jpeg(kiosk_art.reference), "image/jpeg")}))
    assert (r["width"], r["height"]) == SIZE
    # The proposals lie on the drawn wells: each proposed centre inside some compartment.
    assert len(r["compartments"]) >= 3
    assert all(c["slot"].startswith("slot-") and len(c["polygon"]) >= 3
               for c in r["compartments"])


@pytest.mark.parametrize(("compartments", "needle"), [
    ("not json", "not valid JSON"),
    ('{"slot": "a"}', "JSON list"),
    ("[]", "at least one compartment"),
    ([{"slot": "a", "polygon": [[1, 1], [50, 1]]}], ">= 3"),
    ([{"slot": "a", "polygon": [[1, 1], [50, 1], [50, 50]]},
      {"slot": "a", "polygon": [[60, 60], [90, 60], [90, 90]]}], "duplicate slot"),
    ([{"slot": "a", "polygon": [[1, 1], [900, 1], [50, 50]]}], "leaves the 480x360"),
    ([{"polygon": [[1, 1], [50, 1], [50, 50]]}], "'slot'"),
])
def test_bad_compartments_are_422(service: Service, tenant: dict[str, Any],
                                  kiosk_art: tb.Kiosk, compartments: Any, needle: str) -> None:
    r = put(service, tenant, jpeg(kiosk_art.reference), compartments)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_layout" and needle in r.json()["detail"], r.text


def test_bad_reference_and_fields(service: Service, tenant: dict[str, Any],
                                  kiosk_art: tb.Kiosk) -> None:
    comps = compartments_of(kiosk_art)
    ref = jpeg(kiosk_art.reference)
    r = put(service, tenant, b"plain text, not a photo", comps)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_image_type"
    r = put(service, tenant, ref[: len(ref) // 3], comps)
    assert r.status_code == 422 and r.json()["error"] == "invalid_image"
    flat = jpeg(np.full((SIZE[1], SIZE[0], 3), 128, np.uint8))
    r = put(service, tenant, flat, comps)
    assert r.status_code == 422 and r.json()["error"] == "layout_reference_unusable", r.text
    r = put(service, tenant, ref, comps, tray_width_cm="-3")
    assert r.status_code == 422 and "tray_width_cm" in r.json()["detail"]
    r = service.client.put(f"/v1/kiosks/{tenant['kiosk']}/layout",
                           data={"compartments": json.dumps(comps)}, files={"x": ("a", b"1")},
                           headers=tenant["kiosk_key"])
    assert r.status_code == 422 and r.json()["error"] == "invalid_input", r.text
    assert "unexpected form field(s) ['x']" in r.json()["detail"]
    r = service.client.put(f"/v1/kiosks/{tenant['kiosk']}/layout",
                           files={"compartments": (None, json.dumps(comps))},
                           headers=tenant["kiosk_key"])
    assert r.status_code == 422 and r.json()["error"] == "reference_required", r.text


def test_who_may_manage_a_layout(service: Service, tenant: dict[str, Any],
                                 kiosk_art: tb.Kiosk) -> None:
    ref, comps = jpeg(kiosk_art.reference), compartments_of(kiosk_art)
    assert put(service, tenant, ref, comps, headers=tenant["app_key"]).status_code == 403
    other = service.key("kiosk", service.canteen("other"))
    assert put(service, tenant, ref, comps, headers=other).status_code == 404
    service.ok(put(service, tenant, ref, comps))
    url = f"/v1/kiosks/{tenant['kiosk']}/layout"
    for method, path in (("GET", url), ("GET", url + "/reference"), ("DELETE", url),
                         ("POST", url + "/propose")):
        assert service.client.request(method, path, headers=other).status_code == 404
        assert service.client.request(method, path,
                                      headers=tenant["app_key"]).status_code == 403
    assert service.ok(service.client.get(url, headers=service.admin))["kiosk_id"] == tenant[
        "kiosk"]
    assert service.client.get("/v1/kiosks/nope/layout", headers=tenant["kiosk_key"]
                              ).status_code == 404
