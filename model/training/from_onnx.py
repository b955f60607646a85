"""Torch weights back from an exported ONNX file: fine-tune the shipped model without a .pt.

Only the ONNX file ships. The exporter keeps torch's parameter names as initializers but
folds each BatchNorm into the convolution before it: the Conv node holds the folded weight
`<conv>.weight` and a new bias (`<conv>.weight_bias`), and no BatchNormalization node is
left. `load_onnx_weights` undoes the naming, not the arithmetic (the fold cannot be undone):

  conv followed by a BatchNorm  conv.weight = folded weight; BN weight = 1, BN bias = folded
                                bias (zeros when the graph's Conv has none: the exporter drops
                                an all-zero bias), running_mean = 0, running_var = 1 - eps,
                                so BN in eval mode is the identity plus the bias
  conv with its own bias        conv.weight, conv.bias = the Conv node's weight and bias
                                (zeros when it has none, as above)
  any other parameter/buffer    the initializer of the same name

A fine-tune from such weights must keep every BatchNorm in eval mode (`freeze_bn`): in
training mode batch statistics would replace the identity. Anything missing, left over or
of another shape is an OnnxInitError, never a silent partial load.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from model.infer.runtime import META_KEY, ModelMeta
from model.network import TrayNet

# Initializers named like a TrayNet tensor (others are the exporter's constants: val_12...).
PARAM_NAME = re.compile(r"^(backbone|heads|extra_heads)\.")
# The class-channel projections, remapped when the labels come in another order.
CLASS_PROJECTIONS = ("cls.1", "heat.1")


class OnnxInitError(ValueError):
    """The ONNX file's tensors do not fit the TrayNet (missing, left over, shape, kind)."""


@dataclass
class OnnxFile:
    """An exported file's metadata, initializers and (weight -> bias) of its Conv nodes."""

    path: Path
    meta: ModelMeta
    tensors: dict[str, np.ndarray]
    conv_bias: dict[str, str | None]  # Conv weight initializer -> its bias initializer

    @property
    def members(self) -> int:
        """Heads the file combines (1 + extra_heads)."""
        idx = {int(n.split(".")[1]) for n in self.tensors if n.startswith("extra_heads.")}
        return 1 + (max(idx) + 1 if idx else 0)

    @property
    def decoupled(self) -> bool:
        return any(n.startswith("heads.cls.") for n in self.tensors)

    @property
    def neck_channels(self) -> int:
        return int(self.tensors["heads.neck.lateral.0.0.weight"].shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.tensors["heads.embed.1.weight"].shape[0])


@dataclass
class LoadReport:
    """What went where (names of the TrayNet's modules/tensors)."""

    conv_bn: list[str] = field(default_factory=list)  # folded conv + BN pairs restored
    conv_bias: list[str] = field(default_factory=list)  # convs with their own bias
    by_name: list[str] = field(default_factory=list)  # other tensors copied by name
    constants: int = 0  # exporter constants (not TrayNet tensors) left alone
    remapped_labels: bool = False

    def summary(self) -> str:
        return (f"{len(self.conv_bn)} conv+BN pairs (folded), {len(self.conv_bias)} biased "
                f"convs, {len(self.by_name)} tensors by name, {self.constants} graph constants"
                + (", labels reordered" if self.remapped_labels else ""))


def read_onnx(path: str | Path) -> OnnxFile:
    """Metadata, initializers and the Conv nodes' weight/bias inputs of an exported file."""
    path = Path(path)
    if not path.is_file():
        raise OnnxInitError(f"{path}: no such ONNX file")
    proto = onnx.load(str(path))
    raw = next((p.value for p in proto.metadata_props if p.key == META_KEY), None)
    if raw is None:
        raise OnnxInitError(f"{path}: no {META_KEY!r} metadata (not a TrayLens export)")
    tensors = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    conv_bias: dict[str, str | None] = {}
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        weight = node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if weight not in tensors:
            raise OnnxInitError(f"{path}: Conv {node.name} weight {weight!r} is computed, "
                                "not an initializer; unsupported graph")
        if conv_bias.get(weight, bias) != bias:
            raise OnnxInitError(f"{path}: {weight} is used with two biases; unsupported graph")
        conv_bias[weight] = bias
    return OnnxFile(path, ModelMeta.from_json(raw), tensors, conv_bias)


def conv_bn_pairs(net: nn.Module) -> dict[str, str]:
    """conv module name -> the BatchNorm applied directly to its output (a traced pass)."""
    names = {id(m): n for n, m in net.named_modules()}
    outputs: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # hold the outputs so their ids are not reused
    pairs: dict[str, str] = {}

    def on_conv(mod: nn.Module, _: Any, out: torch.Tensor) -> None:
        outputs[id(out)] = names[id(mod)]
        keep.append(out)

    def on_bn(mod: nn.Module, inp: tuple[torch.Tensor, ...], _: Any) -> None:
        conv = outputs.get(id(inp[0]))
        if conv is not None:
            pairs[conv] = names[id(mod)]

    hooks = [m.register_forward_hook(on_conv if isinstance(m, nn.Conv2d) else on_bn)
             for m in net.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d)]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            maps = getattr(net, "maps", net)
            maps(torch.zeros(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return pairs


def label_order(parent: Sequence[str], labels: Sequence[str] | None) -> list[int] | None:
    """Index into the parent's class channels for each of `labels`; None when the same."""
    if labels is None or list(labels) == list(parent):
        return None
    missing, new = sorted(set(parent) - set(labels)), sorted(set(labels) - set(parent))
    if missing or new or len(labels) != len(parent):
        raise OnnxInitError(
            f"labels differ from the parent model's: new {new}, missing {missing}; "
            "fine-tuning keeps the parent's classes (reordering is remapped)")
    return [list(parent).index(x) for x in labels]


def load_onnx_weights(net: TrayNet, path: str | Path,
                      labels: Sequence[str] | None = None) -> LoadReport:
    """Every TrayNet tensor from the exported file at `path` (see the module docstring).

    `labels`: the order the net's class channels should have, when it is a reordering of
    the file's labels (the class projections are permuted); another set is an error.
    """
    src = read_onnx(path)
    order = label_order(src.meta.labels, labels)
    report = LoadReport(remapped_labels=order is not None)
    state = net.state_dict()
    target: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in src.tensors:
            raise OnnxInitError(f"{src.path}: no tensor {name!r} for the TrayNet")
        used.add(name)
        value = src.tensors[name]
        if order is not None and name.rsplit(".", 1)[0].endswith(CLASS_PROJECTIONS) \
                and value.shape[0] == len(order):
            value = value[order]
        return value

    pairs = conv_bn_pairs(net)
    modules = dict(net.named_modules())
    for name, mod in modules.items():
        if not isinstance(mod, nn.Conv2d):
            continue
        wname = f"{name}.weight"
        if wname not in src.conv_bias:
            raise OnnxInitError(f"{src.path}: no Conv node with weight {wname!r}")
        bias_name = src.conv_bias[wname]
        target[wname] = take(wname)
        if name in pairs:
            bn = modules[pairs[name]]
            assert isinstance(bn, nn.BatchNorm2d)
            # No bias input: the fold gave zeros (an untouched BN) and the optimizer dropped it.
            bias = (take(bias_name) if bias_name is not None
                    else np.zeros(bn.num_features, dtype=np.float32))
            target[f"{pairs[name]}.weight"] = np.ones_like(bias)
            target[f"{pairs[name]}.bias"] = bias
            target[f"{pairs[name]}.running_mean"] = np.zeros_like(bias)
            target[f"{pairs[name]}.running_var"] = np.full_like(bias, 1.0 - bn.eps)
            report.conv_bn.append(name)
        elif mod.bias is not None:
            target[f"{name}.bias"] = (take(bias_name) if bias_name is not None
                                      else np.zeros(mod.out_channels, dtype=np.float32))
            report.conv_bias.append(name)
        elif bias_name is not None:
            raise OnnxInitError(f"{src.path}: {wname} has a bias in the graph but neither "
                                "a bias nor a BatchNorm in torch")
    for key in state:
        if key in target or key.endswith("num_batches_tracked"):
            continue
        target[key] = take(key)  # raises when missing
        report.by_name.append(key)
    leftover = sorted(n for n in src.tensors if n not in used and (
        PARAM_NAME.match(n) or n.endswith("_bias") or n in src.conv_bias))
    if leftover:
        raise OnnxInitError(f"{src.path}: tensors the TrayNet has no place for: "
                            f"{leftover[:8]}{' ...' if len(leftover) > 8 else ''} "
                            f"({len(leftover)}); another architecture?")
    report.constants = sum(1 for n in src.tensors if n not in used)
    bad = [f"{k}: file {tuple(v.shape)} vs torch {tuple(state[k].shape)}"
           for k, v in target.items() if tuple(v.shape) != tuple(state[k].shape)]
    if bad:
        raise OnnxInitError(f"{src.path}: shapes differ: {bad[:6]}")
    with torch.no_grad():
        for k, v in target.items():
            state[k].copy_(torch.from_numpy(np.array(v, dtype=np.float32)))
    return report


def network_from_onnx(path: str | Path) -> tuple[TrayNet, ModelMeta, LoadReport]:
    """The TrayNet an exported file was made from (eval mode), its metadata and the report.

    The architecture comes from the file: labels, embedding size, neck width, decoupled
    heads, flip test and ensemble members (the same forward as the graph)."""
    src = read_onnx(path)
    net = TrayNet(len(src.meta.labels), src.embed_dim, src.neck_channels, pretrained=False,
                  decoupled=src.decoupled, flip_test=src.meta.flip_test, members=src.members,
                  backbone_outputs=bool(src.meta.backbone_strides))
    report = load_onnx_weights(net, path)
    return net.eval(), src.meta, report


def check_parent(path: str | Path, labels: Sequence[str], embed_dim: int, neck_channels: int,
                 decoupled: bool) -> OnnxFile:
    """The parent file if a run configured so can start from it; OnnxInitError otherwise."""
    src = read_onnx(path)
    if src.members > 1:
        raise OnnxInitError(f"{path}: an ensemble of {src.members} runs; fine-tuning starts "
                            "from one network (export a single run)")
    differ = [f"{k}: parent {theirs}, config {ours}" for k, theirs, ours in (
        ("embed_dim", src.embed_dim, embed_dim),
        ("neck_channels", src.neck_channels, neck_channels),
        ("decoupled", src.decoupled, decoupled)) if theirs != ours]
    if differ:
        raise OnnxInitError(f"init_from {path}: the config's architecture differs from the "
                            f"parent's ({'; '.join(differ)}); set them as the parent's")
    label_order(src.meta.labels, labels)
    return src


def bn_modules(net: nn.Module) -> list[nn.BatchNorm2d]:
    """Every BatchNorm of a network (timm's BatchNormAct2d included)."""
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def freeze_batchnorm(net: nn.Module) -> None:
    """Put every BatchNorm in eval mode: running statistics used and left unchanged."""
    for m in bn_modules(net):
        m.eval()
