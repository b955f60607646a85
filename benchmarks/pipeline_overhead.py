"""What the service adds on top of the model, measured side by side in one process.

For one real tray photo: (1) model.predict alone, (2) the pipeline (decode, predict,
identification, grams, nutrients), (3) POST /v1/analyze through the ASGI app in-process
(multipart parse, auth, pipeline, photo store, one DB transaction, JSON), on SQLite.
Prints p50/p95 of each and the ratios, then where the in-process requests spent their time:
the mean per request of the request path's steps, each timed by a wrapper while (3) ran.
(Process/worker figures over real HTTP are in benchmarks/serve_speed.py.)

    python benchmarks/pipeline_overhead.py [--model PATH] [--runs 30] [--photo PATH]
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from model.infer.images import full_size, load_image  # noqa: E402
from serve.core.settings import load_settings  # noqa: E402
from serve.main import create_app  # noqa: E402
from serve.services.model_registry import load_model  # noqa: E402
from serve.services.pipeline import ImageRequest, analyze  # noqa: E402

PHOTO = (REPO / "tests/fixtures/mealtray/labeled/"
         "20220308112654_000042_059_0000000001_B______xx_C (2770).jpg")
ADMIN = "tl_benchmark_admin_key_0000000000"


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds per call, after two warm-up calls."""
    for _ in range(2):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


# The steps of POST /v1/analyze that the breakdown times: (owner, attribute, shown as).
STEPS = (
    ("serve.services.analyze", "decode_upload", "decode the upload"),
    ("serve.services.analyze", "run_model", "pipeline after decode"),
    ("model.infer.runtime:TrayModel", "predict", "  of which model.predict"),
    ("serve.services.analyze", "stored_or_replayed", "store: transaction + commit"),
    ("serve.services.analyze", "store_analysis", "  of which rows and file"),
    ("serve.services.analyze", "record_image", "    image row upsert"),
    ("serve.services.analyze", "insert_analysis", "    analysis + item INSERTs"),
)


@contextmanager
def timed_steps(seconds: dict[str, list[float]]) -> Iterator[None]:
    """Wrap each of STEPS so every call adds its duration to seconds[shown as]."""
    saved = []
    for owner_name, attr, shown in STEPS:
        module_name, _, cls = owner_name.partition(":")
        owner = getattr(importlib.import_module(module_name), cls) if cls else \
            importlib.import_module(module_name)
        original = getattr(owner, attr)

        def wrapper(*a: Any, _f: Callable[..., Any] = original, _k: str = shown,
                    **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return _f(*a, **kw)
            finally:
                seconds.setdefault(_k, []).append(time.perf_counter() - start)

        saved.append((owner, attr, original))
        setattr(owner, attr, wrapper)
    try:
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


def p(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of a sample."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    """Measure the three layers and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=load_settings().model_path)
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    loaded = load_model(args.model)
    data = args.photo.read_bytes()
    fit = loaded.model.meta.input_size  # decoded as the service decodes (DCT-reduced JPEG)
    img = load_image(data, fit=fit)
    results: dict[str, list[float]] = {}
    results["model.predict"] = timed(lambda: loaded.model.predict([img]), args.runs)
    results["pipeline (decode+predict+ids+grams+nutrients)"] = timed(
        lambda: analyze(loaded.model, [ImageRequest(load_image(data, fit=fit))]), args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), model_path=loaded.path,
                                 bootstrap_admin_key=ADMIN, model_sync_seconds=0)
        with TestClient(create_app(settings, model=loaded)) as client:
            headers = {"Authorization": f"Bearer {ADMIN}"}

            def post() -> None:
                r = client.post("/v1/analyze", files={"image": ("t.jpg", data)},
                                headers=headers)
                assert r.status_code == 201, r.text

            results["POST /v1/analyze in-process (SQLite)"] = timed(post, args.runs)
            steps: dict[str, list[float]] = {}
            with timed_steps(steps):
                for _ in range(args.runs):
                    post()
    items = len(analyze(loaded.model, [ImageRequest(img)])[0][0].items)
    width, height = full_size(img)
    print(f"model {loaded.version}, photo {args.photo.name} ({width}x{height}), "
          f"{items} items, {args.runs} runs")
    base = statistics.median(results["model.predict"])
    for name, ms in results.items():
        print(f"{name:<50} p50 {p(ms, 0.5):7.1f} ms  p95 {p(ms, 0.95):7.1f} ms  "
              f"x{statistics.median(ms) / base:.2f}")
    print(f"where POST /v1/analyze spends its time (mean ms per request, {args.runs} requests):")
    for _, _, shown in STEPS:
        print(f"  {shown:<40} {sum(steps.get(shown, [])) * 1000 / args.runs:6.2f}")


if __name__ == "__main__":
    main()
