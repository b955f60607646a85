"""Idempotency-Key: a retried upload returns the first answer and logs nothing twice."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from serve.db.tables.analyses import Analysis
from tests.serve.conftest import Service


@pytest.fixture(scope="module")
def app_key(service: Service) -> dict[str, str]:
    """An app key and one of its users."""
    return service.key("app", service.canteen("idempotency"))


def _count(service: Service, user_id: str) -> int:
    factory = service.client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as session:
        return int(session.scalar(
            select(func.count(Analysis.id)).where(Analysis.user_id == user_id)) or 0)


def _send(service: Service, headers: dict[str, str], photo: bytes, user_id: str,
          key: str) -> Any:
    return service.client.post(
        "/v1/analyze", files={"image": ("meal.jpg", photo, "image/jpeg")},
        data={"user_id": user_id}, headers={**headers, "Idempotency-Key": key})


def test_a_retry_returns_the_first_answer(
    service: Service, app_key: dict[str, str], photo_bytes: dict[str, bytes]
) -> None:
    user = service.user(app_key)
    first = _send(service, app_key, photo_bytes["tray"], user, "meal-1")
    retry = _send(service, app_key, photo_bytes["tray"], user, "meal-1")
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert _count(service, user) == 1
    other = _send(service, app_key, photo_bytes["tray"], user, "meal-2")
    assert other.json()["id"] != first.json()["id"] and _count(service, user) == 2


def test_the_same_key_for_another_request_is_refused(
    service: Service, app_key: dict[str, str], photo_bytes: dict[str, bytes]
) -> None:
    user = service.user(app_key)
    assert _send(service, app_key, photo_bytes["tray"], user, "k-1").status_code == 201
    clash = _send(service, app_key, photo_bytes["apple"], user, "k-1")
    assert clash.status_code == 422 and clash.json()["error"] == "idempotency_key_reused"
    assert _count(service, user) == 1


def test_keys_are_per_api_key(
    service: Service, app_key: dict[str, str], photo_bytes: dict[str, bytes]
) -> None:
    """Another client choosing the same key string gets its own analysis."""
    canteen = service.canteen("idempotency-2")
    other = service.key("app", canteen)
    mine, theirs = service.user(app_key), service.user(other)
    a = _send(service, app_key, photo_bytes["tray"], mine, "shared")
    b = _send(service, other, photo_bytes["tray"], theirs, "shared")
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


def test_concurrent_retries_log_the_meal_once(
    service: Service, app_key: dict[str, str], photo_bytes: dict[str, bytes]
) -> None:
    user = service.user(app_key)
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(
            lambda _: _send(service, app_key, photo_bytes["tray2"], user, "race"), range(4)))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert _count(service, user) == 1


def test_batch_retry_is_idempotent(
    service: Service, app_key: dict[str, str], photo_bytes: dict[str, bytes]
) -> None:
    user = service.user(app_key)
    files = [("images", (f"{n}.jpg", photo_bytes[n], "image/jpeg")) for n in ("tray", "mix")]
    headers = {**app_key, "Idempotency-Key": "backlog-1"}
    first = service.client.post("/v1/analyze/batch", files=files, data={"user_id": user},
                                headers=headers)
    again = service.client.post("/v1/analyze/batch", files=files, data={"user_id": user},
                                headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and _count(service, user) == 2
