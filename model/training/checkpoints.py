"""Checkpoints: save and restore a run's state; rebuild trained networks and ensembles.

On disk the config is a plain dict under "config" (no pickled classes: a checkpoint must
outlive the code that wrote it). Checkpoints written before the typed config hold it under
"args", as a dict or an argparse.Namespace; `load_checkpoint` converts either through the
same typed loader, so every reader gets `ckpt["config"]` as a TrainConfig.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from model.network import TrayNet
from model.training.config import TrainConfig, config_from_mapping
from model.training.losses import Criterion

# What the runs joined into one ensemble must share besides the data (their fingerprint):
# the heads' shape and the input they were trained at.
ENSEMBLE_ARGS = ("embed_dim", "neck_channels", "decoupled", "input_width", "input_height")


@dataclass
class TrainState:
    """Everything a checkpoint restores."""

    model: TrayNet
    criterion: Criterion
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0


def save_checkpoint(path: Path, state: TrainState, cfg: TrainConfig,
                    meta: dict[str, Any]) -> None:
    """Atomically write model, optimizer, scheduler, epoch, config and label metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": state.model.state_dict(), "criterion": state.criterion.state_dict(),
        "optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
        "epoch": state.epoch, "config": asdict(cfg), "meta": meta,
    }, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, state: TrainState | None = None) -> dict[str, Any]:
    """Read a checkpoint (its "config" a TrainConfig); restore it into `state` when given."""
    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["config"] = config_of(ckpt, str(path))
    ckpt.pop("args", None)
    if state is not None:
        state.model.load_state_dict(ckpt["model"])
        state.criterion.load_state_dict(ckpt["criterion"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
        state.epoch = int(ckpt["epoch"])
    return ckpt


def config_of(ckpt: dict[str, Any], source: str) -> TrainConfig:
    """The typed config a checkpoint holds: "config", or an older file's "args"."""
    stored = ckpt["config"] if "config" in ckpt else ckpt["args"]
    if isinstance(stored, TrainConfig):
        return stored
    if isinstance(stored, argparse.Namespace):
        stored = vars(stored)
    return config_from_mapping(stored, source)


def model_from_checkpoint(path: str | Path) -> tuple[TrayNet, dict[str, Any]]:
    """Rebuild the network (eval mode) and its label metadata from a checkpoint."""
    ckpt = load_checkpoint(path)
    return network_of(ckpt), ckpt


def network_of(ckpt: dict[str, Any]) -> TrayNet:
    """The trained network (eval mode) a loaded checkpoint holds."""
    cfg: TrainConfig = ckpt["config"]
    model = TrayNet(len(ckpt["meta"]["labels"]), cfg.embed_dim, cfg.neck_channels,
                    pretrained=False, decoupled=cfg.decoupled, flip_test=cfg.flip_test,
                    backbone_outputs=cfg.backbone_descriptor)
    model.load_state_dict(ckpt["model"])
    return model.eval()


def train_seed_of(ckpt: dict[str, Any]) -> int:
    """The training seed a loaded checkpoint's run used (older metadata: its split seed)."""
    return int(ckpt["meta"]["training"].get("train_seed", ckpt["config"].seed))


def ensemble_from_checkpoints(paths: Sequence[str | Path],
                              ) -> tuple[TrayNet, dict[str, Any], list[int]]:
    """One network whose exported maps combine the heads of several training runs.

    The runs must differ only in train_seed: the same data, labels and frozen backbone
    (checked), so the backbone runs once and each member adds only its neck and heads.
    Returns the network, the first checkpoint (its config and metadata describe the file)
    and the members' training seeds.
    """
    first, ckpt = model_from_checkpoint(paths[0])
    seeds = [train_seed_of(ckpt)]
    if len(paths) == 1:
        return first, ckpt, seeds
    cfg: TrainConfig = ckpt["config"]
    model = TrayNet(first.num_classes, cfg.embed_dim, cfg.neck_channels, pretrained=False,
                    decoupled=cfg.decoupled, flip_test=first.flip_test, members=len(paths),
                    backbone_outputs=first.backbone_outputs)
    model.backbone.load_state_dict(first.backbone.state_dict())
    model.heads.load_state_dict(first.heads.state_dict())
    backbone = first.backbone.state_dict()
    for extra, path in zip(model.extra_heads, paths[1:], strict=True):
        o_ckpt = load_checkpoint(path)
        differ = [k for k in ENSEMBLE_ARGS
                  if getattr(o_ckpt["config"], k) != getattr(cfg, k)]
        differ += [k for k in ("labels", "fingerprint") if o_ckpt["meta"][k] != ckpt["meta"][k]]
        if differ:
            raise ValueError(f"{path}: differs from {paths[0]} in {differ}; an ensemble's "
                             "members may differ only in train_seed")
        other = network_of(o_ckpt)
        theirs = other.backbone.state_dict()
        if not all(torch.equal(v, theirs[k]) for k, v in backbone.items()):
            raise ValueError(f"{path}: another backbone; members must share the frozen one")
        seeds.append(train_seed_of(o_ckpt))
        extra.load_state_dict(other.heads.state_dict())
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"train seeds {seeds}: a run given twice adds nothing to an ensemble")
    return model.eval(), ckpt, seeds
