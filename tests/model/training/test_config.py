"""model.training.config: defaults < YAML < flags, one validation, errors that name the key."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from model.train import parse_args
from model.training.config import (
    ConfigError,
    TrainConfig,
    compose_settings,
    config_from_mapping,
    load_config,
    training_seed,
)

REPO = Path(__file__).resolve().parents[3]
DATA = [{"kind": "coco", "path": "x.json"}]


def test_config_file_then_cli_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: [{kind: coco, path: x.json}]\nepochs: 7\nlr: 0.1\n")
    args = parse_args(["--config", str(cfg), "--lr", "0.5"])
    assert (args.epochs, args.lr, args.data[0]["kind"]) == (7, 0.5, "coco")
    cfg.write_text("epochz: 3\n")
    with pytest.raises(SystemExit, match="unknown config keys"):
        parse_args(["--config", str(cfg)])
    with pytest.raises(SystemExit, match="no training data"):
        parse_args([])


def test_default_config_parses() -> None:
    args = parse_args(["--config", str(REPO / "model" / "configs" / "default.yaml")])
    assert args.labels == "default" and args.input_width == 512
    assert args.flip_test is True  # the shipped file averages each photo with its mirror
    assert args.backbone_descriptor is True  # and its items' embeddings hold the backbone's


def test_mask_refined_config_differs_from_the_recipe_only_in_its_masks() -> None:
    # How 1.6.0 was made from 1.5.0 (docs/MODEL_CARD.md): the recipe's data, split, heads and
    # export, fine-tuned from the shipped file, only the mask head, on refined targets.
    configs = REPO / "model" / "configs"
    recipe = parse_args(["--config", str(configs / "default.yaml")])
    masks = parse_args(["--config", str(configs / "mask-refined.yaml")])
    assert (masks.real_masks, masks.train_only) == ("refined", ["mask"])
    assert masks.init_from == "model/artifacts/traylens.onnx"
    same = ("data", "labels", "compose", "val_fraction", "seed", "input_width", "input_height",
            "embed_dim", "neck_channels", "decoupled", "flip_test", "backbone_descriptor")
    assert {k: getattr(masks, k) for k in same} == {k: getattr(recipe, k) for k in same}
    assert (recipe.real_masks, recipe.train_only) == ("ellipse", [])
    # Its export also fits the open-set check with borrowed thresholds (1.6.2); the first
    # stage's does not.
    assert (masks.open_set, recipe.open_set) == ("borrowed", None)


def test_yaml_then_flags_then_run_options(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: [{kind: coco, path: x.json}]\namp: false\ncompose: {images: 4}\n")
    cfg = load_config(path, {"amp": True, "epochs": 3}, resume="ck.pt")
    assert isinstance(cfg, TrainConfig)
    assert (cfg.amp, cfg.epochs, cfg.compose, cfg.lr) == (True, 3, {"images": 4}, 1e-3)
    assert (cfg.config, cfg.resume, cfg.test_only) == (str(path), "ck.pt", False)
    args = parse_args(["--config", str(path), "--amp", "false", "--test-only"])
    assert args.amp is False and args.test_only is True
    path.write_text("data: [{kind: coco, path: x.json}]\nresume: ck.pt\n")  # CLI only
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown config keys \['resume'\]"):
        load_config(path)


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: [{kind: coco, path: x.json}]\nepochz: 3\nbatchsize: 2\n")
    with pytest.raises(ConfigError, match=r"unknown config keys \['batchsize', 'epochz'\]"):
        load_config(path)
    for bad, match in (({"loss_weights": {"heat": 1.0, "boxes": 2.0}}, "loss_weights.*boxes"),
                       ({"labels": "coco"}, "labels"),
                       ({"compose": {"images": 4, "pretrain": 1}}, "compose.*pretrain"),
                       ({"calibration_fraction": 1.0}, "calibration_fraction"),
                       ({"calibration_fraction": -0.1}, "calibration_fraction"),
                       ({"open_set": "nearest"}, "open_set: must be one of"),
                       ({"open_set": "calibration"}, "open_set: calibration.*calibration_fr")):
        with pytest.raises(ConfigError, match=match):
            load_config(None, {"data": DATA, **bad})


def test_type_errors_name_the_key_and_where_it_came_from(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    for text, match in (("epochs: ten", "epochs: expected int, got 'ten'"),
                        ("amp: 1", "amp: expected bool, got 1"),
                        ("epochs: true", "epochs: expected int, got True"),
                        ("lr: 1e-3", "lr: expected float"),  # YAML 1.1 reads 1e-3 as text
                        ("data: {kind: coco}", "data: expected list"),
                        ("loss_weights: {heat: high}", "loss_weights: expected dict"),
                        ("version: 1.5", "version: expected str, got 1.5")):
        path.write_text("data: [{kind: coco, path: x.json}]\n" + text + "\n")
        with pytest.raises(ConfigError, match=re.escape(f"{path.name}: {match}")):
            load_config(path)
    with pytest.raises(SystemExit, match="command line: data: expected list"):
        parse_args(["--data", '{"kind": "coco"}'])
    path.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_ints_pass_for_floats_unchanged() -> None:
    # The feature cache key hashes val_fraction as written: 0 must not become 0.0.
    cfg = load_config(None, {"data": DATA, "val_fraction": 0, "lr": 1})
    assert cfg.val_fraction == 0 and type(cfg.val_fraction) is int and cfg.lr == 1


def test_a_checkpoint_dict_missing_newer_keys_takes_the_defaults() -> None:
    cfg = config_from_mapping({"data": DATA, "seed": 3, "resume": None}, "old.pt")
    assert (cfg.decoupled, cfg.flip_test, cfg.train_seed, cfg.compose) == (False, False, -1, {})
    assert training_seed(cfg) == 3
    with pytest.raises(ConfigError, match=r"old\.pt: unknown config keys"):
        config_from_mapping({"data": DATA, "optimiser": "sgd"}, "old.pt")


def test_compose_settings_defaults_and_errors() -> None:
    args = parse_args(["--data", "[{}]", "--epochs", "10"])
    assert compose_settings(args) == {}
    args = replace(args, compose={"images": 8})
    assert compose_settings(args) == {"images": 8, "per_label": 20, "epochs": 10,
                                      "supervise": "all"}
    regions = replace(args, compose={"images": 8, "supervise": "regions"}, decoupled=True)
    assert compose_settings(regions)["supervise"] == "regions"
    with pytest.raises(ValueError, match="needs decoupled"):
        compose_settings(replace(regions, decoupled=False))
    args = replace(args, compose={"images": 8, "epochs": 30})  # a shortened run keeps its trays
    assert compose_settings(args)["epochs"] == 10
    for bad in ({"images": 8, "epochs": 0}, {"images": 8, "per_label": 0},
                {"images": 8, "pretrain": 2}, {"images": 8, "supervise": "boxes"}):
        args = replace(args, compose=bad)
        with pytest.raises(ValueError, match="compose"):
            compose_settings(args)
        with pytest.raises(SystemExit, match="compose"):  # refused when the config is loaded
            parse_args(["--data", "[{}]", "--compose", str(bad).replace("'", '"')])
