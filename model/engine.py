"""Training library: data assembly, losses, the epoch loop, checkpoints, DDP, validation.

model/train.py is a thin CLI over `run(args)`; notebooks and tests call these functions.
With `cache_features`, the frozen backbone runs once per augmented view and only the neck
and heads train (DESIGN: the CPU budget); otherwise the whole network trains end to end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from model.data.coco import CocoDataset
from model.dataset import TARGETS_VERSION, InputSpec, TrayDataset, train_transforms
from model.infer.runtime import ModelMeta, PostConfig, decode_outputs
from model.network import STRIDE, TrayNet, to_export

MEAN = (0.5, 0.5, 0.5)  # Lite0 weights expect inputs in [-1, 1]
STD = (0.5, 0.5, 0.5)
EMBED_SCALE = 10.0  # cosine-softmax temperature for the embedding's class prototypes


# ---------------------------------------------------------------- data


def load_sources(sources: Sequence[dict[str, Any]]) -> list[CocoDataset]:
    """Import each source ({kind: mealtray|ecustfd|coco, root|path: ..., max_per_group: n})."""
    out = []
    for src in sources:
        kind = src.get("kind")
        if kind == "mealtray":
            from model.data.importers.mealtray import import_mealtray

            out.append(import_mealtray(src["root"]))
        elif kind == "ecustfd":
            from model.data.importers.ecustfd import import_ecustfd

            out.append(import_ecustfd(src["root"]))
        elif kind == "coco":
            from model.data.coco import load

            out.append(load(src["path"]))
        else:
            raise ValueError(f"unknown data source kind {kind!r} in {src}")
    return out


def split_sources(
    datasets: Sequence[CocoDataset], val_fraction: float, seed: int
) -> tuple[list[CocoDataset], list[CocoDataset]]:
    """Group-aware train/val split of each source (capture runs / objects never cut)."""
    from model.data.splits import training_split

    train, val = [], []
    for ds in datasets:
        if val_fraction <= 0:
            train.append(ds)
            val.append(ds.subset([]))
            continue
        tr, va = training_split(ds, val_fraction, seed)
        train.append(tr)
        val.append(va)
    return train, val


def cap_groups(ds: CocoDataset, per_group: int) -> CocoDataset:
    """At most `per_group` images of each split group (repeat shots of one tray or object).

    Why: the kiosk and ECUSTFD shoot each object several times; extra near-duplicates cost
    CPU time in training and add little.
    """
    from model.data.splits import group_of

    if per_group <= 0:
        return ds
    seen: dict[str, int] = {}
    keep = []
    for im in ds.images:
        g = group_of(im)
        if seen.get(g, 0) < per_group:
            keep.append(im.id)
            seen[g] = seen.get(g, 0) + 1
    return ds.subset(keep)


def resolve_labels(
    choice: str, datasets: Sequence[CocoDataset]
) -> tuple[list[str], list[str | None]]:
    """Model labels + food ids: nutrition_db's label map ("default") or the data's categories."""
    if choice == "default":
        from nutrition_db import label_map

        lm = label_map()
        return list(lm.labels), [lm.food_id(name) for name in lm.labels]
    if choice != "data":
        raise ValueError(f"labels must be 'default' or 'data', got {choice!r}")
    labels: list[str] = []
    food: dict[str, str | None] = {}
    for ds in datasets:
        for cat in ds.categories:
            if cat.name not in food:
                labels.append(cat.name)
            food[cat.name] = food.get(cat.name) or cat.food_id
    return labels, [food[n] for n in labels]


def compose_training_trays(
    parts: Sequence[CocoDataset], images: int, per_label: int, seed: int,
    cache_dir: Path | None,
) -> CocoDataset:
    """Trays composed from crops of the training parts only: never a held-out object.

    Written under cache_dir keyed by the parts and settings, so later runs reuse them (rank 0
    composes, other ranks wait). The index is saved last, via a temp file: a run stopped
    half-way composes again.
    """
    from model.data.coco import load, save
    from model.data.compose import compose_dataset, extract_crops

    key = hashlib.sha256(json.dumps([fingerprint(parts), images, per_label, seed]).encode())
    root = cache_dir if cache_dir is not None else Path("var/cache")
    out = root / f"composed-{key.hexdigest()[:12]}"
    index = out / "composed.json"
    if is_main() and not index.is_file():
        crops = [c for ds in parts for c in extract_crops(ds, per_label=per_label, seed=seed)]
        tmp = save(compose_dataset(crops, out, images, seed), out / "composed.json.tmp")
        tmp.replace(index)
    if dist.is_initialized():
        dist.barrier()
    return load(index)


def fingerprint(datasets: Sequence[CocoDataset]) -> str:
    """Hash of the training annotations (images, boxes, labels, grams) in a stable order."""
    from model.data.coco import to_dict

    h = hashlib.sha256()
    for ds in datasets:
        data = to_dict(ds)
        data.pop("image_root", None)
        h.update(json.dumps(data, sort_keys=True, default=str).encode())
    return "sha256:" + h.hexdigest()[:16]


def input_spec(args: argparse.Namespace) -> InputSpec:
    """The network input from the config."""
    return InputSpec(size=(int(args.input_width), int(args.input_height)), stride=STRIDE,
                     mean=MEAN, std=STD)


def build_datasets(
    parts: Sequence[CocoDataset], labels: Sequence[str], spec: InputSpec, augment: bool
) -> Dataset[Any]:
    """One torch dataset over several COCO sources."""
    tf = train_transforms() if augment else None
    return ConcatDataset([TrayDataset(ds, labels, spec, tf) for ds in parts if ds.images])


def has_images(parts: Sequence[CocoDataset]) -> bool:
    """Whether any part holds an image."""
    return any(ds.images for ds in parts)


# ---------------------------------------------------------------- losses


class Criterion(nn.Module):
    """Focal heatmap + GIoU box + mask BCE/dice + cosine-prototype embedding losses."""

    def __init__(self, num_classes: int, embed_dim: int, weights: dict[str, float]) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.1)
        self.weights = weights

    def forward(
        self, raw: dict[str, torch.Tensor], t: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        item_raw, item_t = raw, t  # what the item losses see
        if "real" in t and not bool(t["real"].bool().all()):
            # Samples marked real=0 (composed trays that teach masks only) leave them out;
            # each item loss is 0 on an empty batch.
            keep = t["real"].bool()
            item_raw = {k: v[keep] for k, v in raw.items()}
            item_t = {k: v[keep] for k, v in t.items()}
        if "cls_logits" in raw:
            objectness = item_t["heat"].amax(dim=1, keepdim=True)
            losses = {"heat": focal_loss(item_raw["heat_logits"], objectness),
                      "cls": class_loss(item_raw["cls_logits"], item_t["heat"])}
        else:
            losses = {"heat": focal_loss(item_raw["heat_logits"], item_t["heat"])}
        # Computed and summed in this order: reruns on one CPU stay bit-for-bit equal.
        losses |= {
            "box": giou_loss(item_raw["ltrb"], item_t["reg_box"], item_t["reg_w"]),
            "mask": mask_loss(raw["mask_logits"], t["mask"]),
            "embed": self.embed_loss(item_raw["embedding"], item_t),
        }
        total = torch.zeros((), device=raw["ltrb"].device)
        for k, v in losses.items():
            total = total + self.weights.get(k, 1.0) * v
        losses["total"] = total
        return losses

    def embed_loss(self, emb: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
        """Item embeddings pooled as at inference must land on their class prototype."""
        pooled, valid = pool_objects(emb, t["boxes"], t["labels"], t["mask"])
        if not valid.any():
            return emb.sum() * 0.0
        vec = F.normalize(pooled[valid], dim=1)
        logits = EMBED_SCALE * vec @ F.normalize(self.prototypes, dim=1).T
        return F.cross_entropy(logits, t["labels"][valid])


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss over Gaussian heatmaps."""
    pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg_w = torch.pow(1 - target, 4)
    pos_loss = torch.log(pred) * torch.pow(1 - pred, 2) * pos
    neg_loss = torch.log(1 - pred) * torch.pow(pred, 2) * neg_w * (1 - pos)
    n = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def class_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the class softmax near item centres, weighted by the Gaussian."""
    weight, target = heat.max(dim=1)
    near = weight > 0.3
    if not near.any():
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float().permute(0, 2, 3, 1)[near], target[near], reduction="none")
    return (ce * weight[near]).sum() / weight[near].sum()


def cell_centres(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres of the stride-8 grid cells."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * STRIDE
    return ys.view(1, h, 1).expand(1, h, w), xs.view(1, 1, w).expand(1, h, w)


def giou_loss(ltrb: torch.Tensor, boxes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Generalised IoU loss at cells near object centres, weighted by the Gaussian."""
    cy, cx = cell_centres(ltrb.shape[2], ltrb.shape[3], ltrb.device)
    ltrb = ltrb.float()
    pred = torch.stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]], 1)
    m = weight > 0
    if not m.any():
        return ltrb.sum() * 0.0
    p = pred.permute(0, 2, 3, 1)[m]
    g = boxes.permute(0, 2, 3, 1)[m]
    w = weight[m]
    inter_w = (torch.min(p[:, 2], g[:, 2]) - torch.max(p[:, 0], g[:, 0])).clamp(min=0)
    inter_h = (torch.min(p[:, 3], g[:, 3]) - torch.max(p[:, 1], g[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    area_p = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = area_p + area_g - inter + 1e-6
    hull = (torch.max(p[:, 2], g[:, 2]) - torch.min(p[:, 0], g[:, 0])) * (
        torch.max(p[:, 3], g[:, 3]) - torch.min(p[:, 1], g[:, 1])) + 1e-6
    giou = inter / union - (hull - union) / hull
    return ((1 - giou) * w).sum() / w.sum()


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft dice on the stride-8 foreground map."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    return bce + dice


def pool_objects(
    emb: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-object mean embedding over its box cells weighted by the foreground map."""
    _, _, h, w = emb.shape
    cy, cx = cell_centres(h, w, emb.device)
    b = boxes.float()
    inside = ((cx[None] >= b[..., 0, None, None]) & (cx[None] <= b[..., 2, None, None])
              & (cy[None] >= b[..., 1, None, None]) & (cy[None] <= b[..., 3, None, None]))
    weights = inside.float() * (mask.float() + 1e-3)  # +eps: boxes with no foreground still pool
    total = weights.sum(dim=(2, 3))
    pooled = torch.einsum("bnhw,behw->bne", weights, emb.float()) / total.clamp(min=1e-6)[..., None]
    valid = (labels >= 0) & (total > 0)
    return pooled, valid


# ---------------------------------------------------------------- feature cache


class FeatureCache(Dataset[tuple[list[torch.Tensor], dict[str, torch.Tensor]]]):
    """Backbone features + targets (fp16) of `views` augmented passes over a dataset.

    Each view is saved under `cache_dir` keyed by data, labels, input and seed, so a longer
    run (more views, more epochs) reuses the passes an earlier run already paid for.
    """

    def __init__(self, model: TrayNet, data: Dataset[Any], views: int, batch: int,
                 key: str, cache_dir: Path | None, desc: str) -> None:
        self.items: list[tuple[list[torch.Tensor], dict[str, torch.Tensor]]] = []
        for view in range(views):
            path = cache_dir / f"{key}-view{view}.pt" if cache_dir else None
            if path is not None and path.is_file():
                self.items.extend(torch.load(path, weights_only=True))
                continue
            # Each view its own (reproducible) augmentation draw.
            torch.manual_seed(int(hashlib.sha256(f"{key}/{view}".encode()).hexdigest()[:8], 16))
            items = compute_features(model, data, batch, f"{desc} (view {view})")
            if path is not None and is_main():
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(items, path.with_suffix(".tmp"))
                path.with_suffix(".tmp").replace(path)
            self.items.extend(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        feats, t = self.items[i]
        return [f.float() for f in feats], {k: v.float() if v.is_floating_point() else v
                                            for k, v in t.items()}


def compute_features(model: TrayNet, data: Dataset[Any], batch: int, desc: str,
                     ) -> list[tuple[list[torch.Tensor], dict[str, torch.Tensor]]]:
    """One pass of the frozen backbone over a dataset; fp16 to halve memory."""
    model.eval()
    items = []
    loader = DataLoader(data, batch_size=batch, shuffle=False)
    with torch.no_grad():
        for images, targets in tqdm(loader, desc=desc, leave=False, disable=not is_main()):
            feats = model.features(images)
            for i in range(images.shape[0]):
                items.append(([f[i].half().clone() for f in feats],
                              {k: v[i].half() if v.is_floating_point() and k != "boxes" else v[i]
                               for k, v in targets.items()}))
    return items


# ---------------------------------------------------------------- distributed


def is_main() -> bool:
    """Rank 0 (or not distributed)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def setup_distributed() -> bool:
    """Join a torchrun process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return True


def training_seed(args: argparse.Namespace) -> int:
    """The seed of weight init and batch order: `train_seed`, or `seed` when it is -1.

    `seed` alone fixes the data (held-out split, cached views, composed trays), so runs that
    differ only in train_seed share one split and one feature cache.
    """
    value = int(getattr(args, "train_seed", -1))
    return int(args.seed) if value == -1 else value


def seed_everything(seed: int) -> None:
    """Deterministic runs: python, numpy and torch generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- training


@dataclass
class TrainState:
    """Everything a checkpoint restores."""

    model: TrayNet
    criterion: Criterion
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0


def make_state(args: argparse.Namespace, labels: Sequence[str], total_steps: int) -> TrainState:
    """Model, loss, AdamW and a one-cycle cosine schedule from the config."""
    model = TrayNet(len(labels), args.embed_dim, args.neck_channels, pretrained=args.pretrained,
                    decoupled=bool(args.decoupled))
    if args.cache_features or args.freeze_backbone:
        model.backbone.requires_grad_(False)
    criterion = Criterion(len(labels), args.embed_dim, dict(args.loss_weights))
    params = [p for p in [*model.parameters(), *criterion.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=max(1, total_steps),
        pct_start=0.1)
    return TrainState(model, criterion, optimizer, scheduler)


def save_checkpoint(path: Path, state: TrainState, args: argparse.Namespace,
                    meta: dict[str, Any]) -> None:
    """Atomically write model, optimizer, scheduler, epoch, args and label metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": state.model.state_dict(), "criterion": state.criterion.state_dict(),
        "optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
        "epoch": state.epoch, "args": vars(args), "meta": meta,
    }, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, state: TrainState | None = None) -> dict[str, Any]:
    """Read a checkpoint; restore it into `state` when given."""
    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    if state is not None:
        state.model.load_state_dict(ckpt["model"])
        state.criterion.load_state_dict(ckpt["criterion"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
        state.epoch = int(ckpt["epoch"])
    return ckpt


def model_from_checkpoint(path: str | Path) -> tuple[TrayNet, dict[str, Any]]:
    """Rebuild the network (eval mode) and its label metadata from a checkpoint."""
    ckpt = load_checkpoint(path)
    return network_of(ckpt), ckpt


def network_of(ckpt: dict[str, Any]) -> TrayNet:
    """The trained network (eval mode) a loaded checkpoint holds."""
    args, meta = ckpt["args"], ckpt["meta"]
    model = TrayNet(len(meta["labels"]), args["embed_dim"], args["neck_channels"], pretrained=False,
                    decoupled=bool(args.get("decoupled", False)),
                    flip_test=bool(args.get("flip_test", False)))
    model.load_state_dict(ckpt["model"])
    return model.eval()


# What the runs joined into one ensemble must share besides the data (their fingerprint):
# the heads' shape and the input they were trained at.
ENSEMBLE_ARGS = ("embed_dim", "neck_channels", "decoupled", "input_width", "input_height")


def ensemble_from_checkpoints(paths: Sequence[str | Path],
                              ) -> tuple[TrayNet, dict[str, Any], list[int]]:
    """One network whose exported maps combine the heads of several training runs.

    The runs must differ only in train_seed: the same data, labels and frozen backbone
    (checked), so the backbone runs once and each member adds only its neck and heads.
    Returns the network, the first checkpoint (its args and metadata describe the file)
    and the members' training seeds.
    """
    first, ckpt = model_from_checkpoint(paths[0])
    seeds = [int(ckpt["meta"]["training"].get("train_seed", ckpt["args"]["seed"]))]
    if len(paths) == 1:
        return first, ckpt, seeds
    args = ckpt["args"]
    model = TrayNet(first.num_classes, args["embed_dim"], args["neck_channels"], pretrained=False,
                    decoupled=bool(args.get("decoupled", False)), flip_test=first.flip_test,
                    members=len(paths))
    model.backbone.load_state_dict(first.backbone.state_dict())
    model.heads.load_state_dict(first.heads.state_dict())
    backbone = first.backbone.state_dict()
    for extra, path in zip(model.extra_heads, paths[1:], strict=True):
        o_ckpt = load_checkpoint(path)
        differ = [k for k in ENSEMBLE_ARGS if o_ckpt["args"].get(k) != args.get(k)]
        differ += [k for k in ("labels", "fingerprint") if o_ckpt["meta"][k] != ckpt["meta"][k]]
        if differ:
            raise ValueError(f"{path}: differs from {paths[0]} in {differ}; an ensemble's "
                             "members may differ only in train_seed")
        other = network_of(o_ckpt)
        theirs = other.backbone.state_dict()
        if not all(torch.equal(v, theirs[k]) for k, v in backbone.items()):
            raise ValueError(f"{path}: another backbone; members must share the frozen one")
        seeds.append(int(o_ckpt["meta"]["training"].get("train_seed", o_ckpt["args"]["seed"])))
        extra.load_state_dict(other.heads.state_dict())
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"train seeds {seeds}: a run given twice adds nothing to an ensemble")
    return model.eval(), ckpt, seeds


def train_one_epoch(state: TrainState, loader: DataLoader[Any], cached: bool,
                    device: torch.device, amp: bool, wrapped: nn.Module) -> dict[str, float]:
    """One pass; returns the mean of each loss."""
    state.model.train()
    if cached or not any(p.requires_grad for p in state.model.backbone.parameters()):
        state.model.backbone.eval()  # frozen BN statistics stay those of ImageNet
    sums: dict[str, float] = {}
    n = 0
    for inputs, targets in tqdm(loader, desc=f"epoch {state.epoch}", leave=False,
                                disable=not is_main()):
        inputs = [x.to(device) for x in inputs] if cached else inputs.to(device)
        targets = {k: v.to(device) for k, v in targets.items()}
        with torch.autocast(device.type, enabled=amp):
            losses = state.criterion(wrapped(inputs), targets)
        state.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), 5.0)
        state.optimizer.step()
        state.scheduler.step()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


class Marked(Dataset[tuple[Any, dict[str, torch.Tensor]]]):
    """A training dataset whose targets say whether its samples are real photos (Criterion)."""

    def __init__(self, data: Dataset[Any], real: bool) -> None:
        self.data = data
        self.real = torch.tensor(1.0 if real else 0.0)

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, dict[str, torch.Tensor]]:
        inputs, t = self.data[i]
        return inputs, {**t, "real": self.real}


class Trainable(nn.Module):
    """DDP-wrappable module returning raw outputs: heads on cached features, or the whole net."""

    def __init__(self, model: TrayNet, cached: bool) -> None:
        super().__init__()
        self.model = model
        self.cached = cached

    def forward(self, inputs: Any) -> dict[str, torch.Tensor]:
        return self.model.heads(inputs) if self.cached else self.model.raw(inputs)


def iterate_outputs(model: TrayNet, data: Dataset[Any], cached: bool, batch: int,
                    device: torch.device,
                    ) -> Iterator[tuple[list[np.ndarray], dict[str, torch.Tensor]]]:
    """Exported-form maps (numpy, one image at a time) + targets over a dataset."""
    model.eval()
    loader = DataLoader(data, batch_size=batch, shuffle=False)
    with torch.no_grad():
        for inputs, targets in loader:
            if cached:
                raw = model.heads([x.to(device) for x in inputs])
            else:
                raw = model.raw(inputs.to(device))
            maps = [m.float().cpu().numpy() for m in to_export(raw)]
            for i in range(maps[0].shape[0]):
                yield [m[i] for m in maps], {k: v[i] for k, v in targets.items()}


def validate(model: TrayNet, data: Dataset[Any], meta: ModelMeta, cached: bool,
             device: torch.device, batch: int = 16) -> dict[str, float]:
    """Box mAP@0.5 through runtime.decode_outputs: the same post-processing as inference."""
    from model.metrics import Detection, GroundTruth, detection_ap

    dets, gts = [], []
    cfg = PostConfig(score_min=0.05, max_items=50)
    size = meta.input_size
    for k, (maps, t) in enumerate(iterate_outputs(model, data, cached, batch, device)):
        # Targets are in letterbox pixels, so decode at scale 1 on the network canvas.
        for item in decode_outputs(maps, 1.0, size, meta, cfg):
            dets.append(Detection(str(k), item.label, item.score, item.box))
        for box, lab in zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True):
            if lab >= 0:
                gts.append(GroundTruth(str(k), meta.labels[lab], tuple(box)))
    if not gts:
        return {"map50": math.nan}
    report = detection_ap(dets, gts, 0.5)
    out = {"map50": report.mean_ap}
    out.update({f"ap50/{name}": c.ap for name, c in report.per_class.items()})
    return out


def meta_for(args: argparse.Namespace, labels: Sequence[str], food_ids: Sequence[str | None],
             fp: str) -> ModelMeta:
    """The ModelMeta the exported file will carry (metrics and portions are filled later)."""
    return ModelMeta(
        labels=list(labels), food_ids=list(food_ids),
        input_size=(int(args.input_width), int(args.input_height)), mean=MEAN, std=STD,
        stride=STRIDE, embedding_dim=int(args.embed_dim), version=str(args.version),
        fingerprint=fp, flip_test=bool(getattr(args, "flip_test", False)),
        # The evaluator re-derives the held-out split from val_fraction and seed.
        training={"epochs": int(args.epochs), "seed": int(args.seed),
                  "train_seed": training_seed(args),
                  "val_fraction": float(args.val_fraction), "data": list(args.data),
                  "cache_features": bool(args.cache_features),
                  "decoupled": bool(args.decoupled),
                  "compose": compose_settings(args)},
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or only validate with --test-only) as configured; returns the last metrics."""
    distributed = setup_distributed()
    seed_everything(training_seed(args) + (dist.get_rank() if distributed else 0))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    amp = bool(args.amp) and device.type == "cuda"
    sources = load_sources(args.data)
    train_parts, val_parts = split_sources(sources, args.val_fraction, args.seed)
    caps = [int(src.get("max_per_group", 0)) for src in args.data]
    train_parts = [cap_groups(ds, n) for ds, n in zip(train_parts, caps, strict=True)]
    val_parts = [cap_groups(ds, n) for ds, n in zip(val_parts, caps, strict=True)]
    compose = compose_settings(args)
    composed = ([compose_training_trays(
        train_parts, compose["images"], compose["per_label"], args.seed,
        Path(args.cache_dir) if args.cache_dir else None)] if compose else [])
    labels, food_ids = resolve_labels(args.labels, sources)
    spec = input_spec(args)
    # The fingerprint names everything trained on, composed trays included; the feature
    # cache of the real photos is keyed by them alone, so runs with and without trays share it.
    meta = meta_for(args, labels, food_ids, fingerprint([*train_parts, *composed]))
    sets = TrainSets(
        train=build_datasets(train_parts, labels, spec, augment=bool(args.augment)),
        train_fingerprint=fingerprint(train_parts),
        val=(build_datasets(val_parts, labels, spec, augment=False)
             if has_images(val_parts) else None),
        composed=(build_datasets(composed, labels, spec, augment=bool(args.augment))
                  if composed else None),
        composed_epochs=compose.get("epochs", 0),
        composed_masks_only=compose.get("supervise") == "mask")
    try:
        return fit(args, meta, sets, device, amp, distributed)
    finally:
        if distributed:
            dist.destroy_process_group()


def compose_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`compose: {images, per_label, epochs}` with defaults; {} when no trays are composed.

    epochs: the composed trays join the real photos for the first `epochs` epochs (a
    pre-training phase); the rest of the schedule sees real photos only. Default, and at
    most: all of the run's epochs (a shortened run keeps its trays).
    supervise: "all" (default) trains every head on them; "mask" only the mask head (their
    masks are exact, the real photos' are ellipses), so the heatmap, boxes and embeddings
    learn from real photos alone.
    """
    given = dict(getattr(args, "compose", None) or {})
    unknown = sorted(set(given) - {"images", "per_label", "epochs", "supervise"})
    if unknown:
        raise ValueError(f"compose: unknown keys {unknown} (images, per_label, epochs, "
                         "supervise)")
    if given.get("supervise", "all") not in ("all", "mask"):
        raise ValueError(f"compose: supervise must be 'all' or 'mask', got {given}")
    if not int(given.get("images", 0)):
        return {}
    epochs = min(int(given.get("epochs", args.epochs)), int(args.epochs))
    if int(given.get("epochs", 1)) < 1 or int(given.get("per_label", 20)) < 1:
        raise ValueError(f"compose: epochs and per_label must be at least 1, got {given}")
    return {"images": int(given["images"]), "per_label": int(given.get("per_label", 20)),
            "epochs": epochs, "supervise": str(given.get("supervise", "all"))}


@dataclass
class TrainSets:
    """What fit trains and validates on.

    train_fingerprint keys the feature cache of `train`; `composed` (trays pasted from
    training crops) joins `train` for the first `composed_epochs` epochs, and with
    composed_masks_only teaches the mask head only.
    """

    train: Dataset[Any]
    train_fingerprint: str
    val: Dataset[Any] | None = None
    composed: Dataset[Any] | None = None
    composed_epochs: int = 0
    composed_masks_only: bool = False


def fit(args: argparse.Namespace, meta: ModelMeta, sets: TrainSets, device: torch.device,
        amp: bool, distributed: bool) -> dict[str, Any]:
    """The epoch loop over prepared datasets (used by run, tests and the notebook)."""
    cached = bool(args.cache_features)
    train_data, val_data, composed = sets.train, sets.val, sets.composed
    probe = TrayNet(len(meta.labels), args.embed_dim, args.neck_channels, args.pretrained)
    if cached:
        cache_dir = Path(args.cache_dir) if args.cache_dir else None
        key = cache_key(args, meta, sets.train_fingerprint)
        train_data = FeatureCache(probe, train_data, args.cache_views, args.batch_size,
                                  key + "-train", cache_dir, "caching train features")
        val_data = FeatureCache(probe, val_data, 1, args.batch_size, key + "-val", cache_dir,
                                "caching val features") if val_data is not None else None
        if composed is not None:
            composed = FeatureCache(
                probe, composed, args.cache_views, args.batch_size,
                cache_key(args, meta, meta.fingerprint) + "-composed", cache_dir,
                "caching composed-tray features")
    if composed is not None and sets.composed_masks_only:
        train_data, composed = Marked(train_data, real=True), Marked(composed, real=False)
    phases = [epoch_loader(train_data, args, distributed)]
    if composed is not None:
        phases.insert(0, epoch_loader(ConcatDataset([train_data, composed]), args, distributed))
    first = sets.composed_epochs if composed is not None else 0
    steps = first * len(phases[0][0]) + (args.epochs - first) * len(phases[-1][0])
    state = make_state(args, meta.labels, steps)
    state.model.backbone.load_state_dict(probe.backbone.state_dict())
    out_dir = Path(args.output_dir)
    if args.resume:
        load_checkpoint(args.resume, state)
        # Resuming with more epochs extends the schedule instead of overrunning it.
        sched = state.scheduler
        if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):
            sched.total_steps = max(sched.total_steps, steps)
    state.model.to(device)
    state.criterion.to(device)
    wrapped: nn.Module = Trainable(state.model, cached)
    if distributed:
        wrapped = nn.parallel.DistributedDataParallel(wrapped)
    metrics: dict[str, Any] = {}
    history: list[float] = []
    if args.test_only:
        return validate(state.model, val_data, meta, cached, device) if val_data else {}
    while state.epoch < args.epochs:
        loader, sampler = phases[0] if state.epoch < first else phases[-1]
        if sampler is not None:
            sampler.set_epoch(state.epoch)
        t0 = time.time()
        losses = train_one_epoch(state, loader, cached, device, amp, wrapped)
        history.append(losses["total"])
        metrics = {"epoch": state.epoch, **losses}
        state.epoch += 1
        if val_data is not None and is_main() and (state.epoch % args.val_every == 0
                                                    or state.epoch == args.epochs):
            metrics.update(validate(state.model, val_data, meta, cached, device))
        metrics["seconds"] = round(time.time() - t0, 1)
        if is_main():
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                              for k, v in metrics.items()}), flush=True)
            save_checkpoint(out_dir / "checkpoint.pt", state, args, meta_dict(meta))
    return {**metrics, "loss_history": history}


def epoch_loader(data: Dataset[Any], args: argparse.Namespace, distributed: bool,
                 ) -> tuple[DataLoader[Any], DistributedSampler[Any] | None]:
    """A shuffling loader (and its DDP sampler) over one phase's training data."""
    sampler: DistributedSampler[Any] | None = (
        DistributedSampler(data, seed=training_seed(args)) if distributed else None)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=sampler is None,
                        sampler=sampler,
                        num_workers=0 if args.cache_features else args.workers,
                        drop_last=len(data) > args.batch_size,  # type: ignore[arg-type]
                        generator=torch.Generator().manual_seed(training_seed(args)))
    return loader, sampler


def cache_key(args: argparse.Namespace, meta: ModelMeta, data_fingerprint: str) -> str:
    """What the cached features and targets depend on: data, labels, geometry, split, augment.

    Why augment: a clean view and an augmented view of the same index must not share a file.
    TARGETS_VERSION: the dense targets are cached too, so a change to how they are built
    must not reuse files made the old way.
    """
    parts = [data_fingerprint, meta.labels, meta.input_size, args.seed, args.val_fraction,
             bool(args.augment), TARGETS_VERSION]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def meta_dict(meta: ModelMeta) -> dict[str, Any]:
    """ModelMeta as a plain dict for the checkpoint."""
    return json.loads(meta.to_json())
