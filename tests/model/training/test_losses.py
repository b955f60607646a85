"""model.training.losses: composed trays marked not real teach the mask loss only, or (supervise
"regions") the class-agnostic losses too."""
from __future__ import annotations

from pathlib import Path

import torch

from model.network import TrayNet
from model.train import parse_args
from model.training.losses import Criterion
from model.training.meta import input_spec
from model.training.sources import build_datasets, load_sources, resolve_labels
from tests.model.conftest import tiny_args


def test_trays_marked_not_real_teach_the_mask_only(fixtures_dir: Path) -> None:
    args = parse_args(tiny_args(fixtures_dir, Path("unused")))
    labels, _ = resolve_labels("default", [])
    data = build_datasets(load_sources(args.data), labels, input_spec(args),
                          augment=False)
    images, t = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    assert int((t["labels"] >= 0).sum()) > 0  # real items in both photos
    torch.manual_seed(0)
    net = TrayNet(len(labels), 16, 32, pretrained=False, decoupled=True)
    raw = net.raw(images)
    crit = Criterion(len(labels), 16, {})
    both = crit(raw, {**t, "real": torch.tensor([1.0, 0.0])})
    first = crit({k: v[:1] for k, v in raw.items()}, {k: v[:1] for k, v in t.items()})
    for name in ("heat", "cls", "box", "embed"):  # the second photo adds nothing here
        assert torch.allclose(both[name], first[name]), name
    assert torch.allclose(both["mask"], crit(raw, t)["mask"])  # but teaches the mask
    unmarked = crit(raw, t)
    all_real = crit(raw, {**t, "real": torch.ones(2)})
    assert all(torch.equal(unmarked[k], all_real[k]) for k in unmarked)
    none_real = crit(raw, {**t, "real": torch.zeros(2)})
    assert float(none_real["box"].detach()) == float(none_real["heat"].detach()) == 0.0
    none_real["total"].backward()  # still a graph: a batch of composed trays trains the mask


def test_trays_marked_not_real_teach_regions_but_not_classes(fixtures_dir: Path) -> None:
    """With composed_regions, a tray teaches objectness, boxes and the mask as a real photo
    does, and still nothing of the classes or embeddings."""
    args = parse_args(tiny_args(fixtures_dir, Path("unused")))
    labels, _ = resolve_labels("default", [])
    data = build_datasets(load_sources(args.data), labels, input_spec(args), augment=False)
    images, t = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    torch.manual_seed(0)
    raw = TrayNet(len(labels), 16, 32, pretrained=False, decoupled=True).raw(images)
    crit = Criterion(len(labels), 16, {}, composed_regions=True)
    marked = crit(raw, {**t, "real": torch.tensor([1.0, 0.0])})
    all_real = crit(raw, t)
    first = crit({k: v[:1] for k, v in raw.items()}, {k: v[:1] for k, v in t.items()})
    for name in ("heat", "box", "mask"):
        assert torch.allclose(marked[name], all_real[name]), name
    for name in ("cls", "embed"):
        assert torch.allclose(marked[name], first[name]), name
        assert not torch.allclose(marked[name], all_real[name]), name
