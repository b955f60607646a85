"""Re-analysis of stored photos after a model change (serve/services/reanalysis.py), in
process, on SQLite and PostgreSQL, with real photos and a second model version (the shipped
network with its labels rotated and its input mean shifted: other foods, one item fewer on a
tray, one more on a plate).

What re-analysed data must equal: a fresh analysis of the same photos with the new model.
Each test builds its own tenants and compares only its own analyses (the module's database
is shared, and every run goes over all of it)."""
from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from model.infer.images import load_image
from serve.db.base import utcnow
from serve.db.session import make_engine, make_session_factory
from serve.db.tables.analyses import Analysis, Reanalysis
from serve.db.tables.core import StoredImage
from serve.db.tables.webhooks import WebhookDelivery
from serve.main import create_app
from serve.services import reanalysis, reanalysis_units
from serve.services.model_admin import sync_once
from serve.services.model_registry import LoadedModel, load_model
from serve.services.pipeline import ImageRequest, analyze
from serve.services.reanalysis import keep_ids
from serve.services.tasks import TaskEnv, reanalyze_photos
from tests.serve.api.test_menus import Api, make_api
from tests.serve.conftest import Service, make_settings, model_variant

pytest.importorskip("onnx", reason="writing the second model file needs the onnx package")

SEOUL = ZoneInfo("Asia/Seoul")
HOOK_URL = "http://127.0.0.1:9/traylens"  # nothing listens: deliveries stay pending
SECRET = "s" * 20


@pytest.fixture(scope="module")
def service(database_url: str, loaded_model: LoadedModel,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The module's app: as tests/serve/conftest.py's, without the periodic re-analysis run
    (runs come from activations and the tests only)."""
    settings = make_settings(database_url, tmp_path_factory.mktemp("data"), loaded_model,
                             reanalysis_interval_minutes=0)
    with TestClient(create_app(settings, model=loaded_model)) as client:
        yield Service(client, settings)


def second_model(loaded_model: LoadedModel, folder: Path) -> LoadedModel:
    """The second model version: the same network with its labels rotated by one and its
    input mean shifted by 0.15 (other foods; an item fewer on a tray, one more on a plate)."""

    def edit(meta: dict[str, Any]) -> None:
        meta["version"] = f"{meta['version']}+reanalysis-test"
        meta["labels"] = meta["labels"][1:] + meta["labels"][:1]
        meta["food_ids"] = meta["food_ids"][1:] + meta["food_ids"][:1]
        meta["mean"] = [m + 0.15 for m in meta["mean"]]

    return load_model(model_variant(loaded_model, folder / "second.onnx", edit))


@pytest.fixture(scope="module")
def second(loaded_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The second model version (second_model)."""
    return second_model(loaded_model, tmp_path_factory.mktemp("models"))


def _jpeg(data: bytes, quality: int) -> bytes:
    """The same photo as other bytes (another stored blob)."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def _at(minutes_ago: float) -> str:
    return (utcnow() - dt.timedelta(minutes=minutes_ago)).isoformat()


# Yesterday's lunch in Seoul: inside the 7 days looked back, one local day for the diary.
DAY = (dt.datetime.now(SEOUL) - dt.timedelta(days=1)).date()


def _lunch(minute: int) -> str:
    return dt.datetime.combine(DAY, dt.time(12, minute), SEOUL).isoformat()


def _analyze(api: Api, who: str, photo: bytes, **data: Any) -> dict[str, Any]:
    r = api.call(who, "POST", "/v1/analyze", files={"image": ("p.jpg", photo, "image/jpeg")},
                 data=data)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _get(api: Api, who: str, url: str, **params: Any) -> Any:
    r = api.call(who, "GET", url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _activate(service: Service, model: LoadedModel) -> dict[str, Any]:
    r = service.client.post("/v1/model", params={"force": "true"}, headers=service.admin,
                            files={"model": ("m.onnx", model.path.read_bytes())})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _progress(service: Service) -> dict[str, Any]:
    return dict(service.ok(service.client.get("/v1/model/reanalysis", headers=service.admin)))


def _wait_done(service: Service, seconds: float = 180) -> dict[str, Any]:
    """Progress once nothing is left or in flight (the in-process runner works meanwhile)."""
    deadline = time.monotonic() + seconds
    while True:
        now = _progress(service)
        if now["remaining"] == 0 and now["in_progress"] == 0:
            return now
        assert time.monotonic() < deadline, now
        time.sleep(0.2)


def _items(analysis: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a re-analysis must reproduce of an item (its id aside)."""
    return [(i["label"], i["food_id"], i["box"], i["grams"], i["confidence"], i["nutrients"])
            for i in analysis["items"]]


def _without_refs(pair: dict[str, Any]) -> dict[str, Any]:
    """A pair result without the ids of its analyses and items."""
    result = dict(pair["result"])
    result["items"] = [{k: v for k, v in i.items() if k not in ("before_ref", "after_ref")}
                       for i in result["items"]]
    return result


def _day(api: Api, who: str, user: str, day: str) -> dict[str, Any]:
    report = _get(api, who, f"/v1/users/{user}/days/{day}")
    return {"totals": report["totals"], "incomplete": report["incomplete"],
            "meals": [(m["kind"], m["served_g"], m["leftover_g"], m["foods"], m["leftovers"])
                      for m in report["meals"]]}


def _seoul_tenant(service: Service) -> tuple[str, dict[str, str]]:
    """A canteen in Seoul time and its kiosk key (to compare with make_api's canteen A)."""
    canteen = service.ok(service.client.post("/v1/canteens", headers=service.admin, json={
        "name": f"C-{uuid.uuid4().hex[:6]}", "timezone": "Asia/Seoul"}), 201)["id"]
    return canteen, service.key("kiosk", canteen)


def test_keep_ids_gives_old_ids_to_the_clearly_same_regions() -> None:
    old = [("a", [0, 0, 100, 100]), ("b", [200, 0, 300, 100]), ("c", [0, 200, 50, 250])]
    new = [[205, 5, 300, 100], [0, 0, 90, 100], [0, 0, 100, 100], [400, 400, 500, 500]]
    # b -> 1st; a overlaps the 3rd exactly and the 2nd at 0.9: the best overlap wins; c none
    assert keep_ids(old, new) == ["b", None, "a", None]
    assert keep_ids(old, []) == [] and keep_ids([], new) == [None] * 4
    assert keep_ids([("x", [])], [[0, 0, 1, 1]]) == [None]  # an item without a box


def test_activation_reanalyses_stored_photos_and_every_read_follows(
    service: Service, loaded_model: LoadedModel, second: LoadedModel,
    photo_bytes: dict[str, bytes],
) -> None:
    api = make_api(service)  # canteen A, Seoul time
    kiosk, app = api.keys["kiosk_a"], api.keys["app_a"]
    user = service.user(kiosk)  # whose meals are re-analysed
    other = service.user(kiosk)  # whose meals the rules leave alone
    hook = service.ok(service.client.post("/v1/webhooks", headers=kiosk, json={
        "url": HOOK_URL, "events": ["analysis_reanalyzed"], "secret": SECRET}), 201)["id"]
    old_version = loaded_model.version

    # Re-analysed: a plate, and a before/after pair of one tray.
    plain = _analyze(api, "kiosk_a", photo_bytes["apple"], user_id=user,
                     captured_at=_lunch(0))
    before = _analyze(api, "kiosk_a", photo_bytes["tray"], user_id=user, meal_state="before",
                      captured_at=_lunch(20))
    after = _analyze(api, "kiosk_a", photo_bytes["tray2"], user_id=user, meal_state="after",
                     captured_at=_lunch(45))
    assert before["pair_id"] and after["pair_id"] == before["pair_id"]
    pair_before = _get(api, "kiosk_a", f"/v1/pairs/{before['pair_id']}")
    # Left alone: a corrected one, a menu's, a kiosk layout's, one whose photo is gone from
    # the store, a purged one, one older than the window, a manual meal.
    corrected = _analyze(api, "kiosk_a", photo_bytes["tray3"], user_id=other,
                         captured_at=_at(30))
    r = api.call("kiosk_a", "PATCH",
                 f"/v1/analyses/{corrected['id']}/items/{corrected['items'][0]['id']}",
                 json={"grams": 123})
    assert r.status_code == 200, r.text
    corrected = r.json()
    menu = service.ok(service.client.post("/v1/menus", headers=kiosk, json={
        "date": str(dt.datetime.now(SEOUL).date()), "meal": "lunch",
        "dishes": [{"food_id": "sr28:09003", "serving_g": 180}]}), 201)
    with_menu = _analyze(api, "kiosk_a", _jpeg(photo_bytes["apple"], 90), user_id=other,
                         menu_id=menu["id"], captured_at=_at(30))
    kiosk_id = service.ok(service.client.post("/v1/kiosks", headers=kiosk,
                                              json={"name": "line 9"}), 201)["id"]
    service.ok(service.client.put(f"/v1/kiosks/{kiosk_id}/layout", headers=kiosk, files={
        "reference": ("r.jpg", photo_bytes["tray"], "image/jpeg")}, data={
        "compartments": '[{"slot": "main", "polygon": [[100, 100], [600, 100], [600, 450], '
                        '[100, 450]]}]'}))
    with_layout = _analyze(api, "kiosk_a", photo_bytes["tray"], user_id=other,
                           kiosk_id=kiosk_id, captured_at=_at(30))
    assert with_layout["layout"] is not None
    missing = _analyze(api, "kiosk_a", photo_bytes["mix"], user_id=other, captured_at=_at(30))
    purged = _analyze(api, "kiosk_a", _jpeg(photo_bytes["apple"], 80), user_id=other,
                      captured_at=_at(30))
    old = _analyze(api, "kiosk_a", photo_bytes["apple"], user_id=other,
                   captured_at=_at(9 * 24 * 60))
    manual = service.ok(api.call("app_a", "POST", f"/v1/users/{service.user(app)}/meals", json={
        "eaten_at": _at(20), "items": [{"food_id": "sr28:09003", "grams": 150}]}), 201)
    store = service.client.app.state.image_store  # type: ignore[attr-defined]
    store.delete(missing["image"]["sha256"])
    factory = api.session_factory()
    with factory.begin() as s:
        s.execute(update(StoredImage).where(StoredImage.sha256 == purged["image"]["sha256"])
                  .values(purged_at=utcnow()))
    store.delete(purged["image"]["sha256"])
    left_alone = [corrected, with_menu, with_layout, missing, purged, old, manual]

    activated = _activate(service, second)  # enqueues the run in this process
    assert activated["version"] == second.version != old_version
    progress = _wait_done(service)
    assert progress["model_version"] == second.version and progress["enabled"]
    # Seen once (2026-12-06, a fresh clone under the full suite): 0 re-analysed, not
    # reproduced alone or under load since; the progress says why if it comes back.
    assert progress["reanalyzed"] == 3 and progress["skipped"]["photo_missing"] == 1, progress
    assert progress["skipped"]["pair_partner"] == progress["skipped"]["changed"] == 0
    assert {k: v >= 1 for k, v in progress["not_eligible"].items()} == {
        "corrected": True, "menu": True, "layout": True, "photo_purged": True}

    # The same photos analysed afresh with the new model, in a canteen like A.
    canteen_c, kiosk_c = _seoul_tenant(service)
    api.keys["kiosk_c"] = kiosk_c
    user_c = service.user(kiosk_c)
    fresh = _analyze(api, "kiosk_c", photo_bytes["apple"], user_id=user_c,
                     captured_at=_lunch(0))
    fresh_before = _analyze(api, "kiosk_c", photo_bytes["tray"], user_id=user_c,
                            meal_state="before", captured_at=_lunch(20))
    fresh_after = _analyze(api, "kiosk_c", photo_bytes["tray2"], user_id=user_c,
                           meal_state="after", captured_at=_lunch(45))

    stored = {}
    for was, now in ((plain, fresh), (before, fresh_before), (after, fresh_after)):
        got = _get(api, "kiosk_a", f"/v1/analyses/{was['id']}")
        stored[was["id"]] = got
        assert got["model_version"] == second.version == now["model_version"]
        assert got["previous_model_version"] == old_version and got["reanalyzed_at"]
        assert _items(got) == _items(now) != _items(was)
        assert got["totals"] == now["totals"] and got["scale"] == now["scale"]
        assert (got["id"], got["captured_at"], got["user_id"], got["pair_id"]) == (
            was["id"], was["captured_at"], was["user_id"], was["pair_id"])
        old_ids = {i["id"] for i in was["items"]}
        assert [i["id"] if i["id"] in old_ids else None for i in got["items"]] == keep_ids(
            [(i["id"], i["box"]) for i in was["items"]], [i["box"] for i in now["items"]])
    # The plate: the coin is food to the new model (an added id), the apple's region kept.
    assert len(stored[plain["id"]]["items"]) == len(plain["items"]) + 1
    assert plain["items"][0]["id"] in [i["id"] for i in stored[plain["id"]]["items"]]
    # The pair, the diary and the waste report read the new items.
    pair = _get(api, "kiosk_a", f"/v1/pairs/{before['pair_id']}")
    fresh_pair = _get(api, "kiosk_c", f"/v1/pairs/{fresh_before['pair_id']}")
    assert _without_refs(pair) == _without_refs(fresh_pair) != _without_refs(pair_before)
    refs = {i["before_ref"] for i in pair["result"]["items"]} - {None}
    assert refs <= {i["id"] for i in stored[before["id"]]["items"]}
    day = str(DAY)
    assert _day(api, "kiosk_a", user, day) == _day(api, "kiosk_c", user_c, day)
    waste = _get(api, "kiosk_a", f"/v1/canteens/{api.canteen_a}/waste", start=day, end=day)
    fresh_waste = _get(api, "kiosk_c", f"/v1/canteens/{canteen_c}/waste", start=day, end=day)
    assert waste["dishes"] == fresh_waste["dishes"] and waste["trays"] == 1
    # The rest is as it was.
    for was in left_alone:
        assert _get(api, "kiosk_a", f"/v1/analyses/{was['id']}") == was, was["id"]
    # One webhook event per re-analysed photo, naming the ids kept, removed and added.
    with factory() as s:
        events = {d.body for d in s.scalars(select(WebhookDelivery).where(
            WebhookDelivery.webhook_id == hook))}
    datas = {e["data"]["analysis_id"]: e["data"] for e in map(json.loads, events)}
    assert set(datas) == {plain["id"], before["id"], after["id"]}
    for analysis_id, data in datas.items():
        was = next(a for a in (plain, before, after) if a["id"] == analysis_id)
        now_ids = [i["id"] for i in stored[analysis_id]["items"]]
        assert data["previous_model_version"] == old_version
        assert data["model_version"] == second.version
        assert sorted(data["items"]["kept"] + data["items"]["added"]) == sorted(now_ids)
        assert sorted(data["items"]["kept"] + data["items"]["removed"]) == sorted(
            i["id"] for i in was["items"])
        assert data["pair_id"] == was["pair_id"]

    # A second run (two, to be sure) changes nothing.
    app_state = service.client.app.state  # type: ignore[attr-defined]
    env = TaskEnv(factory, service.settings, store,
                  models=reanalysis.registry_models(app_state.models))
    assert reanalyze_photos(env) == 0 and reanalyze_photos(env) == 0
    for analysis_id, got in stored.items():
        assert _get(api, "kiosk_a", f"/v1/analyses/{analysis_id}") == got
    with factory() as s:
        assert len(list(s.scalars(select(WebhookDelivery.id).where(
            WebhookDelivery.webhook_id == hook)))) == 3
    # POST starts a run at once (nothing to do now) and answers where things stand.
    started = service.ok(service.client.post("/v1/model/reanalysis", headers=service.admin),
                         202)
    assert started["remaining"] == 0 and started["model_version"] == second.version


def _fresh_photos(api: Api, photo_bytes: dict[str, bytes]) -> list[str]:
    """Six analyses of canteen A: three plates, and a tray pair."""
    user = api.service.user(api.keys["kiosk_a"])
    ids = [_analyze(api, "kiosk_a", _jpeg(photo_bytes[name], q), user_id=user,
                    captured_at=_at(30))["id"]
           for name, q in (("apple", 70), ("mix", 70), ("tray3", 70), ("apple", 60))]
    for state, name in (("before", "tray"), ("after", "tray2")):
        ids.append(_analyze(api, "kiosk_a", photo_bytes[name], user_id=user, meal_state=state,
                            captured_at=_at(20))["id"])
    return ids


def _activate_quietly(service: Service, database_url: str, model: LoadedModel,
                      loaded_model: LoadedModel) -> None:
    """Activate `model` through a second app whose re-analysis is off: nothing is enqueued
    (the module's app follows within its model sync)."""
    settings = make_settings(database_url, service.settings.data_dir, loaded_model,
                             model_sync_seconds=0, reanalysis_lookback_days=0)
    with TestClient(create_app(settings, model=loaded_model)) as other:
        r = other.post("/v1/model", params={"force": "true"}, headers=service.admin,
                       files={"model": ("m.onnx", model.path.read_bytes())})
        assert r.status_code == 201, r.text
        assert other.post("/v1/model/reanalysis", headers=service.admin).status_code == 409
    state = service.client.app.state  # type: ignore[attr-defined]
    sync_once(state.session_factory, state.models, state.metrics)  # now, not within 5 s


def test_two_workers_at_once_reanalyse_each_photo_once(
    service: Service, loaded_model: LoadedModel, second: LoadedModel,
    photo_bytes: dict[str, bytes], database_url: str,
) -> None:
    """Two runs started together (each with its own engine, like two processes), small
    batches: every analysis re-analysed by exactly one of them; then both find nothing."""
    api = make_api(service)
    _activate_quietly(service, database_url, second, loaded_model)
    ids = _fresh_photos(api, photo_bytes)  # made with `second` now active
    _activate_quietly(service, database_url, loaded_model, loaded_model)
    settings = make_settings(database_url, service.settings.data_dir, loaded_model,
                             reanalysis_batch=2)
    store = service.client.app.state.image_store  # type: ignore[attr-defined]

    def models(sha: str, _path: Path) -> LoadedModel | None:
        return loaded_model if sha == loaded_model.sha256 else None

    engines = [make_engine(database_url) for _ in range(2)]
    envs = [TaskEnv(make_session_factory(e), settings, store, models=models) for e in engines]
    start = threading.Barrier(2)
    counts: list[int] = []

    def work(env: TaskEnv) -> None:
        start.wait()
        counts.append(reanalyze_photos(env))

    threads = [threading.Thread(target=work, args=(env,)) for env in envs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(counts) == 2, counts
    factory = api.session_factory()
    with factory() as s:
        target = reanalysis_units.current_target(s)
        assert target is not None and target.version == loaded_model.version
        rows = list(s.scalars(select(Reanalysis).where(
            Reanalysis.model_version_id == target.activation_id)))
        mine = {a.id: a for a in s.scalars(select(Analysis).where(Analysis.id.in_(ids)))}
    done = [r for r in rows if r.status == "done"]
    assert sum(counts) == len(done) and len({r.analysis_id for r in rows}) == len(rows)
    assert set(ids) <= {r.analysis_id for r in done}
    for analysis in mine.values():
        assert analysis.model_version == loaded_model.version
        assert analysis.previous_model_version == second.version
    assert [reanalyze_photos(env) for env in envs] == [0, 0]
    for e in engines:
        e.dispose()


@dataclass(frozen=True)
class Staged:
    """One analysis made with the active model, then the other model activated quietly:
    the steps of a run are the test's to take."""

    api: Api
    analysis: dict[str, Any]
    made_with: str  # the version the analysis was made with
    newer: LoadedModel
    target: reanalysis_units.Target

    def unit(self) -> reanalysis_units.Unit:
        """The analysis as a unit of work (a new claim token each time)."""
        with self.api.session_factory()() as s:
            units, lone = reanalysis_units.units_of(s, self.target, [self.analysis["id"]])
        assert not lone and [[m.id for m in u.members] for u in units] == [
            [self.analysis["id"]]]
        return units[0]

    def run(self, unit: reanalysis_units.Unit) -> None:
        """Decode the photo and run the new model on it (the claim is the caller's)."""
        service = self.api.service
        store = service.client.app.state.image_store  # type: ignore[attr-defined]
        reanalysis.load_photos(unit, store, service.settings, self.newer.model.meta.input_size)
        reanalysis.run_model([unit], self.newer, service.settings, None)


def _staged(service: Service, loaded_model: LoadedModel, second: LoadedModel,
            database_url: str, photo: bytes) -> Staged:
    api = make_api(service)
    user = service.user(api.keys["kiosk_a"])
    active = service.ok(service.client.get("/v1/model", headers=service.admin))["version"]
    newer = second if active == loaded_model.version else loaded_model
    analysis = _analyze(api, "kiosk_a", photo, user_id=user, captured_at=_at(10))
    _activate_quietly(service, database_url, newer, loaded_model)
    with api.session_factory()() as s:
        target = reanalysis_units.current_target(s)
    assert target is not None and target.version == newer.version
    return Staged(api, analysis, active, newer, target)


def test_a_user_change_during_the_run_wins(
    service: Service, loaded_model: LoadedModel, second: LoadedModel,
    photo_bytes: dict[str, bytes], database_url: str,
) -> None:
    """A correction committed after the photo was claimed and run, before the items are
    replaced: the replacement backs off (`changed`) and the correction stays."""
    staged = _staged(service, loaded_model, second, database_url,
                     _jpeg(photo_bytes["tray"], 75))
    api, analysis, target = staged.api, staged.analysis, staged.target
    factory = api.session_factory()
    unit = staged.unit()
    assert reanalysis_units.claim(factory, target, unit, utcnow())
    staged.run(unit)
    item = analysis["items"][0]["id"]
    fixed = service.ok(api.call("kiosk_a", "PATCH", f"/v1/analyses/{analysis['id']}/items/{item}",
                                json={"grams": 77}))
    assert not reanalysis.replace(factory, target, unit, utcnow())
    reanalysis_units.skip(factory, target, unit, reanalysis_units.Skip.CHANGED, utcnow())
    assert _get(api, "kiosk_a", f"/v1/analyses/{analysis['id']}") == fixed
    with factory() as s:
        row = s.scalars(select(Reanalysis).where(
            Reanalysis.model_version_id == target.activation_id,
            Reanalysis.analysis_id == analysis["id"])).one()
    assert (row.status, row.reason) == ("skipped", "changed")


def test_a_claim_whose_lease_ran_out_is_taken_over(
    service: Service, loaded_model: LoadedModel, second: LoadedModel,
    photo_bytes: dict[str, bytes], database_url: str,
) -> None:
    """A worker that died holding a claim: once its lease is over the next run takes the
    photo; the dead worker's late write is refused."""
    staged = _staged(service, loaded_model, second, database_url,
                     _jpeg(photo_bytes["apple"], 65))
    api, analysis, target = staged.api, staged.analysis, staged.target
    factory = api.session_factory()
    dead = staged.unit()
    lease = reanalysis_units.CLAIM_LEASE
    assert reanalysis_units.claim(factory, target, dead, utcnow() - 2 * lease)
    with factory() as s:  # its lease ended long ago: a candidate again
        assert analysis["id"] in reanalysis_units.candidates(
            s, target, utcnow() - dt.timedelta(days=1), utcnow(), 10_000)
    live = staged.unit()
    assert reanalysis_units.claim(factory, target, live, utcnow())
    for unit in (dead, live):
        staged.run(unit)
    assert not reanalysis.replace(factory, target, dead, utcnow())  # not its claim any more
    assert reanalysis.replace(factory, target, live, utcnow())
    got = _get(api, "kiosk_a", f"/v1/analyses/{analysis['id']}")
    assert got["model_version"] == staged.newer.version
    assert got["previous_model_version"] == staged.made_with


def test_reanalysis_routes_are_admin_only_and_off_answers_409(service: Service) -> None:
    api = make_api(service)
    for who in ("kiosk_a", "app_a"):
        assert api.call(who, "GET", "/v1/model/reanalysis").status_code == 403
        assert api.call(who, "POST", "/v1/model/reanalysis").status_code == 403
    progress = _progress(service)
    assert progress["lookback_days"] == 7 and progress["since"].endswith("Z")
    assert set(progress["skipped"]) == {s.value for s in reanalysis_units.Skip}


def test_a_reanalysis_makes_the_masks_the_setting_says_now(
    service: Service, loaded_model: LoadedModel, second: LoadedModel,
    photo_bytes: dict[str, bytes], database_url: str,
) -> None:
    """A pair made on the model's masks, re-analysed by a worker with TRAYLENS_REFINE_MASKS
    on: both photos (replaced together) say refined, their areas are a refined analysis's,
    and the pair compares their areas again (no masks_differ)."""
    api = make_api(service)
    user = service.user(api.keys["kiosk_a"])
    active = service.ok(service.client.get("/v1/model", headers=service.admin))["version"]
    newer = second if active == loaded_model.version else loaded_model
    photos = (photo_bytes["tray"], photo_bytes["tray2"])
    before = _analyze(api, "kiosk_a", photos[0], user_id=user, meal_state="before",
                      captured_at=_at(20))
    after = _analyze(api, "kiosk_a", photos[1], user_id=user, meal_state="after",
                     captured_at=_at(10))
    assert (before["masks"], after["masks"]) == ("model", "model")
    assert before["pair_id"] and after["pair_id"] == before["pair_id"]
    _activate_quietly(service, database_url, newer, loaded_model)
    settings = make_settings(database_url, service.settings.data_dir, loaded_model,
                             refine_masks=True)
    store = service.client.app.state.image_store  # type: ignore[attr-defined]

    def models(sha: str, _path: Path) -> LoadedModel | None:
        return newer if sha == newer.sha256 else None

    assert reanalyze_photos(TaskEnv(api.session_factory(), settings, store,
                                    models=models)) >= 2
    fit = newer.model.meta.input_size
    for was, photo in zip((before, after), photos, strict=True):
        got = _get(api, "kiosk_a", f"/v1/analyses/{was['id']}")
        assert (got["masks"], got["model_version"], got["previous_model_version"]) == (
            "refined", newer.version, active)
        (fresh,), _ = analyze(newer.model, [ImageRequest(load_image(photo, fit=fit))],
                              refine_masks=True)
        assert [i["area_px"] for i in got["items"]] == [i.area_px for i in fresh.items]
    pair = _get(api, "kiosk_a", f"/v1/pairs/{before['pair_id']}")
    assert pair["result"]["items"]
    assert not any("masks_differ" in i["flags"] for i in pair["result"]["items"])
