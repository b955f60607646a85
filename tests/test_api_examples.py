"""docs/API.md's JSON examples validate against the app's own OpenAPI schema.

Every ```json block in docs/API.md follows a marker comment:
    <!-- example: POST /v1/keys request -->      the route's JSON request body
    <!-- example: POST /v1/keys 201 -->          the route's answer with that status
    <!-- example: none (why) -->                 not checked: not an API body (a file, a
                                                 webhook payload), or abbreviated
Object schemas are made closed (no properties beyond the declared ones) for the check, so a
misspelt or stale field in an example fails as well as a missing required one.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

try:
    import jsonschema
except ImportError:  # a dev dependency: `make test` (and so CI) installs it
    if os.environ.get("CI"):
        raise
    pytest.skip("jsonschema is missing: `pip install -e '.[dev]'` installs it",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
API_MD = REPO / "docs" / "API.md"
MARKER = re.compile(r"<!--\s*example:\s*(?P<spec>.*?)\s*-->")
SPEC = re.compile(r"(?P<method>GET|POST|PUT|PATCH|DELETE)\s+(?P<path>/\S*)\s+"
                  r"(?P<what>request|\d{3})")
# The examples every reader looks for first: they must stay in the file.
REQUIRED = {("POST", "/v1/analyze", "201"), ("POST", "/v1/keys", "201"),
            ("GET", "/v1/pairs/{pair_id}", "200")}


@dataclass(frozen=True)
class Example:
    """One marked JSON block: where it is, what it claims to be, its text."""

    line: int
    spec: str
    text: str

    @property
    def route(self) -> tuple[str, str, str] | None:
        """(method, path, 'request' or status), None for `none (...)` (not checked)."""
        if not self.spec or self.spec.startswith("none"):
            return None
        match = SPEC.fullmatch(self.spec)
        assert match, f"API.md:{self.line}: bad example marker {self.spec!r} " \
                      "(expected 'METHOD /path request|STATUS' or 'none (why)')"
        return match["method"], match["path"], match["what"]


def examples(text: str) -> list[Example]:
    """Every ```json block, with the marker on the nearest non-blank line above it (spec ""
    when there is none)."""
    lines = text.splitlines()
    found = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```json":
            start = i
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            marker = MARKER.fullmatch(lines[j].strip()) if j >= 0 else None
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            found.append(Example(start + 1, marker["spec"] if marker else "", "\n".join(body)))
        i += 1
    return found


def closed(schema: Any) -> Any:
    """A copy in which every object schema with properties allows no others."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


@cache
def openapi() -> dict[str, Any]:
    """The schema the running service serves at /openapi.json (no lifespan needed)."""
    from serve.core.settings import load_settings
    from serve.main import create_app

    return create_app(load_settings()).openapi()


def schema_for(method: str, path: str, what: str) -> dict[str, Any]:
    """The JSON schema of a route's request body or of its answer with a status."""
    paths = openapi()["paths"]
    assert path in paths, f"{path} is no route of the service"
    operation = paths[path].get(method.lower())
    assert operation is not None, f"{method} {path} is no route of the service"
    if what == "request":
        content = operation.get("requestBody", {}).get("content", {})
    else:
        assert what in operation["responses"], \
            f"{method} {path} documents no {what} answer (has {sorted(operation['responses'])})"
        content = operation["responses"][what].get("content", {})
    assert "application/json" in content, f"{method} {path} {what} is not JSON"
    return dict(content["application/json"]["schema"])


def validator(schema: dict[str, Any]) -> Any:
    """Draft 2020-12 (OpenAPI 3.1) over the closed components, formats checked."""
    components = closed(copy.deepcopy(openapi()["components"]))
    root = {**closed(schema), "components": components}
    cls = jsonschema.Draft202012Validator
    return cls(root, format_checker=cls.FORMAT_CHECKER)


DOC_EXAMPLES = examples(API_MD.read_text(encoding="utf-8"))


def test_every_json_block_is_marked() -> None:
    unmarked = [e.line for e in DOC_EXAMPLES if not e.spec]
    assert not unmarked, (
        f"docs/API.md lines {unmarked}: a ```json block without a marker; put "
        "'<!-- example: METHOD /path request|STATUS -->' (checked against the OpenAPI "
        "schema) or '<!-- example: none (why) -->' (not checked) on the line above it")


def test_the_main_examples_are_there() -> None:
    routes = {e.route for e in DOC_EXAMPLES}
    assert routes >= REQUIRED, f"missing from docs/API.md: {REQUIRED - routes}"


CHECKED = [e for e in DOC_EXAMPLES if e.route is not None]


@pytest.mark.parametrize("example", CHECKED, ids=lambda e: f"L{e.line}:{e.spec}")
def test_example_validates(example: Example) -> None:
    try:
        instance = json.loads(example.text)
    except json.JSONDecodeError as exc:
        pytest.fail(f"docs/API.md:{example.line}: not JSON ({exc}); use real values, "
                    "not '...'")
    route = example.route
    assert route is not None
    errors = sorted(validator(schema_for(*route)).iter_errors(instance), key=str)
    assert not errors, f"docs/API.md:{example.line} ({example.spec}):\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in errors[:10])


def test_the_check_is_strict() -> None:
    """A stale field, a missing field and a wrong type are each caught."""
    analysed = next(e for e in DOC_EXAMPLES if e.route == ("POST", "/v1/analyze", "201"))
    check = validator(schema_for("POST", "/v1/analyze", "201"))
    good = json.loads(analysed.text)
    assert check.is_valid(good)
    stale = copy.deepcopy(good)
    stale["items"][0]["after_g"] = 12.0
    missing = copy.deepcopy(good)
    del missing["totals"]["items_counted"]
    wrong = copy.deepcopy(good)
    wrong["image"]["width"] = "1024"
    for bad in (stale, missing, wrong):
        assert not check.is_valid(bad)


def test_markers_are_parsed() -> None:
    text = "x\n<!-- example: GET /readyz 200 -->\n\n```json\n{\"a\": 1}\n```\n"
    assert [(e.line, e.route, e.text) for e in examples(text)] == [
        (4, ("GET", "/readyz", "200"), '{"a": 1}')]
    assert [e.spec for e in examples("```json\n{}\n```\n")] == [""]
    skipped = examples("<!-- example: none (a file) -->\n```json\n{...}\n```\n")
    assert skipped[0].route is None and skipped[0].spec == "none (a file)"
