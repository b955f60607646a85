"""What a trained model tells its users: the input geometry and the exported file's ModelMeta."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.dataset import InputSpec
from model.infer.runtime import ModelMeta
from model.network import STRIDE
from model.training.config import TrainConfig, compose_settings, training_seed

MEAN = (0.5, 0.5, 0.5)  # Lite0 weights expect inputs in [-1, 1]
STD = (0.5, 0.5, 0.5)


def input_spec(cfg: TrainConfig) -> InputSpec:
    """The network input from the config."""
    return InputSpec(size=(cfg.input_width, cfg.input_height), stride=STRIDE, mean=MEAN, std=STD)


def meta_for(cfg: TrainConfig, labels: Sequence[str], food_ids: Sequence[str | None],
             fp: str, parent: dict[str, Any] | None = None) -> ModelMeta:
    """The ModelMeta the exported file will carry (metrics and portions are filled later).

    With init_from, training["init_from"] names the parent model (file, version, sha256):
    `parent` when given (an export: the record made at training time, the file may have
    been replaced since), else read from the file now.
    """
    lineage = {}
    if cfg.init_from is not None:
        lineage = {"init_from": parent or parent_provenance(cfg.init_from)}
    return ModelMeta(
        labels=list(labels), food_ids=list(food_ids),
        input_size=(cfg.input_width, cfg.input_height), mean=MEAN, std=STD,
        stride=STRIDE, embedding_dim=cfg.embed_dim, version=cfg.version,
        fingerprint=fp, flip_test=cfg.flip_test,
        # The evaluator re-derives the held-out split from val_fraction and seed.
        training={"epochs": cfg.epochs, "seed": cfg.seed, "train_seed": training_seed(cfg),
                  "val_fraction": float(cfg.val_fraction), "data": list(cfg.data),
                  "calibration_fraction": float(cfg.calibration_fraction),
                  "cache_features": cfg.cache_features, "decoupled": cfg.decoupled,
                  "compose": compose_settings(cfg), **lineage, **mask_training(cfg)},
    )


def mask_training(cfg: TrainConfig) -> dict[str, Any]:
    """How the masks were taught, where it is not the recipe's default (earlier files' metadata
    stays as it was): refined targets on the real photos, heads trained alone."""
    out: dict[str, Any] = {}
    if cfg.real_masks != "ellipse":
        out["real_masks"] = cfg.real_masks
    if cfg.train_only:
        out["train_only"] = list(cfg.train_only)
    return out


def parent_provenance(path: str | Path) -> dict[str, Any]:
    """The parent model of a fine-tune: its file name, version and content hash."""
    import hashlib

    from model.export import read_meta

    h = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"file": Path(path).name, "version": read_meta(path).version,
            "sha256": f"sha256:{h}"}


def meta_dict(meta: ModelMeta) -> dict[str, Any]:
    """ModelMeta as a plain dict for the checkpoint."""
    return json.loads(meta.to_json())
