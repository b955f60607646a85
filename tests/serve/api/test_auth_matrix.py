"""The auth matrix: every /v1 route, every role, two tenants and two apps of one tenant.

Every route of the app (core, canteen domain, anything added later) must be listed in ROUTES,
so a new route cannot ship without saying who may call it. For each route:
- without a key: 401;
- roles the route does not allow: 403 (or 404);
- keys of another tenant, and a sibling app key for a user's data: 403/404, never data;
- list routes answered to another tenant contain none of the first tenant's ids;
- the owning tenant's allowed roles can read (GET answers 200) and write (other methods
  answer 2xx, each role on a tenant of its own, deletions last).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.serve.conftest import Service

TODAY = dt.date(2026, 11, 28)
Ids = dict[str, str]
Body = Callable[[Ids, dict[str, bytes]], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    """Who may call a route and what a well-formed request to it carries."""

    roles: frozenset[str]  # roles (besides admin) that may use it on their own tenant
    user_scoped: bool = False  # data of one app's users: a sibling app key must not see it
    json: Body | None = None
    files: Body | None = None  # multipart: {"files": ..., "data": ...}
    query: dict[str, str] = field(default_factory=dict)
    shared: bool = False  # the same reference data for every tenant (the food table)


ALL = frozenset({"kiosk", "app"})
KIOSK = frozenset({"kiosk"})
ADMIN = frozenset[str]()


def _photo(ids: Ids, photos: dict[str, bytes]) -> dict[str, Any]:
    return {"files": {"image": ("t.jpg", photos["tray"], "image/jpeg")},
            "data": {"user_id": ids["user_id"]}}


# A layout on the mealtray photo: one compartment in its middle (the photo has features).
LAYOUT = json.dumps([{"slot": "rice", "polygon": [[100, 100], [600, 100], [600, 450],
                                                  [100, 450]]}])


def _layout(ids: Ids, photos: dict[str, bytes]) -> dict[str, Any]:
    return {"files": {"reference": ("r.jpg", photos["tray"], "image/jpeg")},
            "data": {"compartments": LAYOUT}}


# Nothing listens on the discard port of loopback: a webhook test there fails at once.
HOOK_URL = "http://127.0.0.1:9/traylens"

ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/v1/keys"): Route(ADMIN, json=lambda i, p: {"name": "x", "role": "app",
                                                        "canteen_id": i["canteen_id"]}),
    ("GET", "/v1/keys"): Route(ADMIN),
    ("GET", "/v1/keys/me"): Route(ALL),
    ("DELETE", "/v1/keys/{key_id}"): Route(ADMIN),
    ("POST", "/v1/canteens"): Route(ADMIN, json=lambda i, p: {"name": "x"}),
    ("GET", "/v1/canteens"): Route(ALL),
    ("GET", "/v1/canteens/{canteen_id}"): Route(ALL),
    ("GET", "/v1/canteens/{canteen_id}/waste"): Route(
        KIOSK, query={"start": "2026-11-01", "end": "2026-11-30"}),
    ("GET", "/v1/canteens/{canteen_id}/waste/daily"): Route(
        KIOSK, query={"start": "2026-11-01", "end": "2026-11-30"}),
    ("POST", "/v1/users"): Route(ALL, json=lambda i, p: {"canteen_id": i["canteen_id"]}),
    ("GET", "/v1/users"): Route(ALL),
    ("GET", "/v1/users/{user_id}"): Route(ALL, user_scoped=True),
    ("PATCH", "/v1/users/{user_id}"): Route(ALL, user_scoped=True, json=lambda i, p: {
        "display_name": "x", "consent": {"canteen_statistics": True}}),
    ("DELETE", "/v1/users/{user_id}"): Route(ALL, user_scoped=True),
    ("GET", "/v1/users/{user_id}/consent"): Route(ALL, user_scoped=True),
    # every format answers alike: tests/serve/api/test_privacy.py probes csv and fhir too
    ("GET", "/v1/users/{user_id}/export"): Route(ALL, user_scoped=True),
    ("GET", "/v1/users/{user_id}/days/{day}"): Route(ALL, user_scoped=True),
    ("GET", "/v1/users/{user_id}/weeks/{week}"): Route(ALL, user_scoped=True),
    ("GET", "/v1/users/{user_id}/habits"): Route(ALL, user_scoped=True),
    ("GET", "/v1/users/{user_id}/trends"): Route(ALL, user_scoped=True,
                                                 query={"weeks": "12", "end": str(TODAY)}),
    ("POST", "/v1/users/{user_id}/meals"): Route(ALL, user_scoped=True, json=lambda i, p: {
        "eaten_at": f"{TODAY}T12:30:00+09:00", "items": [{"food_id": i["food_id"],
                                                          "grams": 150}]}),
    ("GET", "/v1/users/{user_id}/meals"): Route(ALL, user_scoped=True),
    ("GET", "/v1/foods"): Route(ALL, shared=True, query={"q": "apple", "limit": "5"}),
    ("GET", "/v1/foods/{food_id}"): Route(ALL, shared=True),
    ("POST", "/v1/analyze"): Route(ALL, files=_photo),
    ("POST", "/v1/analyze/batch"): Route(ALL, files=lambda i, p: {
        "files": [("images", ("t.jpg", p["tray"], "image/jpeg"))],
        "data": {"user_id": i["user_id"]}}),
    ("GET", "/v1/analyses"): Route(ALL),
    ("GET", "/v1/analyses/{analysis_id}"): Route(ALL, user_scoped=True),
    ("PATCH", "/v1/analyses/{analysis_id}/items/{item_id}"): Route(
        ALL, user_scoped=True, json=lambda i, p: {"grams": 10}),
    ("GET", "/v1/analyses/{analysis_id}/overlay.png"): Route(ALL, user_scoped=True),
    # A data scientist's tool: the canteen's photos and corrections leave as a zip archive.
    ("POST", "/v1/exports"): Route(KIOSK, json=lambda i, p: {
        "canteen_id": i["canteen_id"], "corrected_only": False}),
    ("POST", "/v1/analyses/{analysis_id}/items"): Route(
        ALL, user_scoped=True, json=lambda i, p: {"food_id": i["food_id"], "grams": 40}),
    ("DELETE", "/v1/analyses/{analysis_id}/items/{item_id}"): Route(ALL, user_scoped=True),
    ("GET", "/v1/analyses/{analysis_id}/corrections"): Route(ALL, user_scoped=True),
    ("GET", "/v1/model"): Route(ALL),
    ("POST", "/v1/model"): Route(ADMIN, files=lambda i, p: {
        "files": {"model": ("m.onnx", b"not onnx", "application/octet-stream")}}),
    ("POST", "/v1/model/rollback"): Route(ADMIN),
    ("GET", "/v1/model/reanalysis"): Route(ADMIN),
    ("POST", "/v1/model/reanalysis"): Route(ADMIN),
    ("POST", "/v1/menus"): Route(KIOSK, json=lambda i, p: {
        "canteen_id": i["canteen_id"], "date": str(TODAY), "meal": "dinner"}),
    ("GET", "/v1/menus"): Route(ALL),
    ("GET", "/v1/menus/{menu_id}"): Route(ALL),
    ("DELETE", "/v1/menus/{menu_id}"): Route(KIOSK),
    ("POST", "/v1/menus/{menu_id}/dishes"): Route(KIOSK, json=lambda i, p: {
        "food_id": i["food_id"], "serving_g": 100}),
    ("DELETE", "/v1/menus/{menu_id}/dishes/{dish_id}"): Route(KIOSK),
    ("GET", "/v1/menus/{menu_id}/dishes/{dish_id}/enrolments"): Route(ALL),
    ("POST", "/v1/menus/{menu_id}/dishes/{dish_id}/enrolments"): Route(
        KIOSK, files=lambda i, p: {"files": {"image": ("e.jpg", p["apple"], "image/jpeg")}}),
    ("DELETE", "/v1/menus/{menu_id}/dishes/{dish_id}/enrolments/{enrolment_id}"): Route(KIOSK),
    ("POST", "/v1/kiosks"): Route(KIOSK, json=lambda i, p: {"name": "x",
                                                          "canteen_id": i["canteen_id"]}),
    ("GET", "/v1/kiosks"): Route(KIOSK),
    ("GET", "/v1/kiosks/{kiosk_id}"): Route(KIOSK),
    ("PUT", "/v1/kiosks/{kiosk_id}/calibration"): Route(KIOSK, json=lambda i, p: {
        "px_per_cm": 20.0}),
    ("PUT", "/v1/kiosks/{kiosk_id}/layout"): Route(KIOSK, files=_layout),
    ("GET", "/v1/kiosks/{kiosk_id}/layout"): Route(KIOSK),
    ("GET", "/v1/kiosks/{kiosk_id}/layout/reference"): Route(KIOSK),
    ("DELETE", "/v1/kiosks/{kiosk_id}/layout"): Route(KIOSK),
    ("POST", "/v1/kiosks/{kiosk_id}/layout/propose"): Route(KIOSK),
    # A pair is its before photo's user's data: the app user's tray here.
    ("POST", "/v1/pairs"): Route(ALL, user_scoped=True, json=lambda i, p: {
        "before_analysis_id": i["analysis_id"]}),
    ("GET", "/v1/pairs"): Route(ALL),
    ("GET", "/v1/pairs/{pair_id}"): Route(ALL, user_scoped=True),
    ("PUT", "/v1/pairs/{pair_id}/after"): Route(ALL, user_scoped=True, json=lambda i, p: {
        "after_analysis_id": i["after_id"]}),
    # Webhooks: the tenant's is the app's own (a sibling app must not see it; the canteen's
    # kiosk key does). Their URL is a closed loopback port: tests send nothing elsewhere.
    ("POST", "/v1/webhooks"): Route(ALL, json=lambda i, p: {
        "url": HOOK_URL, "events": ["pair_closed"], "secret": "s" * 20,
        "canteen_id": i["canteen_id"]}),
    ("GET", "/v1/webhooks"): Route(ALL),
    ("GET", "/v1/webhooks/{webhook_id}"): Route(ALL, user_scoped=True),
    ("DELETE", "/v1/webhooks/{webhook_id}"): Route(ALL, user_scoped=True),
    ("POST", "/v1/webhooks/{webhook_id}/test"): Route(ALL, user_scoped=True),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): Route(ALL, user_scoped=True),
}
# Admin writes whose well-formed request would replace the module's model: test_model_swap.py
# uploads a real model and rolls back (the matrix above sends a file that is no model).
WRITES_CHECKED_ELSEWHERE = {("POST", "/v1/model"), ("POST", "/v1/model/rollback")}


def v1_routes(service: Service) -> set[tuple[str, str]]:
    """Every /v1 operation the running app exposes (from its OpenAPI document)."""
    paths = service.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return {(method.upper(), path) for path, ops in paths.items() if path.startswith("/v1")
            for method in ops}


def test_every_route_is_in_the_matrix(service: Service) -> None:
    exposed = v1_routes(service)
    missing = sorted(exposed - set(ROUTES))
    stale = sorted(set(ROUTES) - exposed)
    assert not missing, f"add these routes to ROUTES in {__file__}: {missing}"
    assert not stale, f"ROUTES lists routes the app no longer has: {stale}"


def _tenant(service: Service, photos: dict[str, bytes]) -> dict[str, Any]:
    """A canteen with kiosk, app and sibling-app keys and one of each resource."""
    s, c = service, service.canteen("matrix")
    keys = {"kiosk": s.key("kiosk", c), "app": s.key("app", c), "app2": s.key("app", c)}
    kiosk_user = s.user(keys["kiosk"])
    app_user = s.user(keys["app"])
    kiosk = s.ok(s.client.post("/v1/kiosks", json={"name": "k", "calibration": {
        "px_per_cm": 21.0}}, headers=keys["kiosk"]), 201)["id"]
    food_id = "sr28:09003"  # apples, raw, with skin
    menu = s.ok(s.client.post("/v1/menus", json={"date": str(TODAY), "meal": "lunch", "dishes": [
        {"food_id": food_id, "serving_g": 180}]}, headers=keys["kiosk"]), 201)
    dish = menu["dishes"][0]["id"]
    enrolment = s.ok(s.client.post(f"/v1/menus/{menu['id']}/dishes/{dish}/enrolments", files={
        "image": ("a.jpg", photos["apple"], "image/jpeg")}, headers=keys["kiosk"]), 201)["id"]
    before = s.ok(s.client.post("/v1/analyze", files={"image": ("t.jpg", photos["tray"])},
                                data={"user_id": kiosk_user, "kiosk_id": kiosk,
                                      "menu_id": menu["id"], "meal_state": "before"},
                                headers=keys["kiosk"]), 201)
    mine = s.ok(s.client.post("/v1/analyze", files={"image": ("t.jpg", photos["tray2"])},
                              data={"user_id": app_user, "meal_state": "before"},
                              headers=keys["app"]), 201)
    # The item PATCH routes need a real item: a tray on which nothing is found is a failure.
    assert mine["items"], f"no item found on the tray photo: {mine}"
    # An after photo of the app's, with no user (so it does not close the pair by itself).
    after = s.ok(s.client.post("/v1/analyze", files={"image": ("t.jpg", photos["tray3"])},
                               data={"meal_state": "after"}, headers=keys["app"]), 201)
    assert mine["pair_id"] and after["pair_id"] is None, (mine, after)
    s.ok(s.client.put(f"/v1/kiosks/{kiosk}/layout", headers=keys["kiosk"],
                      **_layout({}, photos)))
    hook = s.ok(s.client.post("/v1/webhooks", json={
        "url": HOOK_URL, "events": ["pair_closed", "weekly_report"], "secret": "s" * 20},
        headers=keys["app"]), 201)["id"]
    me = s.ok(s.client.get("/v1/keys/me", headers=keys["kiosk"]))
    ids = {"canteen_id": c, "user_id": app_user, "kiosk_user": kiosk_user, "kiosk_id": kiosk,
           "menu_id": menu["id"], "dish_id": dish, "enrolment_id": enrolment,
           "before_id": before["id"], "pair_id": mine["pair_id"], "analysis_id": mine["id"],
           "after_id": after["id"], "item_id": mine["items"][0]["id"],
           "key_id": me["id"], "food_id": food_id, "day": str(TODAY), "week": "2026-W48",
           "webhook_id": hook}
    return {"keys": keys, "ids": ids}


@pytest.fixture(scope="module")
def world(service: Service, photo_bytes: dict[str, bytes]) -> dict[str, Any]:
    """Tenant A (whose data is probed) and tenant B (who probes)."""
    return {"a": _tenant(service, photo_bytes), "b": _tenant(service, photo_bytes)}


def _call(service: Service, method: str, path: str, route: Route, ids: Ids,
          photos: dict[str, bytes], headers: dict[str, str]) -> Any:
    """One request to a route with path ids and a well-formed body from `ids`."""
    url = path.format(**ids)
    kwargs: dict[str, Any] = {"headers": headers, "params": route.query}
    if route.json is not None:
        kwargs["json"] = route.json(ids, photos)
    if route.files is not None:
        kwargs.update(route.files(ids, photos))
    return service.client.request(method, url, **kwargs)


def _secret_ids(ids: Ids) -> set[str]:
    """Ids whose appearance in another tenant's answer would be a leak."""
    return {v for k, v in ids.items() if k not in ("food_id", "day", "week", "item_id")}


def _denied_or_clean(response: Any, method: str, path: str, secrets: set[str],
                     shared: bool = False) -> str | None:
    """None when the answer denies access or (for lists and shared reference data) holds
    none of the secrets."""
    if response.status_code in (403, 404):
        return None
    is_list = method == "GET" and ("{" not in path or shared)
    if is_list and response.status_code == 200:
        leaked = sorted(s for s in secrets if s in response.text)
        return f"leaked {leaked}" if leaked else None
    return f"answered {response.status_code}: {response.text[:200]}"


def test_without_a_valid_key_every_route_is_401(
    service: Service, world: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    ids = world["a"]["ids"]
    failures = []
    for (method, path), route in sorted(ROUTES.items()):
        for headers in ({}, {"Authorization": "Bearer tl_not_a_key"}, {"Authorization": "Basic x"}):
            r = _call(service, method, path, route, ids, photo_bytes, headers)
            if r.status_code != 401 or r.json()["error"] != "unauthorized":
                failures.append(f"{method} {path} {headers}: {r.status_code}")
    assert not failures, failures


def test_roles_a_route_does_not_allow_are_refused(
    service: Service, world: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    a = world["a"]
    failures = []
    for (method, path), route in sorted(ROUTES.items()):
        for role in sorted({"kiosk", "app"} - route.roles):
            r = _call(service, method, path, route, a["ids"], photo_bytes, a["keys"][role])
            if r.status_code not in (403, 404):
                failures.append(f"{role} {method} {path}: {r.status_code} {r.text[:120]}")
    assert not failures, failures


def test_another_tenant_never_reaches_the_data(
    service: Service, world: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    a, b = world["a"], world["b"]
    secrets = _secret_ids(a["ids"])
    failures = []
    for (method, path), route in sorted(ROUTES.items()):
        for role in ("kiosk", "app"):
            r = _call(service, method, path, route, a["ids"], photo_bytes, b["keys"][role])
            problem = _denied_or_clean(r, method, path, secrets, route.shared)
            if problem:
                failures.append(f"tenant B {role} {method} {path}: {problem}")
    assert not failures, failures


def test_a_sibling_app_never_reaches_another_apps_users(
    service: Service, world: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    a = world["a"]
    secrets = {a["ids"]["user_id"], a["ids"]["analysis_id"]}
    failures = []
    for (method, path), route in sorted(ROUTES.items()):
        if not (route.user_scoped or (method == "GET" and "{" not in path)):
            continue
        r = _call(service, method, path, route, a["ids"], photo_bytes, a["keys"]["app2"])
        problem = _denied_or_clean(r, method, path, secrets)
        if problem:
            failures.append(f"sibling app {method} {path}: {problem}")
    assert not failures, failures


def test_the_owner_can_read_everything_it_may(
    service: Service, world: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    a = world["a"]
    failures = []
    for (method, path), route in sorted(ROUTES.items()):
        if method != "GET":
            continue
        for role in sorted(route.roles | {"admin"}):
            headers = service.admin if role == "admin" else a["keys"][role]
            r = _call(service, method, path, route, a["ids"], photo_bytes, headers)
            if r.status_code != 200:
                failures.append(f"{role} {method} {path}: {r.status_code} {r.text[:120]}")
    assert not failures, failures


def _write_order(op: tuple[str, str]) -> tuple[bool, int, str, str]:
    """Writes first, then deletions, the most nested first (an enrolment before its dish,
    a dish before its menu), so no call finds its target deleted by an earlier one."""
    method, path = op
    return method == "DELETE", -path.count("/"), path, method


@pytest.mark.parametrize("role", ["kiosk", "app", "admin"])
def test_the_owner_can_write_everything_it_may(
    service: Service, photo_bytes: dict[str, bytes], role: str
) -> None:
    """Every non-GET route a role may use succeeds with a well-formed request, on the role's
    own fresh tenant (the writes change and delete its resources)."""
    tenant = _tenant(service, photo_bytes)
    headers = service.admin if role == "admin" else tenant["keys"][role]
    writes = sorted((op for op, route in ROUTES.items()
                     if op[0] != "GET" and op not in WRITES_CHECKED_ELSEWHERE
                     and (role == "admin" or role in route.roles)), key=_write_order)
    assert writes
    failures = []
    for method, path in writes:
        r = _call(service, method, path, ROUTES[(method, path)], tenant["ids"], photo_bytes,
                  headers)
        if not 200 <= r.status_code < 300:
            failures.append(f"{role} {method} {path}: {r.status_code} {r.text[:160]}")
    assert not failures, failures


def test_a_revoked_key_stops_working(service: Service, world: dict[str, Any]) -> None:
    canteen = world["b"]["ids"]["canteen_id"]
    created = service.ok(service.client.post("/v1/keys", json={
        "name": "temp", "role": "app", "canteen_id": canteen}, headers=service.admin), 201)
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert service.client.get("/v1/keys/me", headers=headers).status_code == 200
    service.ok(service.client.delete(f"/v1/keys/{created['id']}", headers=service.admin))
    r = service.client.get("/v1/keys/me", headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    listed = service.ok(service.client.get("/v1/keys", headers=service.admin))
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert created["key"] not in json.dumps(listed)


def test_an_after_photo_cannot_close_a_pair_the_caller_cannot_see(
    service: Service, world: dict[str, Any], photo_bytes: dict[str, bytes]
) -> None:
    """POST /v1/analyze with meal_state=after and another user's (or tenant's) pair_id is a
    404 like GET /v1/pairs/{id}, and leaves the pair open (no intake or waste changes)."""
    a, b = world["a"], world["b"]
    pair_id = a["ids"]["pair_id"]
    failures = []
    for who, headers in (("sibling app", a["keys"]["app2"]), ("tenant B app", b["keys"]["app"]),
                         ("tenant B kiosk", b["keys"]["kiosk"])):
        assert service.client.get(f"/v1/pairs/{pair_id}", headers=headers).status_code == 404
        r = service.client.post("/v1/analyze", files={"image": ("t.jpg", photo_bytes["tray3"])},
                                data={"meal_state": "after", "pair_id": pair_id},
                                headers=headers)
        if r.status_code != 404 or r.json()["error"] != "not_found":
            failures.append(f"{who}: {r.status_code} {r.text[:160]}")
    pair = service.ok(service.client.get(f"/v1/pairs/{pair_id}", headers=a["keys"]["app"]))
    assert pair["after_analysis_id"] is None, pair
    assert not failures, failures
