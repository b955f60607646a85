"""model.training.checkpoints: the config saved as plain data; older checkpoints, whose
settings are an argparse.Namespace or a dict under "args", load through the typed loader."""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from model.train import parse_args
from model.training.checkpoints import load_checkpoint, model_from_checkpoint, save_checkpoint
from model.training.config import ConfigError, TrainConfig
from model.training.meta import meta_dict, meta_for
from model.training.run import make_state
from model.training.sources import resolve_labels
from tests.model.conftest import tiny_args

# Settings the first checkpoints were written without (added to the config since).
NEWER_KEYS = ("train_seed", "decoupled", "flip_test", "compose")


@pytest.fixture(scope="module")
def saved(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory,
          ) -> tuple[Path, TrainConfig]:
    """An untrained tiny checkpoint in today's format."""
    out = tmp_path_factory.mktemp("ckpt")
    cfg = parse_args(tiny_args(fixtures_dir, out, "--pretrained", "false", "--version", "7.0.0",
                               "--train-seed", "4"))
    labels, food_ids = resolve_labels("default", [])
    torch.manual_seed(0)
    state = make_state(cfg, labels, 100)
    meta = meta_dict(meta_for(cfg, labels, food_ids, "sha256:test"))
    save_checkpoint(out / "checkpoint.pt", state, cfg, meta)
    return out / "checkpoint.pt", cfg


def old_style(path: Path, out: Path, args: object) -> Path:
    """`path` rewritten as an older checkpoint: its settings under "args"."""
    raw = torch.load(path, weights_only=False)
    raw["args"] = args
    del raw["config"]
    torch.save(raw, out)
    return out


def test_checkpoint_stores_plain_data_and_loads_typed(saved: tuple[Path, TrainConfig]) -> None:
    path, cfg = saved
    raw = torch.load(path, weights_only=True)  # plain data only: no pickled classes
    assert raw["config"] == asdict(cfg) and "args" not in raw
    ckpt = load_checkpoint(path)
    assert ckpt["config"] == cfg


def test_old_checkpoints_convert_on_load(saved: tuple[Path, TrainConfig], tmp_path: Path) -> None:
    path, cfg = saved
    as_dict = old_style(path, tmp_path / "dict.pt", asdict(cfg))
    as_namespace = old_style(path, tmp_path / "ns.pt", argparse.Namespace(**asdict(cfg)))
    for old in (as_dict, as_namespace):
        ckpt = load_checkpoint(old)
        assert ckpt["config"] == cfg and "args" not in ckpt
    oldest = {k: v for k, v in asdict(cfg).items() if k not in NEWER_KEYS}
    ckpt = load_checkpoint(old_style(path, tmp_path / "oldest.pt", argparse.Namespace(**oldest)))
    assert (ckpt["config"].train_seed, ckpt["config"].decoupled, ckpt["config"].flip_test,
            ckpt["config"].compose) == (-1, False, False, {})
    model, _ = model_from_checkpoint(as_namespace)
    expected = torch.load(path, weights_only=False)["model"]
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match=r"bad\.pt: epochs: expected int"):
        load_checkpoint(old_style(path, tmp_path / "bad.pt", {**asdict(cfg), "epochs": "4"}))


@pytest.mark.slow
def test_export_reads_an_old_checkpoint_through_the_typed_loader(
    saved: tuple[Path, TrainConfig], tmp_path: Path
) -> None:
    from model import export
    from model.export import read_meta

    path, cfg = saved
    old = old_style(path, tmp_path / "old.pt", argparse.Namespace(**asdict(cfg)))
    export.main(["--checkpoint", str(old), "--out", str(tmp_path / "old.onnx"),
                 "--no-calibrate", "--flip-test", "true"])
    meta = read_meta(tmp_path / "old.onnx")
    assert (meta.version, meta.flip_test, meta.input_size) == ("7.0.0", True, (128, 96))
    assert meta.training["train_seed"] == 4 and meta.training["data"] == cfg.data
