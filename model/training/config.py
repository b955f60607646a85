"""The typed training config: defaults < YAML file < CLI flags, validated once.

Every training setting is a field of `TrainConfig`; `load_config` (the CLI and notebooks) and
`config_from_mapping` (checkpoints, old ones included) are the only ways to build one, so
every config a run or an export sees has passed the same checks. Errors name the bad key.
Torch-free: `python -m model.train --help` does not pay for importing torch.
"""
from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from model.infer.naming import THRESHOLDS

LOSS_NAMES = ("heat", "cls", "box", "mask", "embed")  # the Criterion's terms
COMPOSE_KEYS = ("images", "per_label", "epochs", "supervise")
# What composed trays teach: every head, the mask head only, or the class-agnostic heads.
SUPERVISE = ("all", "mask", "regions")
# Mask targets of the real photos' box-only annotations: the ellipse inscribed in the box, or
# the food inside it where the box holds food in a container (model.data.pseudo.add_refined_masks).
REAL_MASKS = ("ellipse", "refined")
# Parts after the backbone that `train_only` may name (model.network.Heads' modules).
HEAD_PARTS = ("neck", "trunk", "heat", "cls", "box", "mask", "embed")


class ConfigError(ValueError):
    """A training setting that is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (model/configs/default.yaml documents the recipe)."""

    data: list[dict[str, Any]] = field(default_factory=list)  # {kind, root|path, max_per_group}
    labels: str = "default"  # nutrition_db.label_map() order, or "data": the data's categories
    val_fraction: float = 0.2
    # Share of each source's training side held out of training as well (whole capture runs
    # and objects, split as the held-out side is): photos the model never learns from, for
    # what must be fitted on such photos (the open-set thresholds, model.export
    # --open-set-thresholds calibration). 0: none.
    calibration_fraction: float = 0.0
    seed: int = 0  # the held-out split, the augmented views and the composed trays
    train_seed: int = -1  # weight init and batch order; -1: the same as seed
    input_width: int = 512
    input_height: int = 384
    embed_dim: int = 64
    neck_channels: int = 64
    pretrained: bool = True
    decoupled: bool = False
    cache_features: bool = False
    cache_views: int = 1
    freeze_backbone: bool = False
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"heat": 1.0, "box": 2.0, "mask": 1.0, "embed": 0.5})
    workers: int = 0
    val_every: int = 1
    device: str = "auto"
    amp: bool = True
    version: str = "dev"
    output_dir: str = "var/train/run"
    augment: bool = True
    cache_dir: str | None = "var/cache"
    flip_test: bool = False  # the exported file also runs the mirrored photo and averages
    # The exported file also outputs the frozen backbone's stride-16/32 maps, pooled beside
    # the embedding (the backbone descriptor, docs/MODEL_CARD.md); training is unchanged.
    backbone_descriptor: bool = False
    compose: dict[str, Any] = field(default_factory=dict)  # see compose_settings
    # The real photos' mask targets where only a box is known: "ellipse" (inscribed in the
    # box) or "refined" (the food in its container, GrabCut from the ellipse; REAL_MASKS).
    real_masks: str = "ellipse"
    # Train only these parts of the heads (HEAD_PARTS), everything else frozen as loaded:
    # e.g. [mask] teaches an exported model new masks and leaves its boxes, classes and
    # embedding maps as they were. Empty: every part after the (cached or frozen) backbone.
    train_only: list[str] = field(default_factory=list)
    # Train the backbone's stride-32 blocks (model.network.TOP_BLOCKS: 2.26 M of its 2.96 M
    # weights; their BatchNorm statistics stay ImageNet's) at lr x top_blocks_lr, on the
    # cached stride-16 maps with cache_features; the lower backbone stays frozen.
    train_top_blocks: bool = False
    top_blocks_lr: float = 0.1
    # Fine-tune from an exported file (the shipped model: only the ONNX ships) instead of
    # the pretrained backbone; its labels and head shapes must be the config's.
    init_from: str | None = None
    # BatchNorm in eval mode while training (statistics frozen). None: on with init_from,
    # whose BatchNorms are the identity + bias the export folded (batch statistics would
    # replace them); true also suits tiny batches.
    freeze_bn: bool | None = None
    # The open-set naming check model.export fits into the exported file on its training
    # split, by how its thresholds are set (model.infer.naming.THRESHOLDS; "borrowed" in the
    # shipped recipe), or None: the file names by class probability alone.
    open_set: str | None = None
    # Run options: command-line only (not YAML keys); checkpoints keep them as given.
    config: str | None = None  # the YAML file the settings came from
    resume: str | None = None  # checkpoint to continue from
    test_only: bool = False  # validate the (resumed) model only


RUN_OPTIONS = ("config", "resume", "test_only")
ALL_KEYS = tuple(f.name for f in fields(TrainConfig))
SETTINGS = tuple(k for k in ALL_KEYS if k not in RUN_OPTIONS)  # YAML keys and --flags


def load_config(path: Path | None = None, flags: Mapping[str, Any] | None = None,
                resume: str | None = None, test_only: bool = False) -> TrainConfig:
    """Defaults < the YAML file at `path` < `flags` (setting -> value), then validated."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {loaded!r}")
        values.update(checked_values(loaded, str(path), SETTINGS))
    values.update(checked_values(flags or {}, "command line", SETTINGS))
    values.update(config=str(path) if path else None, resume=resume, test_only=test_only)
    cfg = validated(TrainConfig(**values))
    # Checked here, not in `validated`: a checkpoint names its parent after the file moved.
    if cfg.init_from is not None and not Path(cfg.init_from).is_file():
        raise ConfigError(f"init_from: {cfg.init_from}: no such file")
    return cfg


def config_from_mapping(values: Mapping[str, Any], source: str) -> TrainConfig:
    """A config from a plain dict (a checkpoint's); missing keys take today's defaults."""
    return validated(TrainConfig(**checked_values(values, source, ALL_KEYS)))


def checked_values(values: Mapping[str, Any], source: str, allowed: tuple[str, ...],
                   ) -> dict[str, Any]:
    """`values` after the key and type checks; ConfigError names the source and the key."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"{source}: unknown config keys {unknown} (known: "
                          f"{', '.join(allowed)})")
    hints = get_type_hints(TrainConfig)
    return {k: _typed(f"{source}: {k}", v, hints[k]) for k, v in values.items()}


def _typed(where: str, value: Any, hint: Any) -> Any:
    """`value` if it fits the field's type hint; ints pass as floats unchanged (why: the
    feature cache key hashes the value as written, so 0 and 0.0 must stay what they were)."""
    if get_origin(hint) in (Union, types.UnionType):
        if value is None and type(None) in get_args(hint):
            return None
        hint = next(a for a in get_args(hint) if a is not type(None))
    origin, args = get_origin(hint), get_args(hint)
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif origin is list:
        ok = isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    elif origin is dict:
        ok = _fits(value, hint)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(f"{where}: expected {_name(hint)}, got {value!r}")
    return value


def _fits(value: Any, hint: Any) -> bool:
    """Whether a list item fits str, or a mapping dict[str, Any] / dict[str, float]."""
    if hint is str:
        return isinstance(value, str)
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        return False
    if get_args(hint)[1] is float:
        return all(isinstance(v, int | float) and not isinstance(v, bool)
                   for v in value.values())
    return True


def _name(hint: Any) -> str:
    """A type hint as the error message says it."""
    return str(hint) if get_origin(hint) else str(getattr(hint, "__name__", hint))


def validated(cfg: TrainConfig) -> TrainConfig:
    """`cfg` if its settings make sense together; ConfigError naming the bad key otherwise."""
    if not cfg.data:
        raise ConfigError("data: no training data: set `data` in the config or --data '[...]'")
    if cfg.labels not in ("default", "data"):
        raise ConfigError(f"labels: must be 'default' or 'data', got {cfg.labels!r}")
    if not 0.0 <= cfg.calibration_fraction < 1.0:
        raise ConfigError(f"calibration_fraction: must lie in [0, 1), got "
                          f"{cfg.calibration_fraction}")
    unknown = sorted(set(cfg.loss_weights) - set(LOSS_NAMES))
    if unknown:
        raise ConfigError(f"loss_weights: unknown losses {unknown} ({', '.join(LOSS_NAMES)})")
    compose_settings(cfg)
    if cfg.open_set is not None and cfg.open_set not in THRESHOLDS:
        raise ConfigError(f"open_set: must be one of {', '.join(THRESHOLDS)}, got "
                          f"{cfg.open_set!r}")
    if cfg.open_set in ("calibration", "conformal") and not cfg.calibration_fraction:
        raise ConfigError(f"open_set: {cfg.open_set} thresholds need calibration_fraction > 0")
    if cfg.real_masks not in REAL_MASKS:
        raise ConfigError(f"real_masks: must be one of {', '.join(REAL_MASKS)}, got "
                          f"{cfg.real_masks!r}")
    unknown = sorted(set(cfg.train_only) - set(HEAD_PARTS))
    if unknown:
        raise ConfigError(f"train_only: unknown parts {unknown} ({', '.join(HEAD_PARTS)})")
    if cfg.train_only and "cls" in cfg.train_only and not cfg.decoupled:
        raise ConfigError("train_only: 'cls' needs decoupled: true (no class head otherwise)")
    if cfg.train_only and not bn_frozen(cfg):
        raise ConfigError("train_only: needs frozen BatchNorm (init_from, or freeze_bn: true): "
                          "batch statistics would still move the parts it keeps frozen")
    if cfg.train_top_blocks and not (cfg.cache_features or cfg.freeze_backbone):
        raise ConfigError("train_top_blocks: the whole backbone trains already (set "
                          "cache_features or freeze_backbone to train only its top blocks)")
    if cfg.train_top_blocks and cfg.train_only:
        raise ConfigError("train_top_blocks: train_only keeps the backbone frozen; use one")
    if not cfg.top_blocks_lr > 0:
        raise ConfigError(f"top_blocks_lr: must be > 0, got {cfg.top_blocks_lr}")
    if cfg.init_from is not None:
        if not cfg.init_from.endswith(".onnx"):
            raise ConfigError(f"init_from: expected an exported .onnx file, got "
                              f"{cfg.init_from!r}")
        if cfg.freeze_bn is False:
            raise ConfigError("freeze_bn: false with init_from: the exported file's "
                              "BatchNorms are folded into its convolutions, and batch "
                              "statistics in training would undo them; leave it unset")
    return cfg


def bn_frozen(cfg: TrainConfig) -> bool:
    """Whether training keeps every BatchNorm in eval mode (freeze_bn, implied by init_from)."""
    return cfg.freeze_bn if cfg.freeze_bn is not None else cfg.init_from is not None


def training_seed(cfg: TrainConfig) -> int:
    """The seed of weight init and batch order: `train_seed`, or `seed` when it is -1.

    `seed` alone fixes the data (held-out split, cached views, composed trays), so runs that
    differ only in train_seed share one split and one feature cache.
    """
    return cfg.seed if cfg.train_seed == -1 else cfg.train_seed


def compose_settings(cfg: TrainConfig) -> dict[str, Any]:
    """`compose: {images, per_label, epochs}` with defaults; {} when no trays are composed.

    epochs: the composed trays join the real photos for the first `epochs` epochs (a
    pre-training phase); the rest of the schedule sees real photos only. Default, and at
    most: all of the run's epochs (a shortened run keeps its trays).
    supervise: "all" (default) trains every head on them; "mask" only the mask head (their
    masks are exact, the real photos' are ellipses), so the heatmap, boxes and embeddings
    learn from real photos alone; "regions" the class-agnostic heads, objectness, boxes and
    mask (every pasted crop is a food region), while classes and embeddings learn from real
    photos alone (decoupled heads only: a per-class heatmap has no class-agnostic part).
    """
    given = dict(cfg.compose)
    unknown = sorted(set(given) - set(COMPOSE_KEYS))
    if unknown:
        raise ConfigError(f"compose: unknown keys {unknown} ({', '.join(COMPOSE_KEYS)})")
    if given.get("supervise", "all") not in SUPERVISE:
        raise ConfigError(f"compose: supervise must be one of {', '.join(SUPERVISE)}, "
                          f"got {given}")
    if given.get("supervise") == "regions" and not cfg.decoupled:
        raise ConfigError("compose: supervise 'regions' needs decoupled: true (an objectness "
                          "map the trays can teach apart from the classes)")
    if not int(given.get("images", 0)):
        return {}
    epochs = min(int(given.get("epochs", cfg.epochs)), cfg.epochs)
    if int(given.get("epochs", 1)) < 1 or int(given.get("per_label", 20)) < 1:
        raise ConfigError(f"compose: epochs and per_label must be at least 1, got {given}")
    return {"images": int(given["images"]), "per_label": int(given.get("per_label", 20)),
            "epochs": epochs, "supervise": str(given.get("supervise", "all"))}
