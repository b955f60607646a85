"""The loops: one training epoch, the epochs of a run, and validation (box mAP@0.5).

Flat functions in the spirit of torchvision's references: `train_one_epoch` steps the
optimizer over one loader, `validate` decodes through model.infer.runtime (the inference
post-processing) and `train_epochs` runs the schedule, checkpointing after each epoch.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from model.infer.runtime import ModelMeta, PostConfig, decode_outputs
from model.network import TrayNet, to_export
from model.training.checkpoints import TrainState, save_checkpoint
from model.training.config import TrainConfig, bn_frozen
from model.training.distributed import is_main
from model.training.meta import meta_dict

Loader = tuple[DataLoader[Any], DistributedSampler[Any] | None]


class Trainable(nn.Module):
    """DDP-wrappable module returning raw outputs: heads on cached features (and the top
    blocks, `top`), or the whole net."""

    def __init__(self, model: TrayNet, cached: bool, top: bool = False) -> None:
        super().__init__()
        self.model = model
        self.cached = cached
        self.top = top

    def forward(self, inputs: Any) -> dict[str, torch.Tensor]:
        if self.cached:
            return self.model.raw_from_cached(inputs, self.top)
        return self.model.raw(inputs)


@dataclass
class Phases:
    """The training loaders: `loaders[0]` for the first `first` epochs, then `loaders[-1]`."""

    loaders: list[Loader]
    first: int = 0

    def at(self, epoch: int) -> Loader:
        """The loader (and its DDP sampler) of one epoch."""
        return self.loaders[0] if epoch < self.first else self.loaders[-1]

    def steps(self, epochs: int) -> int:
        """Optimizer steps of a whole schedule of `epochs` epochs."""
        return (self.first * len(self.loaders[0][0])
                + (epochs - self.first) * len(self.loaders[-1][0]))


def train_one_epoch(state: TrainState, loader: DataLoader[Any], cached: bool,
                    device: torch.device, amp: bool, wrapped: nn.Module,
                    freeze_bn: bool = False) -> dict[str, float]:
    """One pass; returns the mean of each loss.

    freeze_bn: every BatchNorm stays in eval mode (its running statistics are used and not
    updated; its affine weight and bias still train). Required after init_from: an exported
    file's BatchNorms were folded into the convolutions and come back as identity + bias.
    """
    state.model.train()
    if cached or not all(p.requires_grad for p in state.model.backbone.parameters()):
        # A frozen or partly trained backbone (train_top_blocks) keeps ImageNet's BN
        # statistics; the top blocks' affine weights still train.
        state.model.backbone.eval()
    if freeze_bn:
        for m in state.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
    sums: dict[str, float] = {}
    n = 0
    for inputs, targets in tqdm(loader, desc=f"epoch {state.epoch}", leave=False,
                                disable=not is_main()):
        inputs = [x.to(device) for x in inputs] if cached else inputs.to(device)
        targets = {k: v.to(device) for k, v in targets.items()}
        with torch.autocast(device.type, enabled=amp):
            losses = state.criterion(wrapped(inputs), targets)
        state.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), 5.0)
        state.optimizer.step()
        state.scheduler.step()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


def train_epochs(cfg: TrainConfig, state: TrainState, phases: Phases, val_data: Dataset[Any] | None,
                 meta: ModelMeta, device: torch.device, amp: bool,
                 wrapped: nn.Module) -> dict[str, Any]:
    """Epochs from the state's up to cfg.epochs; prints metrics, checkpoints each epoch."""
    metrics: dict[str, Any] = {}
    history: list[float] = []
    while state.epoch < cfg.epochs:
        loader, sampler = phases.at(state.epoch)
        if sampler is not None:
            sampler.set_epoch(state.epoch)
        t0 = time.time()
        losses = train_one_epoch(state, loader, cfg.cache_features, device, amp, wrapped,
                                 freeze_bn=bn_frozen(cfg))
        history.append(losses["total"])
        metrics = {"epoch": state.epoch, **losses}
        state.epoch += 1
        if val_data is not None and is_main() and (state.epoch % cfg.val_every == 0
                                                    or state.epoch == cfg.epochs):
            metrics.update(validate(state.model, val_data, meta, cfg.cache_features, device,
                                    top=cfg.train_top_blocks))
        metrics["seconds"] = round(time.time() - t0, 1)
        if is_main():
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                              for k, v in metrics.items()}), flush=True)
            save_checkpoint(Path(cfg.output_dir) / "checkpoint.pt", state, cfg, meta_dict(meta))
    return {**metrics, "loss_history": history}


def iterate_outputs(model: TrayNet, data: Dataset[Any], cached: bool, batch: int,
                    device: torch.device, top: bool = False,
                    ) -> Iterator[tuple[list[np.ndarray], dict[str, torch.Tensor]]]:
    """Exported-form maps (numpy, one image at a time) + targets over a dataset; `top`:
    cached features whose stride-32 map the trained top blocks compute again."""
    model.eval()
    loader = DataLoader(data, batch_size=batch, shuffle=False)
    with torch.no_grad():
        for inputs, targets in loader:
            if cached:
                raw = model.raw_from_cached([x.to(device) for x in inputs], top)
            else:
                raw = model.raw(inputs.to(device))
            maps = [m.float().cpu().numpy() for m in to_export(raw)]
            for i in range(maps[0].shape[0]):
                yield [m[i] for m in maps], {k: v[i] for k, v in targets.items()}


def validate(model: TrayNet, data: Dataset[Any], meta: ModelMeta, cached: bool,
             device: torch.device, batch: int = 16, top: bool = False) -> dict[str, float]:
    """Box mAP@0.5 through runtime.decode_outputs: the same post-processing as inference."""
    from model.metrics import Detection, GroundTruth, detection_ap

    dets, gts = [], []
    cfg = PostConfig(score_min=0.05, max_items=50)
    size = meta.input_size
    for k, (maps, t) in enumerate(iterate_outputs(model, data, cached, batch, device, top)):
        # Targets are in letterbox pixels, so decode at scale 1 on the network canvas.
        for item in decode_outputs(maps, 1.0, size, meta, cfg):
            dets.append(Detection(str(k), item.label, item.score, item.box))
        for box, lab in zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True):
            if lab >= 0:
                gts.append(GroundTruth(str(k), meta.labels[lab], tuple(box)))
    if not gts:
        return {"map50": math.nan}
    report = detection_ap(dets, gts, 0.5)
    out = {"map50": report.mean_ap}
    out.update({f"ap50/{name}": c.ap for name, c in report.per_class.items()})
    return out
