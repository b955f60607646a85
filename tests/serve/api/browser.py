"""Shared by the page tests in headless Chromium (test_*browser*.py): where Chromium is, its
flags, a skip when it or playwright is missing, a fresh profile, an admin API client."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.serve_speed import LiveService

CHROMIUM = os.environ.get("TRAYLENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 60_000
DESKTOP = {"width": 1360, "height": 1000}


def playwright_or_skip() -> Any:
    """Playwright's sync API, or a skip saying what is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="the playwright package drives it")


@contextmanager
def chromium_context(sync_api: Any, viewport: dict[str, int] | None = None) -> Iterator[Any]:
    """Headless Chromium on a fresh, temporary profile (a persistent context), closed after."""
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport=viewport or DESKTOP, device_scale_factor=1,
        )
        yield context
        context.close()


def first_page(context: Any) -> Any:
    """The context's first tab (a new one if it has none), with the tests' timeout."""
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@contextmanager
def admin_client(service: LiveService) -> Iterator[httpx.Client]:
    """An HTTP client of the live service with its admin key."""
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=60) as client:
        yield client
