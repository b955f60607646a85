"""One training run: config -> data -> model, optimizer and schedule -> the epochs.

`run(cfg)` is what `python -m model.train` calls (torchrun-ready); `fit` trains prepared
datasets and is what tests and notebooks call with their own data.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler

from model.infer.runtime import ModelMeta
from model.network import TrayNet
from model.training.checkpoints import TrainState, load_checkpoint
from model.training.config import ConfigError, TrainConfig, compose_settings, training_seed
from model.training.distributed import seed_everything, setup_distributed
from model.training.feature_cache import cache_sets
from model.training.from_onnx import OnnxInitError, check_parent, load_onnx_weights
from model.training.loop import Loader, Phases, Trainable, train_epochs, validate
from model.training.losses import Criterion
from model.training.sources import Marked, TrainSets, prepare_data


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or only validate with --test-only) as configured; returns the last metrics."""
    distributed = setup_distributed()
    seed_everything(training_seed(cfg) + (dist.get_rank() if distributed else 0))
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.device == "auto" else cfg.device))
    amp = cfg.amp and device.type == "cuda"
    meta, sets = prepare_data(cfg)
    try:
        return fit(cfg, meta, sets, device, amp, distributed)
    finally:
        if distributed:
            dist.destroy_process_group()


def fit(cfg: TrainConfig, meta: ModelMeta, sets: TrainSets, device: torch.device,
        amp: bool, distributed: bool) -> dict[str, Any]:
    """The epochs over prepared datasets (used by run, tests and the notebook)."""
    probe = (parent_network(cfg, meta) if cfg.init_from else
             TrayNet(len(meta.labels), cfg.embed_dim, cfg.neck_channels, cfg.pretrained))
    if cfg.cache_features:
        sets = cache_sets(probe, cfg, meta, sets)
    phases = training_phases(cfg, sets, distributed)
    steps = phases.steps(cfg.epochs)
    state = make_state(cfg, meta.labels, steps)
    if cfg.init_from:  # the whole parent network, not only its backbone
        state.model.load_state_dict(probe.state_dict())
    else:
        state.model.backbone.load_state_dict(probe.backbone.state_dict())
    if cfg.resume:
        load_checkpoint(cfg.resume, state)
        # Resuming with more epochs extends the schedule instead of overrunning it.
        sched = state.scheduler
        if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):
            sched.total_steps = max(sched.total_steps, steps)
    state.model.to(device)
    state.criterion.to(device)
    wrapped: nn.Module = Trainable(state.model, cfg.cache_features, cfg.train_top_blocks)
    if distributed:
        wrapped = nn.parallel.DistributedDataParallel(wrapped)
    if cfg.test_only:
        return (validate(state.model, sets.val, meta, cfg.cache_features, device,
                         top=cfg.train_top_blocks) if sets.val else {})
    return train_epochs(cfg, state, phases, sets.val, meta, device, amp, wrapped)


def parent_network(cfg: TrainConfig, meta: ModelMeta) -> TrayNet:
    """The network of cfg.init_from (an exported file) with the run's label order.

    Its BatchNorms are the export's folded identities: training keeps them in eval mode
    (config.bn_frozen)."""
    try:
        check_parent(cfg.init_from or "", meta.labels, cfg.embed_dim, cfg.neck_channels,
                     cfg.decoupled)
    except OnnxInitError as exc:
        raise ConfigError(f"init_from: {exc}") from exc
    net = TrayNet(len(meta.labels), cfg.embed_dim, cfg.neck_channels, pretrained=False,
                  decoupled=cfg.decoupled)
    report = load_onnx_weights(net, cfg.init_from or "", labels=meta.labels)
    print(f"init_from {cfg.init_from}: {report.summary()}", flush=True)
    return net


def training_phases(cfg: TrainConfig, sets: TrainSets, distributed: bool) -> Phases:
    """Real + composed trays for the first `composed_epochs` epochs, then real photos only."""
    train_data, composed = sets.train, sets.composed
    if composed is not None and sets.composed_masks_only:
        train_data, composed = Marked(train_data, real=True), Marked(composed, real=False)
    loaders = [epoch_loader(train_data, cfg, distributed)]
    if composed is None:
        return Phases(loaders)
    loaders.insert(0, epoch_loader(ConcatDataset([train_data, composed]), cfg, distributed))
    return Phases(loaders, sets.composed_epochs)


def epoch_loader(data: Dataset[Any], cfg: TrainConfig, distributed: bool) -> Loader:
    """A shuffling loader (and its DDP sampler) over one phase's training data."""
    sampler: DistributedSampler[Any] | None = (
        DistributedSampler(data, seed=training_seed(cfg)) if distributed else None)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=sampler is None,
                        sampler=sampler,
                        num_workers=0 if cfg.cache_features else cfg.workers,
                        drop_last=len(data) > cfg.batch_size,  # type: ignore[arg-type]
                        generator=torch.Generator().manual_seed(training_seed(cfg)))
    return loader, sampler


def train_only(model: TrayNet, criterion: Criterion, parts: Sequence[str]) -> None:
    """Freeze everything but the named parts of the heads (config.HEAD_PARTS); the class
    prototypes train only with the embedding head they shape."""
    model.requires_grad_(False)
    criterion.requires_grad_("embed" in parts)
    for name in parts:
        part = getattr(model.heads, name)
        if part is not None:
            part.requires_grad_(True)


def make_state(cfg: TrainConfig, labels: Sequence[str], total_steps: int) -> TrainState:
    """Model, loss, AdamW and a one-cycle cosine schedule from the config."""
    model = TrayNet(len(labels), cfg.embed_dim, cfg.neck_channels,
                    pretrained=cfg.pretrained and cfg.init_from is None, decoupled=cfg.decoupled)
    if cfg.cache_features or cfg.freeze_backbone:
        model.backbone.requires_grad_(False)
    criterion = Criterion(len(labels), cfg.embed_dim, dict(cfg.loss_weights),
                          composed_regions=compose_settings(cfg).get("supervise") == "regions")
    if cfg.train_only:
        train_only(model, criterion, cfg.train_only)
    top = list(model.top_blocks().parameters()) if cfg.train_top_blocks else []
    for p in top:
        p.requires_grad_(True)
    in_top = {id(p) for p in top}
    rest = [p for p in [*model.parameters(), *criterion.parameters()]
            if p.requires_grad and id(p) not in in_top]
    groups: list[dict[str, Any]] = [{"params": rest, "lr": cfg.lr}]
    if top:  # pretrained weights move more slowly than the new heads
        groups.append({"params": top, "lr": cfg.lr * cfg.top_blocks_lr})
    lrs: list[float] = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lrs, total_steps=max(1, total_steps), pct_start=0.1)
    return TrainState(model, criterion, optimizer, scheduler)
