"""serve.core.metrics: the ASGI middleware counts every status, a crash included, by route."""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve.core.metrics import MetricsMiddleware, ServiceMetrics


def _app(metrics: ServiceMetrics) -> FastAPI:
    app = FastAPI()
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    return app


def _count(metrics: ServiceMetrics, route: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "traylens_responses_total", {"method": "GET", "route": route, "status": status})
    return value or 0.0


def test_statuses_are_counted_per_route_template_and_a_crash_as_500() -> None:
    metrics = ServiceMetrics()
    with TestClient(_app(metrics), raise_server_exceptions=False) as client:
        assert client.get("/items/1").status_code == 200
        assert client.get("/items/2").status_code == 200
        assert client.get("/items/x").status_code == 422
        assert client.get("/boom").status_code == 500
        assert client.get("/nowhere").status_code == 404
    assert _count(metrics, "/items/{item_id}", "200") == 2
    assert _count(metrics, "/items/{item_id}", "422") == 1
    assert _count(metrics, "/boom", "500") == 1
    assert _count(metrics, "unmatched", "404") == 1
    timed = metrics.registry.get_sample_value(
        "traylens_request_seconds_count", {"method": "GET", "route": "/items/{item_id}"})
    assert timed == 3
