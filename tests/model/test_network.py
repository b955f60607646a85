"""TrayNet: the packaged ImageNet weights land in the backbone, output shapes and ranges."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo

from model.infer.runtime import BACKBONE_OUTPUTS
from model.network import (
    LITE_VARIANTS,
    OUTPUT_NAMES,
    STRIDE,
    TrayNet,
    channel_softmax,
    count_parameters,
    pretrained_lite_state,
    to_export,
    unflip,
)


def test_pretrained_weights_are_loaded_in_order() -> None:
    state = pretrained_lite_state()
    net = TrayNet(3, pretrained=True)
    stem = net.backbone.state_dict()["conv_stem.weight"]
    assert torch.equal(stem, state["conv_stem.weight"])
    assert not torch.equal(stem, TrayNet(3, pretrained=False).backbone.state_dict()[
        "conv_stem.weight"])


@pytest.mark.parametrize("variant", LITE_VARIANTS)
def test_each_packaged_variant_sees_the_fixture_orange(variant: int) -> None:
    """Weights mapped out of order (or the wrong input scaling) would not name an orange."""
    net = timm.create_model(f"efficientnet_lite{variant}", pretrained=False)
    net.load_state_dict(pretrained_lite_state(variant))
    photo = Path(__file__).resolve().parents[1] / "fixtures" / "ecustfd" / "JPEGImages"
    img = Image.open(photo / "orange002T(1).JPG").convert("RGB").resize((320, 240))
    x = (np.asarray(img, np.float32) / 255.0 - 0.5) / 0.5  # Lite weights expect [-1, 1]
    with torch.no_grad():
        top = int(net.eval()(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).argmax())
    assert ImageNetInfo().index_to_description(top) == "orange"


def test_only_packaged_variants() -> None:
    with pytest.raises(ValueError, match="Lite3"):
        pretrained_lite_state(3)


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


def test_decoupled_heatmap_is_objectness_times_class_softmax() -> None:
    from model.training.losses import Criterion

    net = TrayNet(4, embed_dim=8, neck_channels=16, pretrained=False, decoupled=True).eval()
    with torch.no_grad():
        raw = net.raw(torch.randn(1, 3, 64, 64))
        heat = net(torch.randn(1, 3, 64, 64))[0]
    assert heat.shape == (1, 4, 8, 8)
    assert float(heat.sum(dim=1).max()) <= 1.0 + 1e-6  # objectness <= 1 spread over classes
    target_heat = torch.zeros(1, 4, 8, 8)
    target_heat[0, 2, 3, 3] = 1.0
    targets = {"heat": target_heat, "reg_box": torch.zeros(1, 4, 8, 8),
               "reg_w": torch.zeros(1, 8, 8), "mask": torch.zeros(1, 1, 8, 8),
               "boxes": torch.zeros(1, 2, 4), "labels": torch.tensor([[-1, -1]])}
    losses = Criterion(4, 8, {})(raw, targets)
    assert {"heat", "cls", "box", "mask", "embed", "total"} <= set(losses)
    assert float(losses["cls"]) > 0


def test_channel_softmax_is_softmax_over_classes() -> None:
    logits = torch.randn(2, 7, 5, 6) * 20
    assert torch.allclose(channel_softmax(logits), torch.softmax(logits, dim=1), atol=1e-6)


def _flip_net() -> TrayNet:
    torch.manual_seed(0)
    net = TrayNet(4, embed_dim=8, neck_channels=16, pretrained=False, decoupled=True,
                  flip_test=True).eval()
    for branch in (net.heads.heat, net.heads.box, net.heads.cls, net.heads.mask, net.heads.embed):
        torch.nn.init.normal_(branch[1].weight, std=0.3)  # untrained heads: spread the maps
    return net


def test_flip_test_averages_the_photo_and_its_mirror() -> None:
    net = _flip_net()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        got = net(x)
        plain = to_export(net.raw(x))
        mirrored = to_export(net.raw(x.flip(-1)))
    for name, g, a, b in zip(OUTPUT_NAMES, got, plain, mirrored, strict=True):
        assert g.shape == a.shape, name
        assert torch.allclose(g, (a + unflip(name, b)) / 2, atol=1e-5), name
        assert not torch.allclose(g, a, rtol=1e-3, atol=0), name  # the mirror pass counts


def test_backbone_outputs_follow_the_four_maps_and_are_mirror_averaged_like_them() -> None:
    net = _flip_net()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        four = net(x)
        net.backbone_outputs = True
        six = net(x)
        plain, mirrored = net.features(x)[1:], net.features(x.flip(-1))[1:]
    assert net.output_names == OUTPUT_NAMES + BACKBONE_OUTPUTS
    for a, b in zip(four, six[:4], strict=True):
        assert torch.equal(a, b)  # the heads' maps do not change
    for got, a, b, channels in zip(six[4:], plain, mirrored, net.backbone_channels(),
                                   strict=True):
        assert got.shape[1] == channels
        assert torch.allclose(got, (a + b.flip(-1)) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.randn(1, 3, 64, 72))  # fine for stride 8, not for the stride-32 map


def test_flip_test_output_mirrors_exactly_with_the_photo() -> None:
    """Averaged with its mirror, the model answers a mirrored photo with mirrored maps."""
    net = _flip_net()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        heat, ltrb, _, _ = net(x)
        heat_m, ltrb_m, _, _ = net(x.flip(-1))
    assert torch.allclose(heat_m, heat.flip(-1), atol=1e-5)
    assert torch.allclose(ltrb_m[:, 0], ltrb[:, 2].flip(-1), rtol=1e-4)  # left <-> right
    assert torch.allclose(ltrb_m[:, 1], ltrb[:, 1].flip(-1), rtol=1e-4)


def test_flip_test_needs_a_width_divisible_by_the_stride() -> None:
    with pytest.raises(ValueError, match="divisible"):
        _flip_net()(torch.randn(1, 3, 64, 90))


def test_ensemble_averages_the_members_maps_and_keeps_each_embedding() -> None:
    torch.manual_seed(0)
    model = TrayNet(5, embed_dim=8, neck_channels=16, pretrained=False, decoupled=True,
                    members=3).eval()
    assert (model.members, model.output_embedding_dim) == (3, 24)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        feats = model.features(x)
        each = [to_export(h(feats)) for h in [model.heads, *model.extra_heads]]
        heat, ltrb, mask, emb = model(x)
    assert not torch.allclose(each[0][0], each[1][0])  # independent heads
    for got, i in ((heat, 0), (ltrb, 1), (mask, 2)):
        assert torch.allclose(got, sum(m[i] for m in each) / 3, atol=1e-6)
    assert torch.equal(emb, torch.cat([m[3] for m in each], dim=1))
    single = TrayNet(5, embed_dim=8, neck_channels=16, pretrained=False, decoupled=True).eval()
    assert single.members == 1 and not list(single.extra_heads.parameters())
    with torch.no_grad():  # one member: exactly the trained network's maps
        assert all(torch.equal(a, b) for a, b in zip(single(x), to_export(single.raw(x)),
                                                     strict=True))
