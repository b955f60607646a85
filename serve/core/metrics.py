"""Prometheus metrics: request and inference latency histograms, per-status counts."""
from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request and counting its status.

    (Not @app.middleware("http"): Starlette's BaseHTTPMiddleware re-streams each request
    and response through a task group and memory streams, which showed up in py-spy
    profiles of POST /v1/analyze on the 2-core machine.)
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # a raised error that never started a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router stores the matched route in the scope: its template bounds the labels.
            route = str(getattr(scope.get("route"), "path", "unmatched"))
            method = str(scope["method"])
            self.metrics.requests.labels(method, route).observe(time.perf_counter() - start)
            self.metrics.responses.labels(method, route, str(status)).inc()
