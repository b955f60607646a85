"""Privacy on SQLite and PostgreSQL: consent per person, complete deletion (checked in the
database and the image store) and the export of one person's data (JSON, CSV, FHIR R5)."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serve.core.storage import ImageStore, sha256_hex
from serve.db.session import make_engine
from serve.db.tables.analyses import Analysis, AnalysisItem
from serve.db.tables.core import IdempotencyRecord, StoredImage, User, UserConsent
from serve.db.tables.menus import Enrolment
from serve.db.tables.pairs import MealPair
from serve.services.export import CSV_COLUMNS, FOOD_SYSTEM, USER_SYSTEM
from tests.serve.conftest import Service

KIMCHI = "mfds:D315-670000000-0001"  # 배추김치: a Korean name and no English one
BEFORE_AT, AFTER_AT, PLAIN_AT = ("2026-11-23T03:05:00Z", "2026-11-23T03:40:00Z",
                                 "2026-11-24T11:00:00Z")


@dataclass
class Person:
    """A user of an app key with a closed before/after pair, a corrected item, a plain
    photo whose bytes another user's photo shares, an Idempotency-Key answer and an
    enrolment a kiosk made from their before photo."""

    kiosk: dict[str, str]
    app: dict[str, str]
    canteen_id: str
    user_id: str
    other_user_id: str
    before: dict[str, Any]
    after: dict[str, Any]
    plain: dict[str, Any]
    shared: dict[str, Any]
    enrolment_id: str


@pytest.fixture(scope="module")
def db(service: Service) -> Iterator[Session]:
    """A session on the app's database, for looking at rows directly."""
    engine = make_engine(service.settings.database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def _analyze(service: Service, headers: dict[str, str], photo: bytes, status: int = 201,
             key: str | None = None, **data: str) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return service.ok(service.client.post(
        "/v1/analyze", files={"image": ("t.jpg", photo, "image/jpeg")}, data=data,
        headers=headers | extra), status)


def make_person(service: Service, photos: dict[str, bytes]) -> Person:
    s = service
    canteen = s.canteen("privacy")
    kiosk, app = s.key("kiosk", canteen), s.key("app", canteen)
    user = s.user(app, external_ref="환자-0042", display_name="김민수", sex="female",
                  birth_year=1961)
    other = s.user(app)
    before = _analyze(s, app, photos["tray"], key=f"before-{user}", user_id=user,
                      meal_state="before", captured_at=BEFORE_AT)
    after = _analyze(s, app, photos["tray3"], user_id=user, meal_state="after",
                     captured_at=AFTER_AT)
    assert after["pair_id"] == before["pair_id"] is not None
    assert before["items"], before
    s.ok(s.client.patch(f"/v1/analyses/{before['id']}/items/{before['items'][0]['id']}",
                        json={"food_id": KIMCHI, "grams": 123.4}, headers=app))
    plain = _analyze(s, app, photos["tray2"], user_id=user, captured_at=PLAIN_AT)
    shared = _analyze(s, app, photos["tray2"], user_id=other, captured_at=PLAIN_AT)
    menu = s.ok(s.client.post("/v1/menus", json={
        "date": "2026-11-23", "meal": "lunch",
        "dishes": [{"food_id": "sr28:09003", "serving_g": 180}]}, headers=kiosk), 201)
    dish = menu["dishes"][0]["id"]
    enrolment = s.ok(s.client.post(
        f"/v1/menus/{menu['id']}/dishes/{dish}/enrolments",
        files={"image": ("e.jpg", photos["tray"], "image/jpeg")}, headers=kiosk), 201)
    return Person(kiosk, app, canteen, user, other, before, after, plain, shared,
                  enrolment["id"])


@pytest.fixture(scope="module")
def person(service: Service, photo_bytes: dict[str, bytes]) -> Person:
    return make_person(service, photo_bytes)


def _count(db: Session, model: Any, *where: Any) -> int:
    db.rollback()  # a fresh snapshot
    return int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# --- deletion ------------------------------------------------------------------------------


def test_deleting_a_user_removes_every_row_and_photo_of_theirs_at_once(
    service: Service, photo_bytes: dict[str, bytes], db: Session
) -> None:
    p = make_person(service, photo_bytes)
    store = ImageStore(service.settings.image_dir)
    theirs = [p.before["id"], p.after["id"], p.plain["id"]]
    own_photos = {sha256_hex(photo_bytes["tray"]), sha256_hex(photo_bytes["tray3"])}
    shared_photo = sha256_hex(photo_bytes["tray2"])
    assert _count(db, Analysis, Analysis.id.in_(theirs)) == 3
    assert _count(db, IdempotencyRecord, IdempotencyRecord.key == f"before-{p.user_id}") == 1
    assert all(store.path_for(s).is_file() for s in own_photos | {shared_photo})

    r = service.client.delete(f"/v1/users/{p.user_id}", headers=p.app)
    assert r.status_code == 204, r.text

    assert _count(db, User, User.id == p.user_id) == 0
    assert _count(db, UserConsent, UserConsent.user_id == p.user_id) == 0
    assert _count(db, Analysis, Analysis.id.in_(theirs)) == 0
    assert _count(db, Analysis, Analysis.user_id == p.user_id) == 0
    assert _count(db, AnalysisItem, AnalysisItem.analysis_id.in_(theirs)) == 0
    assert _count(db, MealPair, MealPair.id == p.before["pair_id"]) == 0
    assert _count(db, MealPair, MealPair.user_id == p.user_id) == 0
    assert _count(db, IdempotencyRecord, IdempotencyRecord.key == f"before-{p.user_id}") == 0
    assert _count(db, Enrolment, Enrolment.id == p.enrolment_id) == 0  # made from their photo
    assert _count(db, StoredImage, StoredImage.sha256.in_(own_photos)) == 0
    assert not any(store.path_for(s).exists() for s in own_photos)
    # the other user's analysis of the same bytes keeps its photo, row and file
    assert _count(db, Analysis, Analysis.id == p.shared["id"]) == 1
    assert _count(db, AnalysisItem, AnalysisItem.analysis_id == p.shared["id"]) == len(
        p.shared["items"])
    assert _count(db, StoredImage, StoredImage.sha256 == shared_photo) == 1
    assert store.path_for(shared_photo).is_file()
    assert service.client.get(f"/v1/users/{p.other_user_id}", headers=p.app).status_code == 200
    # gone for every route; a retried Idempotency-Key finds no stored answer of theirs
    for path in (f"/v1/users/{p.user_id}", f"/v1/analyses/{p.before['id']}",
                 f"/v1/pairs/{p.before['pair_id']}", f"/v1/users/{p.user_id}/export"):
        assert service.client.get(path, headers=p.app).status_code == 404, path
    _analyze(service, p.app, photo_bytes["tray"], 404, key=f"before-{p.user_id}",
             user_id=p.user_id, meal_state="before", captured_at=BEFORE_AT)


def test_orphan_files_are_swept_by_the_purge(service: Service, db: Session) -> None:
    """A crash between an erasure's commit and its file removal leaves files no row names;
    purge_orphans removes them once they are older than the grace period."""
    import datetime as dt
    import os

    from serve.core.storage import purge_orphans

    store = ImageStore(service.settings.image_dir)
    orphan = store.put(b"left behind by a crash")
    fresh = store.put(b"an upload whose row is not committed yet")
    old = store.path_for(orphan).stat().st_mtime - 7200
    os.utime(store.path_for(orphan), (old, old))
    db.rollback()
    assert purge_orphans(db, store, grace=dt.timedelta(hours=1)) == 1
    assert not store.path_for(orphan).exists() and store.path_for(fresh).exists()
    store.delete(fresh)


# --- consent -------------------------------------------------------------------------------


def test_consent_is_recorded_on_create_and_change_with_its_history(service: Service) -> None:
    s = service
    canteen = s.canteen("consent")
    app = s.key("app", canteen)
    default = s.ok(s.client.post("/v1/users", json={}, headers=app), 201)
    assert default["consent"] == {"diary": True, "canteen_statistics": True, "updated_at": None}
    given = s.ok(s.client.post("/v1/users", json={"consent": {
        "diary": True, "canteen_statistics": False}}, headers=app), 201)
    assert given["consent"]["canteen_statistics"] is False
    assert given["consent"]["updated_at"] is not None
    changed = s.ok(s.client.patch(f"/v1/users/{default['id']}", json={
        "consent": {"canteen_statistics": False}}, headers=app))
    assert changed["consent"]["diary"] is True and not changed["consent"]["canteen_statistics"]
    record = s.ok(s.client.get(f"/v1/users/{default['id']}/consent", headers=app))
    assert [(h["source"], h["diary"], h["canteen_statistics"]) for h in record["history"]] == [
        ("default", True, True), ("given", True, False)]
    me = s.ok(s.client.get("/v1/keys/me", headers=app))
    assert record["history"][1]["api_key_id"] == me["id"]
    bad = s.client.patch(f"/v1/users/{default['id']}", json={"consent": {"diary": "maybe"}},
                         headers=app)
    assert bad.status_code == 422


def test_without_diary_consent_no_meal_record_is_kept(
    service: Service, photo_bytes: dict[str, bytes], db: Session
) -> None:
    s = service
    canteen = s.canteen("nodiary")
    kiosk = s.key("kiosk", canteen)
    user = s.user(kiosk, consent={"diary": False, "canteen_statistics": True})
    # the kiosk still analyses the tray; it is kept as the canteen's tray, not the person's
    tray = _analyze(s, kiosk, photo_bytes["tray"], user_id=user, meal_state="before")
    assert tray["user_id"] is None and tray["items"] and tray["meal_state"] == "before"
    assert _count(db, Analysis, Analysis.user_id == user) == 0
    for path in (f"/v1/users/{user}/days/2026-11-23", f"/v1/users/{user}/weeks/2026-W48",
                 f"/v1/users/{user}/habits"):
        r = s.client.get(path, headers=kiosk)
        assert r.status_code == 409 and r.json()["error"] == "consent_withdrawn", path
    assert s.ok(s.client.get(f"/v1/analyses?user_id={user}", headers=kiosk)) == []
    exported = s.ok(s.client.get(f"/v1/users/{user}/export", headers=kiosk))
    assert exported["analyses"] == [] and exported["meals"] == []
    # neither diary nor statistics: not even a before/after state that could enter a report
    none = s.user(kiosk, consent={"diary": False, "canteen_statistics": False})
    anonymous = _analyze(s, kiosk, photo_bytes["tray"], user_id=none, meal_state="before")
    assert anonymous["user_id"] is None and anonymous["meal_state"] is None
    assert anonymous["pair_id"] is None


def test_withdrawing_diary_consent_erases_the_stored_meals(
    service: Service, photo_bytes: dict[str, bytes], db: Session
) -> None:
    s = service
    canteen = s.canteen("withdraw")
    app = s.key("app", canteen)
    user = s.user(app)
    meal = _analyze(s, app, photo_bytes["tray2"], user_id=user, captured_at=PLAIN_AT)
    store = ImageStore(s.settings.image_dir)
    sha = meal["image"]["sha256"]
    others = _count(db, Analysis, Analysis.image_sha256 == sha) - 1
    s.ok(s.client.get(f"/v1/users/{user}/days/2026-11-24", headers=app))
    after = s.ok(s.client.patch(f"/v1/users/{user}", json={"consent": {"diary": False}},
                                headers=app))
    assert after["consent"]["diary"] is False
    assert _count(db, Analysis, Analysis.user_id == user) == 0
    assert _count(db, AnalysisItem, AnalysisItem.analysis_id == meal["id"]) == 0
    # the photo goes unless another module test's analysis uses the same bytes
    assert store.path_for(sha).exists() == (others > 0)
    r = s.client.get(f"/v1/users/{user}/days/2026-11-24", headers=app)
    assert r.status_code == 409 and r.json()["error"] == "consent_withdrawn"
    # consent again: a new diary starts (nothing comes back)
    s.ok(s.client.patch(f"/v1/users/{user}", json={"consent": {"diary": True}}, headers=app))
    day = s.ok(s.client.get(f"/v1/users/{user}/days/2026-11-24", headers=app))
    assert day["meals"] == []


def test_waste_leaves_out_trays_of_people_who_decline_canteen_statistics(
    service: Service, photo_bytes: dict[str, bytes]
) -> None:
    s = service
    canteen = s.canteen("waste")
    kiosk = s.key("kiosk", canteen)
    user = s.user(kiosk)
    _analyze(s, kiosk, photo_bytes["tray"], user_id=user, meal_state="before",
             captured_at=BEFORE_AT)
    _analyze(s, kiosk, photo_bytes["tray3"], user_id=user, meal_state="after",
             captured_at=AFTER_AT)
    query = {"start": "2026-11-23", "end": "2026-11-23"}
    waste = s.ok(s.client.get(f"/v1/canteens/{canteen}/waste", params=query, headers=kiosk))
    assert waste["trays"] == 1
    s.ok(s.client.patch(f"/v1/users/{user}", json={"consent": {"canteen_statistics": False}},
                        headers=kiosk))
    waste = s.ok(s.client.get(f"/v1/canteens/{canteen}/waste", params=query, headers=kiosk))
    assert waste["trays"] == 0 and waste["dishes"] == []
    # their own diary still counts the tray
    day = s.ok(s.client.get(f"/v1/users/{user}/days/2026-11-23", headers=kiosk))
    assert [m["kind"] for m in day["meals"]] == ["before_after"]


# --- export --------------------------------------------------------------------------------


def test_json_export_holds_the_person_consent_meals_items_and_corrections(
    service: Service, person: Person
) -> None:
    p = person
    data = service.ok(service.client.get(f"/v1/users/{p.user_id}/export", headers=p.app))
    assert data["format"] == "traylens.user-export.v1"
    assert data["user"]["id"] == p.user_id and data["user"]["display_name"] == "김민수"
    assert data["user"]["consent"]["diary"] is True
    assert [h["source"] for h in data["consent_history"]] == ["default"]
    ids = [a["id"] for a in data["analyses"]]
    assert ids == [p.before["id"], p.after["id"], p.plain["id"]]  # oldest first
    assert p.shared["id"] not in json.dumps(data)  # another person's
    corrected = data["analyses"][0]["items"][0]
    assert corrected["grams"]["value"] == 123.4 and corrected["original"] is not None
    assert corrected["provenance"]["item"] == "user_correction"
    kinds = {m["analysis_id"]: m["kind"] for m in data["meals"]}
    assert kinds == {p.before["id"]: "before_after", p.plain["id"]: "photo"}
    pair = next(m for m in data["meals"] if m["kind"] == "before_after")
    assert pair["pair_id"] == p.before["pair_id"] and pair["after_analysis_id"] == p.after["id"]
    assert pair["served_g"] >= 123.4 and "energy_kcal" in pair["nutrients"]


def test_csv_export_has_one_row_per_item_in_utf8(service: Service, person: Person) -> None:
    p = person
    r = service.client.get(f"/v1/users/{p.user_id}/export", params={"format": "csv"},
                           headers=p.app)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    analyses = [p.before, p.after, p.plain]
    assert len(rows) == sum(max(1, len(a["items"])) for a in analyses)
    first = rows[0]
    assert first["analysis_id"] == p.before["id"] and first["grams"] == "123.4"
    assert first["provenance"] == "user_correction" and first["original_grams"] != ""
    assert first["food_id"] == KIMCHI and first["name_ko"] == "배추김치"
    assert first["original_food_id"] not in ("", KIMCHI)


def test_fhir_export_is_a_valid_r5_bundle_of_nutrition_intakes(
    service: Service, person: Person
) -> None:
    from fhir.resources import __fhir_version__
    from fhir.resources.bundle import Bundle
    from fhir.resources.nutritionintake import NutritionIntake
    from fhir.resources.patient import Patient

    assert __fhir_version__.startswith("5.")  # R5
    p = person
    r = service.client.get(f"/v1/users/{p.user_id}/export", params={"format": "fhir"},
                           headers=p.app)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate_json(r.content)
    assert bundle.type == "collection"
    resources = [e.resource for e in bundle.entry]
    patients = [x for x in resources if isinstance(x, Patient)]
    intakes = [x for x in resources if isinstance(x, NutritionIntake)]
    assert len(patients) == 1 and len(intakes) == 2  # the pair and the plain photo
    patient_url = bundle.entry[0].fullUrl
    assert patients[0].identifier[0].system == USER_SYSTEM
    assert patients[0].identifier[0].value == p.user_id
    assert patients[0].gender == "female" and str(patients[0].birthDate) == "1961"
    for intake in intakes:
        assert intake.status == "completed"
        assert intake.subject.reference == patient_url
        assert intake.occurrenceDateTime is not None
        assert intake.consumedItem
        for item in intake.consumedItem:
            assert item.amount.code == "g" and item.amount.system == "http://unitsofmeasure.org"
    pair = next(i for i in intakes if i.id == p.before["id"])
    foods = {c.nutritionProduct.concept.coding[0].code: c for c in pair.consumedItem}
    kimchi = foods[KIMCHI]  # corrected to kimchi and missing from the after photo: all left
    assert kimchi.notConsumed is True and float(kimchi.amount.value) == 123.4
    coding = kimchi.nutritionProduct.concept.coding[0]
    assert coding.system == FOOD_SYSTEM and coding.display == "배추김치"
    assert any(not c.notConsumed for c in pair.consumedItem)
    assert {lab.nutrient.concept.coding[0].code for lab in pair.ingredientLabel} >= {
        "energy_kcal"}
    # each resource also validates on its own (the R5 NutritionIntake model)
    raw = json.loads(r.content)
    for entry in raw["entry"][1:]:
        NutritionIntake.model_validate(entry["resource"])


def test_an_unknown_format_is_refused(service: Service, person: Person) -> None:
    r = service.client.get(f"/v1/users/{person.user_id}/export", params={"format": "xml"},
                           headers=person.app)
    assert r.status_code == 422


@pytest.mark.parametrize("fmt", ["json", "csv", "fhir"])
def test_export_in_every_format_only_to_those_who_may_see_the_user(
    service: Service, person: Person, fmt: str
) -> None:
    """The owner app, the canteen's kiosk and admins get it; a sibling app and another
    tenant's keys get 404 (the auth matrix checks the default format the same way)."""
    s, p = service, person
    url = f"/v1/users/{p.user_id}/export"
    other = s.canteen("elsewhere")
    for headers in (p.app, p.kiosk, s.admin):
        assert s.client.get(url, params={"format": fmt}, headers=headers).status_code == 200
    for headers in (s.key("app", p.canteen_id), s.key("app", other), s.key("kiosk", other)):
        r = s.client.get(url, params={"format": fmt}, headers=headers)
        assert r.status_code == 404 and p.before["id"] not in r.text
    assert s.client.get(url, params={"format": fmt}).status_code == 401
