"""Answers match the OpenAPI document (issue 18, finding 6): every status answered is
documented for its route, every JSON body validates against the documented schema (errors:
the one {"error", "detail"} body), every time is UTC with Z, no number carries float noise.
"""
from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.serve.api.test_auth_matrix import ROUTES, _call, _tenant
from tests.serve.conftest import Service

DATETIME = re.compile(r'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[^"]*)"')
NOISE = re.compile(r"[:\[,]\s*-?\d+\.\d{7,}")  # 455.52000000000004, 0.30000000000000004


@pytest.fixture(scope="module")
def document(service: Service) -> dict[str, Any]:
    return service.client.app.openapi()  # type: ignore[attr-defined,no-any-return]


def _problems(document: dict[str, Any], method: str, path: str, response: Any) -> list[str]:
    """How an answer departs from the document (empty: it matches)."""
    operation = document["paths"][path][method.lower()]
    status = str(response.status_code)
    if status not in operation["responses"]:
        return [f"status {status} not documented"]
    content = operation["responses"][status].get("content", {})
    if not response.headers.get("content-type", "").startswith("application/json"):
        return []
    problems = []
    schema = content.get("application/json", {}).get("schema")
    if schema is not None:
        root = {**schema, "components": document["components"]}
        for error in Draft202012Validator(root).iter_errors(response.json()):
            problems.append(f"schema: {error.message[:160]} at {list(error.path)}")
    for moment in DATETIME.findall(response.text):
        if not moment.endswith("Z"):
            problems.append(f"time {moment} is not UTC with Z")
    problems += [f"number {n.strip(':[, ')}" for n in NOISE.findall(response.text)]
    return problems


def test_errors_are_documented_with_the_service_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorPublic"]["properties"]) == {"error", "detail"}
    missing = []
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            wanted = {"422"}
            if path.startswith("/v1"):
                wanted |= {"401", "403"} | ({"404"} if "{" in path else set())
            if "multipart/form-data" in op.get("requestBody", {}).get("content", {}):
                wanted |= {"400", "413", "415"}
            for code in sorted(wanted):
                ref = (op["responses"].get(code, {}).get("content", {})
                       .get("application/json", {}).get("schema", {}).get("$ref"))
                if ref != "#/components/schemas/ErrorPublic":
                    missing.append(f"{method.upper()} {path} {code}")
    assert not missing, missing


def test_answers_match_the_document(service: Service, document: dict[str, Any],
                                    photo_bytes: dict[str, bytes]) -> None:
    tenant = _tenant(service, photo_bytes)
    ids, keys = tenant["ids"], tenant["keys"]
    failures = []
    calls = [(m, p, r, service.admin) for (m, p), r in sorted(ROUTES.items()) if m == "GET"]
    calls += [("POST", "/v1/analyze", ROUTES[("POST", "/v1/analyze")], keys["app"]),
              ("POST", "/v1/analyze/batch", ROUTES[("POST", "/v1/analyze/batch")],
               keys["app"])]
    for method, path, route, headers in calls:
        r = _call(service, method, path, route, ids, photo_bytes, headers)
        failures += [f"{method} {path}: {p}" for p in _problems(document, method, path, r)]
    c = service.client
    errors = {
        ("GET", "/v1/analyses/{analysis_id}"): c.get("/v1/analyses/nope", headers=keys["app"]),
        ("GET", "/v1/analyses"): c.get("/v1/analyses", params={"limit": "many"},
                                       headers=keys["app"]),
        ("POST", "/v1/analyze"): c.post("/v1/analyze", json={"image": "x"}, headers=keys["app"]),
        ("POST", "/v1/users"): c.post("/v1/users", json={"nickname": 1}, headers=keys["app"]),
        ("GET", "/v1/keys/me"): c.get("/v1/keys/me"),
        ("GET", "/v1/keys"): c.get("/v1/keys", headers=keys["app"]),
    }
    for (method, path), r in errors.items():
        assert 400 <= r.status_code < 500, (path, r.text)
        failures += [f"{method} {path} {r.status_code}: {p}"
                     for p in _problems(document, method, path, r)]
    assert not failures, json.dumps(failures, indent=1)
