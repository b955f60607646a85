"""Shared model-test fixtures: datasets from the committed real fixtures, a tiny exported net,
the flags of a tiny training run, the ONNX model the evaluation tests use."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from model import export
from model.data.coco import CocoDataset
from model.data.importers.ecustfd import import_ecustfd
from model.data.importers.mealtray import import_mealtray
from model.infer.runtime import ModelMeta, PostConfig, TrayModel, decode_outputs, preprocess
from model.network import TrayNet

REPO = Path(__file__).resolve().parents[2]
TINY_SIZE = (160, 128)
MODEL_CANDIDATES = (
    REPO / "model" / "artifacts" / "traylens.onnx",
    REPO / "var" / "dev" / "traylens-dev.onnx",
)


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The shipped model, else the dev model; $TRAYLENS_TEST_MODEL overrides."""
    env = os.environ.get("TRAYLENS_TEST_MODEL")
    for path in ([Path(env)] if env else []) + list(MODEL_CANDIDATES):
        if path.is_file():
            return path
    pytest.skip("no ONNX model yet: model/artifacts/traylens.onnx is committed with the model")


def tiny_net(decoupled: bool = False, flip_test: bool = False, members: int = 1,
             ) -> tuple[TrayNet, ModelMeta]:
    """A small untrained TrayNet over the default labels and its metadata, the same weights on
    every call (seed 0); members > 1: an ensemble of that many heads."""
    from nutrition_db import label_map

    lm = label_map()
    torch.manual_seed(0)
    model = TrayNet(len(lm.labels), embed_dim=16, neck_channels=32, decoupled=decoupled,
                    flip_test=flip_test, members=members).eval()
    # Untrained heads give near-equal scores whose order float noise could flip; spread them.
    for heads in (model.heads, *model.extra_heads):
        for branch in (heads.heat, heads.box, heads.mask, heads.embed):
            proj = branch[1]
            assert isinstance(proj, torch.nn.Conv2d)
            torch.nn.init.normal_(proj.weight, std=0.3)
    meta = ModelMeta(labels=lm.labels, food_ids=[lm.food_id(n) for n in lm.labels],
                     input_size=TINY_SIZE, mean=(0.5,) * 3, std=(0.5,) * 3, stride=8,
                     embedding_dim=model.output_embedding_dim, version="test",
                     fingerprint="sha256:test",
                     training={"seed": 0, "val_fraction": 0.2}, flip_test=flip_test)
    return model, meta


def export_tiny(out: Path, decoupled: bool = False, flip_test: bool = False, members: int = 1,
                ) -> tuple[TrayNet, ModelMeta, Path]:
    """tiny_net(...) exported to `out` with its metadata."""
    model, meta = tiny_net(decoupled, flip_test, members)
    return model, meta, export.export_onnx(model, meta, out)


TinyExport = Callable[..., tuple[TrayNet, ModelMeta, Path]]


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> TinyExport:
    """export_tiny with each variant exported once per test run (the dynamo export takes ~10 s
    of CPU) and copied to each caller's `out`: several test files check the same tiny files.
    Under pytest-xdist the workers share one folder of this run's base temp directory, so a
    variant is exported by whichever worker asks first (a file lock), never by two."""
    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = tmp_path_factory.getbasetemp().parent / "tiny-onnx"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("tiny-onnx")

    def make(out: Path, decoupled: bool = False, flip_test: bool = False, members: int = 1,
             ) -> tuple[TrayNet, ModelMeta, Path]:
        cached = cache / f"decoupled{int(decoupled)}-flip{int(flip_test)}-members{members}.onnx"
        with FileLock(f"{cached}.lock"):
            if cached.is_file():
                model, meta = tiny_net(decoupled, flip_test, members)
            else:
                model, meta, _ = export_tiny(cached.with_suffix(".part"), decoupled, flip_test,
                                             members)
                cached.with_suffix(".part").rename(cached)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, out)
        return model, meta, out

    return make


def assert_torch_and_onnx_agree(net: torch.nn.Module, rt: TrayModel, meta: ModelMeta,
                                img: Image.Image, cfg: PostConfig, score_abs: float,
                                cosine_min: float) -> None:
    """The network in torch and its ONNX file through the runtime find the same items in a
    photo: labels, boxes within half a pixel, scores within score_abs, embeddings alike."""
    batch, scales = preprocess([img], meta)
    with torch.no_grad():
        maps = [t[0].numpy() for t in net(torch.from_numpy(batch))]
    via_torch = decode_outputs(maps, scales[0], img.size, meta, cfg)
    via_onnx = rt.predict([img], cfg=cfg)[0].items
    assert len(via_torch) == len(via_onnx) > 0
    for a, b in zip(via_torch, via_onnx, strict=True):
        assert a.label == b.label
        assert a.box == pytest.approx(b.box, abs=0.5)
        assert a.score == pytest.approx(b.score, abs=score_abs)
        assert float(a.embedding @ b.embedding) > cosine_min


def fixture_sources(fixtures_dir: Path) -> list[dict[str, str]]:
    """The training config's `data` entries of the repo's two fixture sources."""
    return [{"kind": "mealtray", "root": str(fixtures_dir / "mealtray" / "labeled")},
            {"kind": "ecustfd", "root": str(fixtures_dir / "ecustfd")}]


def tiny_args(fixtures_dir: Path, out: Path, *extra: str) -> list[str]:
    """`python -m model.train` flags of a few-second run: both fixture sources, 128x96 input."""
    return ["--data", json.dumps(fixture_sources(fixtures_dir)), "--labels", "default",
            "--val-fraction", "0.3",
            "--input-width", "128", "--input-height", "96", "--embed-dim", "16",
            "--neck-channels", "32", "--batch-size", "4", "--lr", "0.01",
            "--freeze-backbone", "true", "--augment", "false", "--device", "cpu",
            "--output-dir", str(out), "--cache-dir", str(out / "cache"), *extra]


@pytest.fixture(scope="session")
def mealtray_ds(fixtures_dir: Path) -> CocoDataset:
    return import_mealtray(fixtures_dir / "mealtray" / "labeled")


@pytest.fixture(scope="session")
def ecustfd_ds(fixtures_dir: Path) -> CocoDataset:
    return import_ecustfd(fixtures_dir / "ecustfd")
