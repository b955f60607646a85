"""Shared test fixtures: paths to the repo's own fixtures and to ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def shared_data_dir() -> Path:
    """The full data sets: $TRAYLENS_SHARED_DATA or ../shared/data beside the repo."""
    return Path(os.environ.get("TRAYLENS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Skips the test, saying why, when the full image sets are not on this machine."""
    path = shared_data_dir()
    if not (path / "images").is_dir():
        pytest.skip(f"full data sets not found at {path} (set TRAYLENS_SHARED_DATA); CI has them")
    return path
