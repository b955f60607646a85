"""Train the tray model: `python -m model.train --config model/configs/default.yaml [--key value]`.

A thin CLI over model.training.run.run. Every config key is also a CLI flag; flags win over the
file (model.training.config). Works under torchrun (DDP, gloo on CPU / nccl on CUDA).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import get_args, get_type_hints

from model.training.config import SETTINGS, ConfigError, TrainConfig, load_config


def _bool(text: str) -> bool:
    """A boolean flag value: true/false, yes/no, on/off or 1/0."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """One flag per config key (typed from TrainConfig) plus --config, --resume, --test-only."""
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML file with any of the keys below")
    p.add_argument("--resume", help="checkpoint to continue from")
    p.add_argument("--test-only", action="store_true", help="validate the (resumed) model only")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name not in SETTINGS:
            continue
        flag, value = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if isinstance(value, bool):
            p.add_argument(flag, dest=f.name, type=_bool, default=None)
        elif isinstance(value, list | dict):
            p.add_argument(flag, dest=f.name, type=json.loads, default=None, help="JSON")
        elif value is None:  # an optional setting: its type from the hint
            hint = get_type_hints(TrainConfig)[f.name]
            p.add_argument(flag, dest=f.name, default=None,
                           type=_bool if bool in get_args(hint) else str)
        else:
            p.add_argument(flag, dest=f.name, type=type(value), default=None)
    return p


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Defaults < YAML config < CLI flags, as one validated TrainConfig."""
    ns = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(ns).items() if k in SETTINGS and v is not None}
    try:
        return load_config(ns.config, flags, resume=ns.resume, test_only=ns.test_only)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry: parse the config, train, print the final metrics."""
    from model.training.run import run

    metrics = run(parse_args(argv))
    print(json.dumps({"final": metrics}))


if __name__ == "__main__":
    main()
