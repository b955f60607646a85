"""A NUL character in any text input is a 422 on every route and database.

PostgreSQL cannot store NUL in text (it answered 500), SQLite stored it: both refuse it now,
in one place (serve.core.textguard for paths, query strings and JSON bodies; core/uploads for
multipart fields and filenames).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx

from tests.serve.api.test_auth_matrix import ROUTES, Route
from tests.serve.conftest import Service

NUL = "a\x00b"
# Stand-in ids: the NUL is refused before any id is looked up.
IDS = {name: f"id{n}" for n, name in enumerate(
    ("canteen_id", "user_id", "kiosk_user", "kiosk_id", "menu_id", "dish_id", "enrolment_id",
     "before_id", "pair_id", "analysis_id", "after_id", "item_id", "key_id", "webhook_id"))}
IDS.update(food_id="sr28:09003", day="2026-11-28", week="2026-W48")


def _with_nul(value: Any) -> Iterator[Any]:
    """`value` once for each of its strings (keys included), that string holding a NUL."""
    if isinstance(value, str):
        yield value + "\x00"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield {**{k: v for k, v in value.items() if k != key}, key + "\x00": item}
            for bad in _with_nul(item):
                yield {**value, key: bad}
    elif isinstance(value, list):
        for n, item in enumerate(value):
            for bad in _with_nul(item):
                yield [*value[:n], bad, *value[n + 1:]]


def _requests(path: str, route: Route, photos: dict[str, bytes]) -> Iterator[tuple[str, dict]]:
    """(where, request kwargs) with one NUL each: path ids, query, JSON, form fields, files."""
    base: dict[str, Any] = {"params": dict(route.query)}
    body = route.json(IDS, photos) if route.json else None
    form = route.files(IDS, photos) if route.files else None
    if body is not None:
        base["json"] = body
    if form is not None:
        base.update(form)
    for param in re.findall(r"{(\w+)}", path):
        yield f"path {param}", {**base, "url": path.format(**{**IDS, param: "a%00b"})}
    url = path.format(**IDS)
    yield "query", {**base, "url": url, "params": {**route.query, "note": NUL}}
    for name in route.query:
        yield f"query {name}", {**base, "url": url, "params": {**route.query, name: NUL}}
    for bad in _with_nul(body) if body is not None else ():
        yield f"json {bad}", {**base, "url": url, "json": bad}
    if form is not None:
        for name in form.get("data", {}):
            data = {**form["data"], name: form["data"][name] + "\x00"}
            yield f"form {name}", {**base, "url": url, "data": data}
        files = form["files"]
        items = list(files.items()) if isinstance(files, dict) else list(files)
        field, (filename, content, *rest) = items[0]
        renamed = [(field, (filename + "\x00", content, *rest)), *items[1:]]
        yield "filename", _raw_multipart(url, renamed, form.get("data", {}))


def _raw_multipart(url: str, files: list[Any], data: dict[str, str]) -> dict[str, Any]:
    """A multipart body whose filename holds a raw NUL byte (httpx would send %00)."""
    encoded = httpx.Request("POST", "http://test/", files=files, data=data)
    body = encoded.read().replace(b'%00"', b'\x00"')
    return {"url": url, "content": body,
            "headers_extra": {"Content-Type": encoded.headers["Content-Type"]}}


def test_nul_is_refused_everywhere(service: Service, photo_bytes: dict[str, bytes]) -> None:
    failures = []
    for (method, path), route in sorted(ROUTES.items()):
        for where, kwargs in _requests(path, route, photo_bytes):
            headers = {**service.admin, **kwargs.pop("headers_extra", {})}
            r = service.client.request(method, kwargs.pop("url"), headers=headers, **kwargs)
            if r.status_code != 422 or "NUL" not in r.json().get("detail", ""):
                failures.append(f"{method} {path} {where}: {r.status_code} {r.text[:100]}")
    assert not failures, failures


def test_an_escaped_backslash_is_no_nul(service: Service) -> None:
    """The six characters \\u0000 are text, not a NUL: stored as sent."""
    name = "canteen \\u0000 backslash"
    created = service.ok(service.client.post("/v1/canteens", json={"name": name},
                                             headers=service.admin), 201)
    assert created["name"] == name
    r = service.client.post("/v1/canteens", content=b'{"name": "x\\u0000"}',
                            headers={**service.admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input", r.text
