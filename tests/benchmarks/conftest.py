"""Shared fixtures of the benchmark tests."""
from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def fixture_data(tmp_path: Path) -> Path:
    """A shared-data folder (`images/mealtray`, `images/ecustfd`) holding the repo's fixture
    photos, for a benchmark CLI's `--data`."""
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    for source in ("mealtray", "ecustfd"):
        (images / source).symlink_to(FIXTURES / source)
    return tmp_path / "data"
