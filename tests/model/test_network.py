"""TrayNet: the packaged ImageNet weights land in the backbone, output shapes and ranges."""
from __future__ import annotations

import torch

from model.network import STRIDE, TrayNet, count_parameters, pretrained_lite0_state


def test_pretrained_weights_are_loaded_in_order() -> None:
    state = pretrained_lite0_state()
    net = TrayNet(3, pretrained=True)
    stem = net.backbone.state_dict()["conv_stem.weight"]
    assert torch.equal(stem, state["conv_stem.weight"])
    assert not torch.equal(stem, TrayNet(3, pretrained=False).backbone.state_dict()[
        "conv_stem.weight"])


def test_outputs_at_stride_8_with_valid_ranges() -> None:
    net = TrayNet(5, embed_dim=8, neck_channels=16, pretrained=False).eval()
    with torch.no_grad():
        heat, ltrb, mask, emb = net(torch.randn(2, 3, 96, 128))
    grid = (96 // STRIDE, 128 // STRIDE)
    assert heat.shape == (2, 5, *grid) and mask.shape == (2, 1, *grid)
    assert ltrb.shape == (2, 4, *grid) and emb.shape == (2, 8, *grid)
    assert float(heat.min()) >= 0 and float(heat.max()) <= 1
    assert float(ltrb.min()) > 0  # distances in pixels, exp-parameterised


def test_size_fits_the_cpu_budget() -> None:
    # Lite0 (3.4 M without its classifier) + neck/heads; fp32 file must stay under 25 MB.
    assert count_parameters(TrayNet(28)) * 4 < 25e6
