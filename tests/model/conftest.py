"""Datasets imported from the committed real fixtures, shared by the model tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from model.data.coco import CocoDataset
from model.data.importers.ecustfd import import_ecustfd
from model.data.importers.mealtray import import_mealtray


@pytest.fixture(scope="session")
def mealtray_ds(fixtures_dir: Path) -> CocoDataset:
    return import_mealtray(fixtures_dir / "mealtray" / "labeled")


@pytest.fixture(scope="session")
def ecustfd_ds(fixtures_dir: Path) -> CocoDataset:
    return import_ecustfd(fixtures_dir / "ecustfd")
