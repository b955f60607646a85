"""Torch weights from an exported ONNX file: the shipped model back in torch, fine-tuning it.

The export folds each BatchNorm into its convolution; `load_onnx_weights` restores the conv's
folded weight and makes the BatchNorm the identity plus the folded bias. Measured on the
shipped file (flip test, decoupled, 512x384) over two fixture photos: heatmap 8e-7, mask 2e-6,
embedding 4e-6, box sides 1.1e-3 px on distances of tens to hundreds of pixels (1.04e-5
relative): ONNX Runtime vs eager torch, the same order as the export's own parity check.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from model import export
from model.infer.images import load_image
from model.infer.runtime import PostConfig, TrayModel, preprocess
from model.network import OUTPUT_NAMES, TrayNet
from model.train import parse_args
from model.training.checkpoints import load_checkpoint
from model.training.config import ConfigError, bn_frozen
from model.training.from_onnx import (
    OnnxInitError,
    bn_modules,
    check_parent,
    load_onnx_weights,
    network_from_onnx,
)
from model.training.loop import train_one_epoch
from model.training.run import make_state, run
from tests.model.conftest import TinyExport, assert_torch_and_onnx_agree, tiny_args

SHIPPED = Path(__file__).resolve().parents[3] / "model" / "artifacts" / "traylens.onnx"
MAP_ATOL = 1e-4  # heatmap, mask (probabilities), raw embedding and backbone maps
LTRB_RTOL = 5e-5  # box sides in pixels, relative (exp of a logit: 1e-5 measured)


@pytest.fixture(scope="module")
def photos(fixtures_dir: Path) -> list[Path]:
    return [fixtures_dir / "ecustfd" / "JPEGImages" / "mix001T(1).JPG",
            next((fixtures_dir / "mealtray" / "labeled").glob("*.jpg"))]


@pytest.fixture(scope="module")
def shipped() -> tuple[TrayNet, object, object]:
    if not SHIPPED.is_file():
        pytest.skip("no shipped model")
    return network_from_onnx(SHIPPED)


@pytest.fixture(scope="module")
def tiny_parent(tmp_path_factory: pytest.TempPathFactory, tiny_onnx: TinyExport,
                ) -> tuple[TrayNet, Path]:
    """A small exported file shaped like tiny_args' runs (embed 16, neck 32)."""
    model, _, path = tiny_onnx(tmp_path_factory.mktemp("parent") / "parent.onnx")
    return model, path


def test_shipped_file_back_in_torch_matches_onnx_runtime(shipped: tuple,
                                                         photos: list[Path]) -> None:
    net, meta, report = shipped
    assert net.flip_test == meta.flip_test and net.members == 1
    assert net.backbone_outputs == bool(meta.backbone_strides)  # 1.5.0: the backbone's maps too
    assert len(report.conv_bn) == 67 and len(report.conv_bias) == 5  # the 72 Conv nodes
    rt = TrayModel(SHIPPED)
    pics = [load_image(p) for p in photos]
    batch, _ = preprocess(pics, rt.meta)
    with torch.no_grad():
        ref = [t.numpy() for t in net(torch.from_numpy(batch))]
    got, _ = rt.run(pics)
    assert net.output_names[:4] == OUTPUT_NAMES
    for name, a, b in zip(net.output_names, got, ref, strict=True):
        if name == "ltrb":
            assert float((np.abs(a - b) / np.abs(b)).max()) < LTRB_RTOL
        else:
            assert float(np.abs(a - b).max()) < MAP_ATOL, name


def test_shipped_file_back_in_torch_gives_the_same_items(shipped: tuple,
                                                         photos: list[Path]) -> None:
    net, meta, _ = shipped
    rt = TrayModel(SHIPPED)
    cfg = PostConfig(score_min=0.1, max_items=20)
    for photo in photos:
        assert_torch_and_onnx_agree(net, rt, meta, load_image(photo), cfg, score_abs=1e-4,
                                    cosine_min=0.9999)


def test_batchnorms_become_identity_plus_folded_bias(tiny_parent: tuple) -> None:
    model, path = tiny_parent
    net = TrayNet(model.num_classes, 16, 32, pretrained=False)
    load_onnx_weights(net, path)
    for bn in bn_modules(net):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var))
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(net.eval()(x), model.eval()(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4)


def test_wrong_architecture_missing_and_leftover_tensors_fail_loudly(
        tiny_parent: tuple, tmp_path: Path, tiny_onnx: TinyExport) -> None:
    model, path = tiny_parent
    with pytest.raises(OnnxInitError, match="shapes differ"):
        load_onnx_weights(TrayNet(model.num_classes, 16, 64, pretrained=False), path)
    with pytest.raises(OnnxInitError, match=r"no Conv node with weight 'heads\.cls"):
        load_onnx_weights(TrayNet(model.num_classes, 16, 32, pretrained=False,
                                  decoupled=True), path)
    proto = onnx.load(str(path))
    dropped = next(i for i in proto.graph.initializer if i.name == "heads.heat.1.bias")
    proto.graph.initializer.remove(dropped)
    onnx.save_model(proto, str(tmp_path / "missing.onnx"))
    with pytest.raises(OnnxInitError, match=r"heads\.heat\.1\.bias"):
        load_onnx_weights(TrayNet(model.num_classes, 16, 32, pretrained=False),
                          tmp_path / "missing.onnx")
    # The ensemble the quantisation and export tests use too (one export for all of them).
    ensemble = tiny_onnx(tmp_path / "ens.onnx", decoupled=True, flip_test=True, members=3)[2]
    with pytest.raises(OnnxInitError, match="no place for"):
        load_onnx_weights(TrayNet(model.num_classes, 16, 32, pretrained=False, decoupled=True,
                                  flip_test=True), ensemble)
    with pytest.raises(OnnxInitError, match="ensemble of 3"):
        check_parent(ensemble, TrayModel(ensemble).meta.labels, 16, 32, True)
    assert network_from_onnx(ensemble)[0].members == 3  # loadable (evaluation), not trainable


def test_labels_reordered_are_remapped_other_labels_refused(tiny_parent: tuple) -> None:
    model, path = tiny_parent
    labels = TrayModel(path).meta.labels
    swapped = [labels[1], labels[0], *labels[2:]]
    net = TrayNet(model.num_classes, 16, 32, pretrained=False)
    assert load_onnx_weights(net, path, labels=swapped).remapped_labels
    theirs = model.heads.heat[1].weight
    assert torch.equal(net.heads.heat[1].weight[0], theirs[1])
    assert torch.equal(net.heads.heat[1].weight[2:], theirs[2:])
    with pytest.raises(OnnxInitError, match="new \\['pizza'\\]"):
        check_parent(path, [*labels[:-1], "pizza"], 16, 32, False)
    with pytest.raises(OnnxInitError, match="embed_dim: parent 16, config 64"):
        check_parent(path, labels, 64, 32, False)


def test_a_training_step_with_frozen_bn_leaves_the_statistics(tiny_parent: tuple) -> None:
    model, path = tiny_parent
    cfg = parse_args(["--data", json.dumps([{"kind": "coco", "path": "x"}]),
                      "--embed-dim", "16", "--neck-channels", "32", "--lr", "0.01"])
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 96)
    targets = {"heatmap": torch.rand(2, model.num_classes, 8, 12)}

    class Step(nn.Module):  # one batch; a loss on the raw maps is enough for BN
        def __init__(self, net: TrayNet) -> None:
            super().__init__()
            self.net = net

        def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
            return self.net.raw(inputs)

    def stats_after_step(freeze: bool) -> tuple[list[torch.Tensor], bool]:
        state = make_state(cfg, TrayModel(path).meta.labels, 1)
        load_onnx_weights(state.model, path)
        before = [b.clone() for m in bn_modules(state.model)
                  for b in (m.running_mean, m.running_var)]
        state.criterion = lambda raw, t: {  # type: ignore[assignment]
            "total": ((torch.sigmoid(raw["heat_logits"]) - t["heatmap"]) ** 2).mean()}
        weight = state.model.heads.heat[1].weight.clone()
        train_one_epoch(state, [(x, targets)], False, torch.device("cpu"), False,  # type: ignore[arg-type]
                        Step(state.model), freeze_bn=freeze)
        after = [b for m in bn_modules(state.model) for b in (m.running_mean, m.running_var)]
        same = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        assert not torch.equal(weight, state.model.heads.heat[1].weight)  # it did train
        return after, same

    assert stats_after_step(freeze=True)[1]
    assert not stats_after_step(freeze=False)[1]  # what freeze_bn prevents


def test_config_init_from_flag_checks_and_implies_freeze_bn(tiny_parent: tuple,
                                                            tmp_path: Path) -> None:
    _, path = tiny_parent
    data = ["--data", json.dumps([{"kind": "coco", "path": "x"}])]
    cfg = parse_args([*data, "--init-from", str(path)])
    assert cfg.init_from == str(path) and cfg.freeze_bn is None and bn_frozen(cfg)
    assert not bn_frozen(parse_args(data))
    assert bn_frozen(parse_args([*data, "--freeze-bn", "true"]))
    with pytest.raises(SystemExit, match="freeze_bn: false with init_from"):
        parse_args([*data, "--init-from", str(path), "--freeze-bn", "false"])
    with pytest.raises(SystemExit, match="no such file"):
        parse_args([*data, "--init-from", str(tmp_path / "gone.onnx")])
    with pytest.raises(SystemExit, match=r"expected an exported \.onnx"):
        parse_args([*data, "--init-from", "model.pt"])
    yaml_cfg = tmp_path / "c.yaml"
    yaml_cfg.write_text(f"init_from: {path}\n")
    assert parse_args(["--config", str(yaml_cfg), *data]).init_from == str(path)


@pytest.mark.slow
def test_fine_tune_starts_from_the_parent_and_records_it(
        tiny_parent: tuple, fixtures_dir: Path, tmp_path: Path) -> None:
    model, path = tiny_parent
    out = tmp_path / "ft"
    run(parse_args(tiny_args(fixtures_dir, out, "--epochs", "1", "--init-from", str(path),
                             "--lr", "1e-6", "--cache-features", "true")))
    ckpt = load_checkpoint(out / "checkpoint.pt")
    parent = ckpt["meta"]["training"]["init_from"]
    assert parent["file"] == "parent.onnx" and parent["version"] == "test"
    assert parent["sha256"].startswith("sha256:") and len(parent["sha256"]) == 71
    tuned = ckpt["model"]
    theirs = model.state_dict()
    # A tiny step at lr 1e-6: the weights are the parent's, moved only slightly.
    assert torch.allclose(tuned["heads.box.1.weight"], theirs["heads.box.1.weight"], atol=1e-3)
    assert torch.equal(tuned["backbone.conv_stem.weight"],  # frozen backbone: untouched
                       load_parent_tensor(path, "backbone.conv_stem.weight"))
    for k, v in tuned.items():  # frozen BN: identity statistics after training
        if k.endswith("running_mean"):
            assert torch.equal(v, torch.zeros_like(v)), k
    # The export keeps the lineage (the parent may be overwritten by then).
    export.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "n.onnx"),
                 "--no-calibrate"])
    assert export.read_meta(tmp_path / "n.onnx").training["init_from"] == parent


def test_fine_tune_refuses_a_config_unlike_the_parent(tiny_parent: tuple, fixtures_dir: Path,
                                                      tmp_path: Path) -> None:
    _, path = tiny_parent
    with pytest.raises(ConfigError, match="neck_channels: parent 32, config 64"):
        run(parse_args(tiny_args(fixtures_dir, tmp_path, "--epochs", "1", "--init-from",
                                 str(path), "--neck-channels", "64")))


def load_parent_tensor(path: Path, name: str) -> torch.Tensor:
    proto = onnx.load(str(path))
    init = next(i for i in proto.graph.initializer if i.name == name)
    return torch.from_numpy(onnx.numpy_helper.to_array(init).copy())


@pytest.mark.slow
def test_train_only_the_mask_head_on_refined_targets(
        tiny_parent: tuple, fixtures_dir: Path, tmp_path: Path) -> None:
    # The 1.6.0 candidate's recipe in small: only the mask head moves; every other weight,
    # the class prototypes' use aside, is the parent's to the bit, and the file says how its
    # masks were taught.
    _, path = tiny_parent
    out = tmp_path / "masks"
    run(parse_args(tiny_args(fixtures_dir, out, "--epochs", "1", "--init-from", str(path),
                             "--cache-features", "true", "--real-masks", "refined",
                             "--train-only", '["mask"]')))
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["meta"]["training"]["real_masks"] == "refined"
    assert ckpt["meta"]["training"]["train_only"] == ["mask"]
    parent = network_from_onnx(path)[0].state_dict()  # as loaded: BatchNorm folded
    moved = {k for k, v in ckpt["model"].items()
             if v.is_floating_point() and not torch.equal(v, parent[k])}
    assert moved and all(k.startswith("heads.mask.") for k in moved), sorted(moved)


def test_train_only_names_parts_of_the_heads(fixtures_dir: Path, tmp_path: Path) -> None:
    data = [*tiny_args(fixtures_dir, tmp_path), "--freeze-bn", "true"]
    assert parse_args([*data, "--train-only", '["mask", "embed"]']).train_only == ["mask", "embed"]
    with pytest.raises(SystemExit, match=r"train_only: unknown parts \['backbone'\]"):
        parse_args([*data, "--train-only", '["backbone"]'])
    with pytest.raises(SystemExit, match="train_only: expected"):
        parse_args([*data, "--train-only", '"mask"'])
    with pytest.raises(SystemExit, match="train_only: needs frozen BatchNorm"):
        parse_args([*data, "--train-only", '["mask"]', "--freeze-bn", "false"])
    with pytest.raises(SystemExit, match="real_masks: must be one of ellipse, refined"):
        parse_args([*data, "--real-masks", "grabcut"])
