"""Deterministic train/val splits that never cut a split group (capture run, object).

Every image carries `split_group`; all images of a group land on the same side. Groups
are shuffled with a seeded generator and taken into val until about `val_fraction` of
the images are there. With `strata`, each stratum (e.g. the food of an ECUSTFD object)
is split on its own, so every food with two or more objects appears on both sides.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

import numpy as np

from model.data.coco import CocoDataset, ImageRecord

DEFAULT_VAL_FRACTION = 0.2
DEFAULT_SEED = 0


def group_of(image: ImageRecord) -> str:
    """The image's split group; an image without one is its own group."""
    return image.split_group if image.split_group is not None else f"image:{image.file_name}"


def split_groups(
    groups: dict[str, int], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split group names (with image counts) into (train, val) near val_fraction of images."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    names = sorted(groups)
    if len(names) < 2:
        raise ValueError(f"need at least 2 split groups to split, got {len(names)}")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    target = val_fraction * sum(groups.values())
    val: list[str] = []
    taken = 0
    for name in order:
        # Val takes a group only when it brings the image count closer to the target (the
        # first always, so val is never empty); train always keeps at least one group.
        if taken >= target or len(val) == len(names) - 1:
            break
        if val and abs(taken + groups[name] - target) > abs(taken - target):
            continue
        val.append(name)
        taken += groups[name]
    chosen = set(val)
    return [n for n in names if n not in chosen], sorted(val)


def train_val_split(
    ds: CocoDataset,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    strata: Mapping[str, str] | None = None,
) -> tuple[CocoDataset, CocoDataset]:
    """(train, val) datasets; no split group appears on both sides.

    strata maps split group -> stratum; each stratum with 2+ groups is split on its own.
    """
    counts: dict[str, int] = defaultdict(int)
    for im in ds.images:
        counts[group_of(im)] += 1
    by_stratum: dict[str, dict[str, int]] = defaultdict(dict)
    for g, n in counts.items():
        by_stratum[strata.get(g, "") if strata else ""][g] = n
    val_groups: set[str] = set()
    for k, key in enumerate(sorted(by_stratum)):
        groups = by_stratum[key]
        if len(groups) >= 2:
            val_groups.update(split_groups(groups, val_fraction, seed + k)[1])
    val_ids = [im.id for im in ds.images if group_of(im) in val_groups]
    train_ids = [im.id for im in ds.images if group_of(im) not in val_groups]
    return ds.subset(train_ids), ds.subset(val_ids)


def label_strata(ds: CocoDataset, ignore: tuple[str, ...] = ("coin",)) -> dict[str, str]:
    """Split group -> its most frequent label (ignoring reference objects such as the coin)."""
    names = ds.category_names()
    group = {im.id: group_of(im) for im in ds.images}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for a in ds.annotations:
        if names[a.category_id] not in ignore:
            counts[group[a.image_id]][names[a.category_id]] += 1
    # Ties break by name so the stratum never depends on annotation order.
    return {
        g: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] if c else ""
        for g, c in ((g, counts.get(g, Counter())) for g in set(group.values()))
    }


def training_split(
    ds: CocoDataset, val_fraction: float, seed: int
) -> tuple[CocoDataset, CocoDataset]:
    """The split training and evaluation share: stratified by label, else plain by group.

    Small sets where every label sits in one group give an empty stratified val side; they
    fall back to an unstratified group split.
    """
    train, val = train_val_split(ds, val_fraction, seed, strata=label_strata(ds))
    if not val.images:
        train, val = train_val_split(ds, val_fraction, seed)
    return train, val
