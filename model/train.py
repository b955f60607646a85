"""Train the tray model: `python -m model.train --config model/configs/default.yaml [--key value]`.

A thin CLI over model.engine.run. Every config key is also a CLI flag; flags win over the file.
Works under torchrun (DDP, gloo on CPU / nccl on CUDA).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "data": [], "labels": "default", "val_fraction": 0.2,
    "seed": 0,  # the held-out split, the augmented views and the composed trays
    "train_seed": -1,  # weight init and batch order; -1: the same as seed
    "input_width": 512, "input_height": 384, "embed_dim": 64, "neck_channels": 64,
    "pretrained": True, "decoupled": False, "cache_features": False, "cache_views": 1,
    "freeze_backbone": False,
    "epochs": 10, "batch_size": 8, "lr": 1e-3, "weight_decay": 1e-4,
    "loss_weights": {"heat": 1.0, "box": 2.0, "mask": 1.0, "embed": 0.5},
    "workers": 0, "val_every": 1, "device": "auto", "amp": True, "version": "dev",
    "output_dir": "var/train/run", "augment": True, "cache_dir": "var/cache",
    "flip_test": False,  # the exported file also runs the mirrored photo and averages
    "compose": {},  # {images: N, per_label: K}: N trays composed from training crops
}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """One flag per config key (typed from DEFAULTS) plus --config, --resume, --test-only."""
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML file with any of the keys below")
    p.add_argument("--resume", help="checkpoint to continue from")
    p.add_argument("--test-only", action="store_true", help="validate the (resumed) model only")
    for key, value in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, dest=key, type=_bool, default=None)
        elif isinstance(value, list | dict):
            p.add_argument(flag, dest=key, type=json.loads, default=None, help="JSON")
        else:
            p.add_argument(flag, dest=key, type=type(value), default=None)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Defaults < YAML config < CLI flags, in one namespace."""
    ns = build_parser().parse_args(argv)
    merged = dict(DEFAULTS)
    if ns.config is not None:
        loaded = yaml.safe_load(ns.config.read_text()) or {}
        unknown = sorted(set(loaded) - set(DEFAULTS))
        if unknown:
            raise SystemExit(f"{ns.config}: unknown config keys {unknown}")
        merged.update(loaded)
    merged.update({k: v for k, v in vars(ns).items() if k in DEFAULTS and v is not None})
    merged.update(config=str(ns.config) if ns.config else None, resume=ns.resume,
                  test_only=ns.test_only)
    if not merged["data"]:
        raise SystemExit("no training data: set `data` in the config or --data '[...]'")
    return argparse.Namespace(**merged)


def main(argv: Sequence[str] | None = None) -> None:
    from model.engine import run

    metrics = run(parse_args(argv))
    print(json.dumps({"final": metrics}))


if __name__ == "__main__":
    main()
