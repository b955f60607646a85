"""Prometheus metrics: request and inference latency histograms, per-status counts."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "traylens_request_seconds", "HTTP request latency by route template",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.responses = Counter(
            "traylens_responses_total", "HTTP responses by route and status code",
            ["method", "route", "status"], registry=self.registry,
        )
        self.inference = Histogram(
            "traylens_inference_seconds", "ONNX Runtime model time per batch",
            ["batch_size"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.images = Counter(
            "traylens_images_analysed_total", "photos analysed", registry=self.registry
        )
        self.model_info = Gauge(
            "traylens_model_info", "the active model (value 1)", ["version", "sha256"],
            registry=self.registry,
        )

    def observe_inference(self, seconds: float, batch_size: int) -> None:
        """Record one ONNX Runtime run."""
        self.inference.labels(batch_size=str(batch_size)).observe(seconds)
        self.images.inc(batch_size)

    def set_model(self, version: str, sha256: str) -> None:
        """Expose which model is active (the old label set is cleared)."""
        self.model_info.clear()
        self.model_info.labels(version=version, sha256=sha256[:12]).set(1)

    def render(self) -> Response:
        """The text exposition format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _route_template(request: Request) -> str:
    """The matched route's path template (bounded label cardinality), else 'unmatched'."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def metrics_middleware(
    metrics: ServiceMetrics,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """HTTP middleware timing every request and counting its status."""

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Time the request; a raised error counts as 500."""
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route_template(request)
            metrics.requests.labels(request.method, route).observe(time.perf_counter() - start)
            metrics.responses.labels(request.method, route, str(status)).inc()

    return middleware
