"""Shared test fixtures: paths to the repo's own fixtures and to ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker's torch (OpenMP) and ONNX Runtime get their share of the
    cores: by default every worker would start one thread per core, and on 2 cores with 2
    workers the threads waiting for a core spin on it (torch) or hold up every operator
    (ORT's parallel loops wait for their slowest thread). Set before torch is imported; a set
    OMP_NUM_THREADS wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers <= 1:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // workers)
    os.environ.setdefault("OMP_NUM_THREADS", str(share))
    from model.infer import runtime

    runtime.DEFAULT_THREADS = share


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a test marked slow first, then the rest by their number of tests, most
    first; a file's tests stay together and in order. Under `--dist loadfile` with
    `--no-loadscope-reorder` (the Makefile) the workers take files in this order, so the long
    single-test files (the CI-only install, the notebooks, the kill -9 runs) no longer come
    last and leave one worker running them alone while the other waits."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def key(name: str) -> tuple[bool, int]:
        tests = files[name]
        return (not any(t.get_closest_marker("slow") for t in tests), -len(tests))

    items[:] = [t for name in sorted(files, key=key) for t in files[name]]


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
