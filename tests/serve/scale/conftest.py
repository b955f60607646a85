"""Fixtures of the scale-out tests: a real S3-compatible HTTP server on loopback (moto's
ThreadedMotoServer, a Werkzeug server speaking the S3 REST API) and a private Redis
key prefix per test."""
from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REDIS_URL = "redis://127.0.0.1:6379"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server listens, and a fresh bucket on it."""

    endpoint_url: str
    bucket: str

    def client(self) -> Any:
        """A boto3 client of this server (fake credentials: moto accepts any)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def settings(self) -> dict[str, Any]:
        """TRAYLENS_ settings that point the service at this bucket."""
        return dict(image_store="s3", s3_bucket=self.bucket, s3_endpoint_url=self.endpoint_url,
                    s3_region="us-east-1", s3_access_key_id="testing",
                    s3_secret_access_key="testing", s3_addressing_style="path")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1 (a free port), stopped after the session."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] not installed")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_server(s3_endpoint: str) -> S3Server:
    """A new, empty bucket on the loopback S3 server."""
    server = S3Server(s3_endpoint, f"traylens-{uuid.uuid4().hex[:10]}")
    server.client().create_bucket(Bucket=server.bucket)
    return server


@pytest.fixture
def namespace() -> Iterator[str]:
    """A key prefix of this test alone in the shared Redis (database 0), removed afterwards
    (skips without a Redis server)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(f"{REDIS_URL}/0")
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc.__class__.__name__})")
    ns = f"traylens-test-{uuid.uuid4().hex[:10]}"
    try:
        yield ns
    finally:
        keys = list(client.scan_iter(match=f"{ns}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


def wait_until(condition: Callable[[], Any], seconds: float = 20) -> bool:
    """Poll `condition` every 0.1 s until it holds or `seconds` pass; its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())
