"""Data sources of a training run: import, split, cap, compose trays, label, build datasets.

`prepare_data` turns a config's `data` list into the datasets `fit` trains and validates on
and the ModelMeta the exported file will carry.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import ConcatDataset, Dataset

from model.data.coco import CocoDataset
from model.dataset import InputSpec, TrayDataset, train_transforms
from model.infer.runtime import ModelMeta
from model.training.config import TrainConfig, compose_settings
from model.training.distributed import is_main
from model.training.meta import input_spec, meta_for


def load_sources(sources: Sequence[dict[str, Any]]) -> list[CocoDataset]:
    """Import each source ({kind: mealtray|ecustfd|coco, root|path: ..., max_per_group: n})."""
    out = []
    for src in sources:
        kind = src.get("kind")
        if kind == "mealtray":
            from model.data.importers.mealtray import import_mealtray

            out.append(import_mealtray(src["root"]))
        elif kind == "ecustfd":
            from model.data.importers.ecustfd import import_ecustfd

            out.append(import_ecustfd(src["root"]))
        elif kind == "coco":
            from model.data.coco import load

            out.append(load(src["path"]))
        else:
            raise ValueError(f"unknown data source kind {kind!r} in {src}")
    return out


def split_sources(
    datasets: Sequence[CocoDataset], val_fraction: float, seed: int
) -> tuple[list[CocoDataset], list[CocoDataset]]:
    """Group-aware train/val split of each source (capture runs / objects never cut)."""
    from model.data.splits import training_split

    train, val = [], []
    for ds in datasets:
        if val_fraction <= 0:
            train.append(ds)
            val.append(ds.subset([]))
            continue
        tr, va = training_split(ds, val_fraction, seed)
        train.append(tr)
        val.append(va)
    return train, val


def split_with_calibration(
    datasets: Sequence[CocoDataset], val_fraction: float, calibration_fraction: float,
    seed: int,
) -> tuple[list[CocoDataset], list[CocoDataset], list[CocoDataset]]:
    """(trained on, calibration, held out) of each source: the held-out split, then the
    calibration share of the training side, both by whole capture runs and objects (no
    calibration photo at calibration_fraction 0)."""
    train, val = split_sources(datasets, val_fraction, seed)
    trained, calibration = split_sources(train, calibration_fraction, seed)
    return trained, calibration, val


def cap_groups(ds: CocoDataset, per_group: int) -> CocoDataset:
    """At most `per_group` images of each split group (repeat shots of one tray or object).

    Why: the kiosk and ECUSTFD shoot each object several times; extra near-duplicates cost
    CPU time in training and add little.
    """
    from model.data.splits import group_of

    if per_group <= 0:
        return ds
    seen: dict[str, int] = {}
    keep = []
    for im in ds.images:
        g = group_of(im)
        if seen.get(g, 0) < per_group:
            keep.append(im.id)
            seen[g] = seen.get(g, 0) + 1
    return ds.subset(keep)


def resolve_labels(
    choice: str, datasets: Sequence[CocoDataset]
) -> tuple[list[str], list[str | None]]:
    """Model labels + food ids: nutrition_db's label map ("default") or the data's categories."""
    if choice == "default":
        from nutrition_db import label_map

        lm = label_map()
        return list(lm.labels), [lm.food_id(name) for name in lm.labels]
    if choice != "data":
        raise ValueError(f"labels must be 'default' or 'data', got {choice!r}")
    labels: list[str] = []
    food: dict[str, str | None] = {}
    for ds in datasets:
        for cat in ds.categories:
            if cat.name not in food:
                labels.append(cat.name)
            food[cat.name] = food.get(cat.name) or cat.food_id
    return labels, [food[n] for n in labels]


def compose_training_trays(
    parts: Sequence[CocoDataset], images: int, per_label: int, seed: int,
    cache_dir: Path | None,
) -> CocoDataset:
    """Trays composed from crops of the training parts only: never a held-out object.

    Written under cache_dir keyed by the parts and settings, so later runs reuse them (rank 0
    composes, other ranks wait). The index is saved last, via a temp file: a run stopped
    half-way composes again.
    """
    from model.data.coco import load, save
    from model.data.compose import compose_dataset, extract_crops

    key = hashlib.sha256(json.dumps([fingerprint(parts), images, per_label, seed]).encode())
    root = cache_dir if cache_dir is not None else Path("var/cache")
    out = root / f"composed-{key.hexdigest()[:12]}"
    index = out / "composed.json"
    if is_main() and not index.is_file():
        crops = [c for ds in parts for c in extract_crops(ds, per_label=per_label, seed=seed)]
        tmp = save(compose_dataset(crops, out, images, seed), out / "composed.json.tmp")
        tmp.replace(index)
    if dist.is_initialized():
        dist.barrier()
    return load(index)


def fingerprint(datasets: Sequence[CocoDataset]) -> str:
    """Hash of the training annotations (images, boxes, labels, grams) in a stable order."""
    from model.data.coco import to_dict

    h = hashlib.sha256()
    for ds in datasets:
        data = to_dict(ds)
        data.pop("image_root", None)
        h.update(json.dumps(data, sort_keys=True, default=str).encode())
    return "sha256:" + h.hexdigest()[:16]


def build_datasets(
    parts: Sequence[CocoDataset], labels: Sequence[str], spec: InputSpec, augment: bool
) -> Dataset[Any]:
    """One torch dataset over several COCO sources."""
    tf = train_transforms() if augment else None
    return ConcatDataset([TrayDataset(ds, labels, spec, tf) for ds in parts if ds.images])


def has_images(parts: Sequence[CocoDataset]) -> bool:
    """Whether any part holds an image."""
    return any(ds.images for ds in parts)


@dataclass
class TrainSets:
    """What fit trains and validates on.

    train_fingerprint keys the feature cache of `train`; `composed` (trays pasted from
    training crops) joins `train` for the first `composed_epochs` epochs, and with
    composed_masks_only keeps them out of the class and embedding losses (what else they
    teach is the Criterion's `composed_regions`).
    """

    train: Dataset[Any]
    train_fingerprint: str
    val: Dataset[Any] | None = None
    composed: Dataset[Any] | None = None
    composed_epochs: int = 0
    composed_masks_only: bool = False


class Marked(Dataset[tuple[Any, dict[str, torch.Tensor]]]):
    """A training dataset whose targets say whether its samples are real photos (Criterion)."""

    def __init__(self, data: Dataset[Any], real: bool) -> None:
        self.data = data
        self.real = torch.tensor(1.0 if real else 0.0)

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, dict[str, torch.Tensor]]:
        inputs, t = self.data[i]
        return inputs, {**t, "real": self.real}


def trained_and_held_out(
    cfg: TrainConfig, sources: Sequence[CocoDataset]
) -> tuple[list[CocoDataset], list[CocoDataset]]:
    """The photos a run trains on and validates on: each source split (held out, then the
    calibration share left out too) and capped to its max_per_group."""
    train_parts, _, val_parts = split_with_calibration(
        sources, cfg.val_fraction, cfg.calibration_fraction, cfg.seed)
    caps = [int(src.get("max_per_group", 0)) for src in cfg.data]
    return ([cap_groups(ds, n) for ds, n in zip(train_parts, caps, strict=True)],
            [cap_groups(ds, n) for ds, n in zip(val_parts, caps, strict=True)])


def prepare_data(cfg: TrainConfig) -> tuple[ModelMeta, TrainSets]:
    """The configured sources, split, capped and composed, as datasets, with their meta."""
    sources = load_sources(cfg.data)
    train_parts, val_parts = trained_and_held_out(cfg, sources)
    compose = compose_settings(cfg)
    composed = ([compose_training_trays(
        train_parts, compose["images"], compose["per_label"], cfg.seed,
        Path(cfg.cache_dir) if cfg.cache_dir else None)] if compose else [])
    if cfg.real_masks == "refined":  # after composing: crops keep their containers
        from model.data.pseudo import add_refined_masks

        train_parts = [add_refined_masks(ds) for ds in train_parts]
        val_parts = [add_refined_masks(ds) for ds in val_parts]
    labels, food_ids = resolve_labels(cfg.labels, sources)
    spec = input_spec(cfg)
    # The fingerprint names everything trained on, composed trays included; the feature
    # cache of the real photos is keyed by them alone, so runs with and without trays share it.
    meta = meta_for(cfg, labels, food_ids, fingerprint([*train_parts, *composed]))
    sets = TrainSets(
        train=build_datasets(train_parts, labels, spec, augment=cfg.augment),
        train_fingerprint=fingerprint(train_parts),
        val=(build_datasets(val_parts, labels, spec, augment=False)
             if has_images(val_parts) else None),
        composed=(build_datasets(composed, labels, spec, augment=cfg.augment)
                  if composed else None),
        composed_epochs=compose.get("epochs", 0),
        composed_masks_only=compose.get("supervise") in ("mask", "regions"))
    return meta, sets
