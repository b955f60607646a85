"""The feature cache: frozen-backbone features + targets of augmented views, saved to disk.

With `cache_features`, the frozen backbone runs once per augmented view and only the neck
and heads train (DESIGN: the CPU budget); the views are keyed by data, labels, input and
seed so later runs (more views, more epochs, other train seeds) reuse them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from model.dataset import TARGETS_VERSION
from model.infer.runtime import ModelMeta
from model.network import TrayNet
from model.training.config import TrainConfig
from model.training.distributed import is_main
from model.training.sources import TrainSets


class FeatureCache(Dataset[tuple[list[torch.Tensor], dict[str, torch.Tensor]]]):
    """Backbone features + targets (fp16) of `views` augmented passes over a dataset.

    Each view is saved under `cache_dir` keyed by data, labels, input and seed, so a longer
    run (more views, more epochs) reuses the passes an earlier run already paid for.
    """

    def __init__(self, model: TrayNet, data: Dataset[Any], views: int, batch: int,
                 key: str, cache_dir: Path | None, desc: str) -> None:
        self.items: list[tuple[list[torch.Tensor], dict[str, torch.Tensor]]] = []
        for view in range(views):
            path = cache_dir / f"{key}-view{view}.pt" if cache_dir else None
            if path is not None and path.is_file():
                self.items.extend(torch.load(path, weights_only=True))
                continue
            # Each view its own (reproducible) augmentation draw.
            torch.manual_seed(int(hashlib.sha256(f"{key}/{view}".encode()).hexdigest()[:8], 16))
            items = compute_features(model, data, batch, f"{desc} (view {view})")
            if path is not None and is_main():
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(items, path.with_suffix(".tmp"))
                path.with_suffix(".tmp").replace(path)
            self.items.extend(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        feats, t = self.items[i]
        return [f.float() for f in feats], {k: v.float() if v.is_floating_point() else v
                                            for k, v in t.items()}


def compute_features(model: TrayNet, data: Dataset[Any], batch: int, desc: str,
                     ) -> list[tuple[list[torch.Tensor], dict[str, torch.Tensor]]]:
    """One pass of the frozen backbone over a dataset; fp16 to halve memory."""
    model.eval()
    items = []
    loader = DataLoader(data, batch_size=batch, shuffle=False)
    with torch.no_grad():
        for images, targets in tqdm(loader, desc=desc, leave=False, disable=not is_main()):
            feats = model.features(images)
            for i in range(images.shape[0]):
                items.append(([f[i].half().clone() for f in feats],
                              {k: v[i].half() if v.is_floating_point() and k != "boxes" else v[i]
                               for k, v in targets.items()}))
    return items


def cache_key(cfg: TrainConfig, meta: ModelMeta, data_fingerprint: str) -> str:
    """What the cached features and targets depend on: data, labels, geometry, split, augment.

    With init_from, the parent file's hash too (its backbone makes the features).
    Why augment: a clean view and an augmented view of the same index must not share a file.
    TARGETS_VERSION: the dense targets are cached too, so a change to how they are built
    must not reuse files made the old way.
    """
    parts = [data_fingerprint, meta.labels, meta.input_size, cfg.seed, cfg.val_fraction,
             bool(cfg.augment), TARGETS_VERSION]
    if "init_from" in meta.training:  # the parent's backbone computes the features
        parts.append(meta.training["init_from"]["sha256"])
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def cache_sets(probe: TrayNet, cfg: TrainConfig, meta: ModelMeta, sets: TrainSets) -> TrainSets:
    """`sets` with every dataset replaced by its cached features (train, val, composed).

    The real photos' views are keyed by the real photos alone, so runs with and without
    composed trays share them; the composed views by everything trained on.
    """
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    key = cache_key(cfg, meta, sets.train_fingerprint)
    train = FeatureCache(probe, sets.train, cfg.cache_views, cfg.batch_size, key + "-train",
                         cache_dir, "caching train features")
    val = FeatureCache(probe, sets.val, 1, cfg.batch_size, key + "-val", cache_dir,
                       "caching val features") if sets.val is not None else None
    composed = None
    if sets.composed is not None:
        composed = FeatureCache(
            probe, sets.composed, cfg.cache_views, cfg.batch_size,
            cache_key(cfg, meta, meta.fingerprint) + "-composed", cache_dir,
            "caching composed-tray features")
    return replace(sets, train=train, val=val, composed=composed)
