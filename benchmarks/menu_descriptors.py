"""Menu mode with the frozen backbone's own features as a region descriptor (issue 16).

The trained embedding head learned to separate the training classes; on foods it never saw it
tells dishes apart at 58-68% with 3 examples (docs/MODEL_CARD.md, leave-one-source-out). The
backbone (EfficientNet-Lite0, ImageNet weights) is frozen in every recipe, so its features do
not depend on the TrayLens sources a model trained on. Descriptors compared, per annotated
food box (the coin left out), each vector L2-normalised:

- `embedding`: the model file's region embedding (TrayModel.embed_enrolment);
- `backbone`: the mean of the stride-16 and of the stride-32 backbone features inside the
  box, each L2-normalised, side by side; averaged with the mirrored photo's, as the shipped
  file's flip test does for its embedding;
- `both`: the two side by side (the cosine is their cosines averaged).

A file with the backbone descriptor (1.5.0 on) already embeds items as `both`
(model.infer.runtime.item_embedding); the table in docs/MODEL_CARD.md that chose it was
measured with 1.4.0 and the leave-ECUSTFD-out model before it, whose embeddings are the
head's alone.

Menu mode as model.evaluate_menu draws it: menus of 5 foods, k = 1 and 3 enrolled examples
from other physical objects, 500 seeded menus, nearest enrolled example. Sets: the model's
held-out ECUSTFD split, and all ECUSTFD photos. On all photos the shipped model's embedding
is not "unseen" (it trained on 80% of them): there only `backbone` is measured, or, with
`--unseen-model`, every descriptor with that model's embedding (the leave-ECUSTFD-out model
of benchmarks/leave_one_source_out.py). This script measures; it ships nothing.

    python benchmarks/menu_descriptors.py --out var/menu-descriptors \
        [--unseen-model var/loso/results/without-ecustfd/model.onnx]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from any folder

from model.data.coco import CocoDataset  # noqa: E402
from model.data.importers.ecustfd import import_ecustfd  # noqa: E402
from model.evaluate import held_out_sets, split_params  # noqa: E402
from model.evaluate_common import EvalConfig, EvaluationError  # noqa: E402
from model.evaluate_menu import MenuSamples, food_boxes, menu_section  # noqa: E402
from model.infer.menu_match import MatchConfig  # noqa: E402
from model.infer.runtime import (  # noqa: E402
    ModelMeta,
    TrayModel,
    backbone_descriptor,
    full_scale,
    full_size,
    joined,
    preprocess,
    unit,
)
from model.network import BACKBONE_STRIDES, TrayNet  # noqa: E402

SHIPPED = REPO / "model" / "artifacts" / "traylens.onnx"
SHARED_DATA = REPO.parent / "shared" / "data"
MENU_K = (1, 3)


@dataclass(frozen=True)
class Regions:
    """Every annotated food box of a set: its descriptors, food and physical object."""

    embedding: np.ndarray
    backbone: np.ndarray
    foods: list[str]
    groups: list[str]

    def descriptor(self, name: str) -> np.ndarray:
        if name == "embedding":
            return self.embedding
        if name == "backbone":
            return self.backbone
        return joined(self.embedding, self.backbone)


Features = Callable[[torch.Tensor], Sequence[torch.Tensor]]


def backbone_descriptors(features: Features, meta: ModelMeta, img: Image.Image,
                         boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """`backbone` descriptors of photo boxes: the photo's and its mirror's, averaged.
    `features` maps a normalised batch to the backbone maps at BACKBONE_STRIDES; `meta` gives
    the input size and normalisation."""
    mirror = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirror.info.update(img.info)
    batch, scales = preprocess([img, mirror], meta)
    with torch.no_grad():
        maps = [f.numpy() for f in features(torch.from_numpy(batch))]
    scale, width = full_scale(img, scales[0]), full_size(img)[0]
    out = []
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box)
        plain = backbone_descriptor([m[0] for m in maps], BACKBONE_STRIDES,
                                    np.array([x0, y0, x1, y1]) * scale)
        flipped = backbone_descriptor([m[1] for m in maps], BACKBONE_STRIDES,
                                      np.array([width - x1, y0, width - x0, y1]) * scale)
        out.append(unit(plain + flipped))
    return np.stack(out)


def trained_net_maps(net: TrayNet) -> Features:
    """A TrayNet's backbone maps at BACKBONE_STRIDES (its stride-8 map left out)."""
    return lambda x: net.features(x)[1:]


def describe(model: TrayModel, net: TrayNet, ds: CocoDataset) -> Regions:
    """Both descriptors of every annotated food box of a set."""
    emb: list[np.ndarray] = []
    back: list[np.ndarray] = []
    foods: list[str] = []
    groups: list[str] = []
    for photo in food_boxes(ds, model.meta.input_size):
        emb.extend(model.embed_enrolment(photo.img, boxes=photo.boxes))
        back.extend(backbone_descriptors(trained_net_maps(net), model.meta, photo.img,
                                         photo.boxes))
        foods.extend(photo.foods)
        groups.extend(photo.group for _ in photo.foods)
    return Regions(np.asarray(emb, np.float32), np.asarray(back, np.float32), foods, groups)


def menu_accuracy(samples: MenuSamples, n_menus: int, menu_size: int) -> dict[str, Any]:
    """Menu-mode accuracy (mean and 95% CI over menus) at each k, or why not evaluated."""
    out: dict[str, Any] = {}
    for k in MENU_K:
        cfg = EvalConfig(k_enrol=k, menu_size=menu_size, n_menus=n_menus, seed=0)
        try:
            out[f"k{k}"] = menu_section(samples, cfg, MatchConfig())["accuracy"]
        except EvaluationError as exc:
            out[f"k{k}"] = {"not_evaluated": str(exc)}
    return out


def menus(regions: Regions, name: str, n_menus: int, menu_size: int) -> dict[str, Any]:
    """Menu-mode accuracy of one descriptor at each k."""
    samples = MenuSamples(regions.descriptor(name), regions.foods, regions.groups)
    return menu_accuracy(samples, n_menus, menu_size)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for results.json")
    p.add_argument("--model", type=Path, default=SHIPPED)
    p.add_argument("--unseen-model", type=Path,
                   help="a model that never trained on ECUSTFD, for the all-photos rows")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    p.add_argument("--menus", type=int, default=500, help="random menus per k")
    p.add_argument("--menu-size", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    return p.parse_args(argv)


def cell(acc: dict[str, Any]) -> str:
    if "mean" not in acc:
        return "n/a"
    return f"{acc['mean'] * 100:.1f}% ({acc['ci_low'] * 100:.1f}-{acc['ci_high'] * 100:.1f})"


def main(argv: Sequence[str] | None = None) -> int:
    """Describe the sets, run the menus, print a table, write results.json."""
    a = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    began = time.perf_counter()
    model = TrayModel(a.model)
    net = TrayNet(len(model.meta.labels), pretrained=True).eval()
    val_fraction, seed = split_params(model)
    unseen = TrayModel(a.unseen_model) if a.unseen_model else None
    every = ("embedding", "backbone", "both")
    sets = [("held-out split", held_out_sets(a.data, val_fraction, seed)["ecustfd"], model,
             every),
            ("all photos", import_ecustfd(a.data / "images" / "ecustfd"), unseen or model,
             every if unseen else ("backbone",))]
    rows: list[dict[str, Any]] = []
    for set_name, ds, embedder, names in sets:
        regions = describe(embedder, net, ds)
        for name in names:
            rows.append({"set": set_name, "photos": len(ds.images), "regions": len(regions.foods),
                         "descriptor": name, "embedding_model": str(embedder.path),
                         **menus(regions, name, a.menus, a.menu_size)})
    result = {"model": str(a.model), "version": model.meta.version,
              "machine": platform.processor() or platform.machine(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "menus": a.menus,
              "menu_size": a.menu_size, "rows": rows,
              "seconds": round(time.perf_counter() - began, 1)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"# Menu mode by descriptor ({result['machine']}, {result['started']}, "
          f"{model.meta.version})\n")
    print("| ECUSTFD set | photos | regions | descriptor | embedding from | menu k=1 | menu k=3 |")
    print("|---|---:|---:|---|---|---:|---:|")
    for r in rows:
        source = "-" if r["descriptor"] == "backbone" else Path(r["embedding_model"]).name
        print(f"| {r['set']} | {r['photos']} | {r['regions']} | {r['descriptor']} | {source} | "
              f"{cell(r['k1'])} | {cell(r['k3'])} |")
    print(f"\nMenus of {a.menu_size}, {a.menus} per k; wall {result['seconds']:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
