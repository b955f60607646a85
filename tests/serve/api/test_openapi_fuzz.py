"""schemathesis against the app's own OpenAPI document (issue 18): every operation, a few
generated requests each (schema-valid and schema-violating), for an app, a kiosk and an admin
key, on SQLite and PostgreSQL, with every schemathesis check on: no 5xx, every status, content
type, header and body as documented, invalid data refused, valid data accepted.

Bounded so that it runs in `make test`: EXAMPLES cases per operation and role, derandomized
(the same requests on every run), no shrinking. docs/RELIABILITY.md ("Fuzzing the OpenAPI
document") says what it found and how long it takes.

How the requests reach real resources: a tenant of test_auth_matrix (a canteen with a user,
kiosk, menu, dish, enrolment, analyses, a pair, a layout and a webhook) is seeded per module,
and each operation is fuzzed both with generated path ids (unknown: 404) and with that
tenant's ids. Deletions of those ids run in the last role only (admin), so that the app and
kiosk runs find them. Photo fields get real photos (JPEG, PNG, WebP) or a few garbage bytes.
"""
from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.core.failures import Failure
from schemathesis.core.media_types import MEDIA_TYPE_STRATEGIES
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.serve.api.test_auth_matrix import _tenant
from tests.serve.conftest import Service

EXAMPLES = 4  # generated requests per operation and run (3 roles x 2 databases)
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are reported as found
    suppress_health_check=list(HealthCheck),
)
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")

# Refusals of schema-valid requests that the OpenAPI document cannot express (JSON Schema has
# no "an id that exists", "start <= end", "bytes that decode as a JPEG" or "required for an
# admin key only"): positive_data_acceptance lets a 4xx with one of these error codes pass.
# Any other refusal of schema-valid data (e.g. 422 invalid_input from a rule the document
# leaves out) still fails: the fix is to document the rule.
SEMANTIC_REFUSALS = {
    "unknown_food": "a food id must name a food of the nutrient table",
    "canteen_required": "an admin key names the canteen, a kiosk or app key is bound to one; "
                        "a kiosk or app key must belong to a canteen",
    "invalid_range": "start <= end, at most 366 days apart",
    "invalid_eaten_at": "from 2000 to now + 1 day (now moves)",
    "invalid_captured_at": "from 2000 to now + 1 day (now moves)",
    "invalid_box": "x0 < x1 and y0 < y1 inside the analysed photo",
    "empty_file": "a photo's bytes must decode as JPEG, PNG or WebP",
    "unsupported_image_type": "a photo's bytes must decode as JPEG, PNG or WebP",
    "invalid_image": "a photo's bytes must decode as JPEG, PNG or WebP",
    "invalid_layout": "compartments: JSON polygons inside the reference photo",
    "no_menu": "menu_dish_id needs an analysis made with a menu",
    "model_invalid": "the file must be an ONNX model of TrayLens's inputs and outputs",
}


def _photos(photo: bytes) -> list[bytes]:
    """A real fixture photo, small, as JPEG, PNG and WebP."""
    img = Image.open(io.BytesIO(photo)).convert("RGB")
    img.thumbnail((320, 320))
    out = []
    for fmt in ("JPEG", "PNG", "WEBP"):
        buffer = io.BytesIO()
        img.save(buffer, format=fmt)
        out.append(buffer.getvalue())
    return out


@pytest.fixture(scope="module")
def photo_media_types(photo_bytes: dict[str, bytes]) -> Iterator[None]:
    """Photo fields (documented as image/jpeg, image/png, image/webp) get real photos or
    a few garbage bytes; removed again after the module."""
    strategy = st.one_of(st.sampled_from(_photos(photo_bytes["apple"])), st.binary(max_size=64))
    saved = {t: MEDIA_TYPE_STRATEGIES.get(t) for t in PHOTO_TYPES}
    for media_type in PHOTO_TYPES:
        schemathesis.openapi.media_type(media_type, strategy)
    yield
    for media_type, previous in saved.items():
        if previous is None:
            MEDIA_TYPE_STRATEGIES.pop(media_type, None)
        else:
            MEDIA_TYPE_STRATEGIES[media_type] = previous


@pytest.fixture(scope="module")
def tenant(service: Service, photo_bytes: dict[str, bytes]) -> dict[str, Any]:
    """One tenant of test_auth_matrix, shared by the three roles' runs."""
    return _tenant(service, photo_bytes)


@pytest.fixture(scope="module")
def fuzz_schema(service: Service, photo_media_types: None) -> Any:
    """The app's OpenAPI document as a schemathesis schema, calling the running app."""
    app = service.client.app
    # NUL in text is refused with 422 everywhere by design (issue 18, finding 3), which
    # positive_data_acceptance would report for every text field: test_nul_input.py covers it.
    config = schemathesis.Config.from_dict({"generation": {"allow-x00": False}})
    schema = schemathesis.openapi.from_dict(app.openapi(), config=config)  # type: ignore[attr-defined]
    schema.app = app
    return schema


def _semantic_refusal(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance, except for the documented SEMANTIC_REFUSALS."""
    if 400 <= response.status_code < 500:
        try:
            code = json.loads(response.content).get("error")
        except (ValueError, AttributeError):
            code = None
        if code in SEMANTIC_REFUSALS:
            return None
    return positive_data_acceptance(ctx, response, case)


def _operations(schema: Any) -> list[Any]:
    """Every operation, deletions last (so that the others find the tenant's resources)."""
    ops = [result.ok() for result in schema.get_all_operations()]
    return sorted(ops, key=lambda op: (op.method.upper() == "DELETE", op.path, op.method))


def _describe(case: Any, response: Any, error: BaseException) -> list[str]:
    """One line per failed check: operation, check, answer, and a curl to replay it."""
    failures = error.exceptions if isinstance(error, BaseExceptionGroup) else (error,)
    answer = "no answer" if response is None else f"{response.status_code} {response.text[:200]}"
    lines = []
    for failure in failures:
        what = (f"{failure.title}: {failure.message}" if isinstance(failure, Failure)
                else repr(failure)).replace("\n", " ")
        lines.append(f"{case.operation.label} [{what[:240]}] -> {answer}\n"
                     f"    {case.as_curl_command()[:600]}")
    return lines


@pytest.mark.slow  # 6 runs of about 250 requests: docs/RELIABILITY.md gives the time
@pytest.mark.parametrize("role", ["app", "kiosk", "admin"])
def test_schemathesis_finds_nothing(service: Service, tenant: dict[str, Any], fuzz_schema: Any,
                                    role: str) -> None:
    headers = service.admin if role == "admin" else tenant["keys"][role]
    auth = {"authorization": headers["Authorization"]}
    client = ASGIClient(service.client.app)  # not entered: the app's lifespan already runs
    failures: list[str] = []
    sent: Counter[str] = Counter()
    started = time.monotonic()
    operations = _operations(fuzz_schema)
    for op in operations:
        real = {p.name: tenant["ids"][p.name] for p in op.path_parameters
                if p.name in tenant["ids"]}
        strategies = [op.as_strategy(mode, headers=auth) for mode in MODES]
        if real and (role == "admin" or op.method.upper() != "DELETE"):
            strategies += [op.as_strategy(mode, headers=auth, path_parameters=real)
                           for mode in MODES]

        @FUZZ_SETTINGS
        @given(case=st.one_of(strategies))
        def fuzz(case: Any) -> None:
            sent[case.operation.label] += 1
            response = None
            try:
                response = case.call(session=client)
                case.validate_response(response, excluded_checks=[positive_data_acceptance],
                                       additional_checks=[_semantic_refusal],
                                       transport_kwargs={"session": client})
            except (Exception, BaseExceptionGroup) as exc:  # every failure, not the first
                failures.extend(_describe(case, response, exc))

        fuzz()
    print(f"\n{role}: {sent.total()} requests, {time.monotonic() - started:.1f} s")
    assert {op.label for op in operations} == set(sent), "every operation is fuzzed"
    assert not failures, "\n".join(failures)
