"""Torch Dataset over a COCO-extended CocoDataset: letterbox, transforms v2, dense targets.

The letterbox is model.infer.runtime's (one implementation), so training sees exactly the input
geometry that inference builds. Augmentation uses torchvision.transforms.v2 on tv_tensors
(Image, BoundingBoxes, Mask) so boxes and masks move with the pixels.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from model.data.coco import Annotation, CocoDataset, ImageRecord
from model.data.masks import annotation_mask
from model.infer.images import load_image
from model.infer.runtime import PAD_VALUE, letterbox

MAX_OBJECTS = 32  # padded per-image object slots for batching (trays hold far fewer)
CENTRE_RADIUS = 1  # box regression is supervised on cells within this many of the centre...
# ...and wherever the centre Gaussian reaches this value (TTFNet's idea): along a long object
# (a bottle) the heatmap peak may land a few cells off centre, and the box read there must be
# the whole object's, not a part's.
REG_GAUSS_MIN = 0.3
# ...and on the central half of the box along each axis (FCOS's centre sampling): a peak a
# quarter of a bottle's length off centre still reads the whole bottle (measured: drink boxes
# read from such peaks came out about 60% of the bottle's height).
REG_INNER = 0.5
REG_W_FLOOR = 0.3  # no supervised cell weighs less than this share of the centre cell
TARGETS_VERSION = 3  # bump when build_targets changes: feature caches hold targets too


class LabelMismatchError(ValueError):
    """A dataset category that the model's label set does not contain."""


@dataclass(frozen=True)
class InputSpec:
    """Network input geometry and normalisation (mirrors runtime.ModelMeta)."""

    size: tuple[int, int]  # (width, height)
    stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def train_transforms() -> v2.Compose:
    """Photometric + geometric augmentation for top-view tray photos (any rotation is valid)."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomApply([v2.RandomAffine(degrees=0, translate=(0.08, 0.08), scale=(0.8, 1.15),
                                            fill=PAD_VALUE)], p=0.6),
            # No hue jitter: it costs more than the rest together on CPU, and food colour matters.
            v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25),
            v2.SanitizeBoundingBoxes(min_size=4),
        ]
    )


class TrayDataset(Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Letterboxed, augmented images with heatmap/box/mask/embedding targets."""

    def __init__(
        self,
        coco: CocoDataset,
        labels: Sequence[str],
        spec: InputSpec,
        transforms: v2.Transform | None = None,
    ) -> None:
        self.coco = coco
        self.spec = spec
        self.transforms = transforms
        index = {name: i for i, name in enumerate(labels)}
        names = coco.category_names()
        unknown = sorted({n for n in names.values() if n not in index})
        if unknown:
            raise LabelMismatchError(f"categories not in the model's labels: {unknown}")
        self.cat_to_label = {cid: index[n] for cid, n in names.items()}
        self.num_classes = len(labels)
        self.by_image = coco.annotations_by_image()

    def __len__(self) -> int:
        return len(self.coco.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rec = self.coco.images[i]
        img = load_image(self.coco.image_path(rec))
        arr, scale = letterbox(img, self.spec.size)
        anns = self.by_image.get(rec.id, [])
        boxes = np.array([_xyxy(a) for a in anns], dtype=np.float32).reshape(-1, 4) * scale
        labels = torch.tensor([self.cat_to_label[a.category_id] for a in anns], dtype=torch.long)
        masks = _instance_masks(rec, anns, img, scale, self.spec.size)
        h, w = arr.shape[:2]
        sample: dict[str, Any] = {
            "image": tv_tensors.Image(torch.from_numpy(arr).permute(2, 0, 1).contiguous()),
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY",
                                              canvas_size=(h, w)),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "labels": labels,
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        image = _normalise(sample["image"], self.spec)
        return image, build_targets(sample["boxes"], sample["labels"], sample["masks"],
                                    self.num_classes, self.spec)


def _xyxy(a: Annotation) -> list[float]:
    x, y, w, h = a.bbox
    return [x, y, x + w, y + h]


def _instance_masks(
    rec: ImageRecord, anns: list[Annotation], img: Image.Image, scale: float, size: tuple[int, int]
) -> np.ndarray:
    """Per-object masks in letterbox pixels; the inscribed ellipse when only a box is known.

    Why the ellipse: plates, bowls, cups and most foods seen from above are round-ish, so
    the ellipse is a closer weak label than the full rectangle.
    """
    import cv2

    width, height = size
    out = np.zeros((len(anns), height, width), dtype=np.uint8)
    for k, a in enumerate(anns):
        full = annotation_mask(a, rec.height, rec.width)
        if full is not None and full.shape == (img.height, img.width):
            small = cv2.resize(full.astype(np.uint8), (round(img.width * scale),
                               round(img.height * scale)), interpolation=cv2.INTER_NEAREST)
            out[k, : small.shape[0], : small.shape[1]] = small[:height, :width]
            continue
        x0, y0, x1, y1 = (v * scale for v in _xyxy(a))
        centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
        axes = (max(1, round((x1 - x0) / 2)), max(1, round((y1 - y0) / 2)))
        cv2.ellipse(out[k], centre, axes, 0, 0, 360, 1, thickness=-1)
    return out


def _normalise(image: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return ((image.as_subclass(torch.Tensor).float() - mean) / std).contiguous()


def gaussian_sigma(extent_cells: float) -> float:
    """Heatmap sigma (in cells) along one axis, growing with object size as in TTFNet."""
    return max(0.7, 0.1 * extent_cells)


def regression_cells(
    dx: torch.Tensor, dy: torch.Tensor, g: torch.Tensor, bw: float, bh: float
) -> torch.Tensor:
    """Cells that learn an object's box: 3x3 round the centre, its Gaussian, its inner half."""
    centre = (dx.abs() <= CENTRE_RADIUS) & (dy.abs() <= CENTRE_RADIUS)
    inner = (dx.abs() <= REG_INNER * bw / 2) & (dy.abs() <= REG_INNER * bh / 2)
    return centre | inner | (g >= REG_GAUSS_MIN)


def object_weights(g: torch.Tensor, cells: torch.Tensor, area_px: float) -> torch.Tensor:
    """TTFNet's box weights: Gaussian-shaped, summing to log(area) per object.

    Normalising per object keeps a plate's hundreds of cells from drowning a bread roll's
    nine, while the log still gives large objects somewhat more say.
    """
    w = torch.where(cells, g.clamp(min=REG_W_FLOOR), torch.zeros_like(g))
    return w * (math.log(max(area_px, 2.0)) / float(w.sum()))


def build_targets(
    boxes: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, num_classes: int,
    spec: InputSpec,
) -> dict[str, torch.Tensor]:
    """Dense stride-8 targets: per-class Gaussian heatmap, boxes on each object's regression
    cells (see regression_cells, object_weights), mask, objects."""
    width, height = spec.size
    gh, gw = height // spec.stride, width // spec.stride
    heat = torch.zeros(num_classes, gh, gw)
    reg_box = torch.zeros(4, gh, gw)
    reg_w = torch.zeros(gh, gw)
    area_at = torch.full((gh, gw), float("inf"))
    ys = torch.arange(gh, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(gw, dtype=torch.float32).view(1, -1) + 0.5
    b = boxes.as_subclass(torch.Tensor).float().reshape(-1, 4)
    for box, cls in zip(b, labels.tolist(), strict=True):
        cx, cy = (box[0] + box[2]) / 2 / spec.stride, (box[1] + box[3]) / 2 / spec.stride
        bw, bh = (box[2] - box[0]) / spec.stride, (box[3] - box[1]) / spec.stride
        sx, sy = gaussian_sigma(float(bw)), gaussian_sigma(float(bh))
        ix, iy = int(cx.clamp(0, gw - 1)), int(cy.clamp(0, gh - 1))
        dx, dy = xs - (ix + 0.5), ys - (iy + 0.5)
        g = torch.exp(-(dx**2 / (2 * sx**2) + dy**2 / (2 * sy**2)))
        heat[cls] = torch.maximum(heat[cls], g)
        near = regression_cells(dx, dy, g, float(bw), float(bh))
        area = float(bw * bh)
        take = near & (area < area_at)  # smaller object wins a shared cell
        area_at[take] = area
        reg_box[:, take] = box.view(4, 1)
        reg_w[take] = object_weights(g, near, area * spec.stride**2)[take]
    fg = masks.as_subclass(torch.Tensor).float().amax(dim=0, keepdim=True) if len(masks) else \
        torch.zeros(1, height, width)
    mask = torch.nn.functional.avg_pool2d(fg.unsqueeze(0), spec.stride).squeeze(0)
    n = min(len(b), MAX_OBJECTS)
    obj_boxes = torch.zeros(MAX_OBJECTS, 4)
    obj_labels = torch.full((MAX_OBJECTS,), -1, dtype=torch.long)
    obj_boxes[:n], obj_labels[:n] = b[:n], labels[:n]
    return {"heat": heat, "reg_box": reg_box, "reg_w": reg_w, "mask": mask,
            "boxes": obj_boxes, "labels": obj_labels}
