"""Prometheus metrics: request and inference latency histograms, per-status counts.

Multiprocess mode: when prometheus_client's own environment variable PROMETHEUS_MULTIPROC_DIR
names a directory (set before the processes start; emptied at each deployment's start),
every process - uvicorn workers, several servers on one host - writes its samples to files
there, and /metrics through any of them reports the sum over all (MultiProcessCollector):
counters and histograms of every process that ever ran, model_info of the live ones.
"""
from __future__ import annotations

import os
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


def multiprocess_dir() -> str | None:
    """The multiprocess directory, when prometheus_client's variable names one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServiceMetrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir()
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
            registry=self.registry, multiprocess_mode="livemax",  # 1: some live process has it
        )
        self._model_labels: tuple[str, str] | None = None

    def observe_inference(self, seconds: float, batch_size: int) -> None:
        """Record one ONNX Runtime run."""
        self.inference.labels(batch_size=str(batch_size)).observe(seconds)
        self.images.inc(batch_size)

    def set_model(self, version: str, sha256: str) -> None:
        """Expose which model is active (the old label set is cleared; in multiprocess mode
        set to 0, since clearing leaves this process's file as it was)."""
        if self._model_labels is not None:
            self.model_info.labels(*self._model_labels).set(0)
        if self.multiprocess_dir is None:
            self.model_info.clear()
        self._model_labels = (version, sha256[:12])
        self.model_info.labels(*self._model_labels).set(1)

    def render(self) -> Response:
        """The text exposition format: this app's registry, or in multiprocess mode the
        samples of every process (read from the directory at each scrape)."""
        registry = self.registry
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def process_exit(self) -> None:
        """In multiprocess mode, drop this process's live gauges (model_info) from the
        directory at shutdown; its counters and histograms keep counting in the sums."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)


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
