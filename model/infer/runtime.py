"""Torch-free inference: pre-processing, ONNX Runtime, numpy post-processing (photos are
decoded by model.infer.images).

This is the one implementation of pre/post-processing. The service, `python -m model.predict`,
the evaluator and the torch training/eval path (which feeds raw network outputs to
`decode_outputs`) all use it. Imports only numpy, Pillow, OpenCV and onnxruntime.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

from model.infer import naming, portion
from model.infer.geometry import box_iou
from model.infer.images import ImageError, full_scale, full_size
from model.infer.refine import container_state, refine_item_mask

META_KEY = "traylens"
# The graph outputs a file with the backbone descriptor has after its four maps.
BACKBONE_OUTPUTS = ("backbone_s16", "backbone_s32")
PAD_VALUE = 0.5  # letterbox padding in [0, 1] units: becomes 0 after mean/std normalisation


class ModelFileError(ValueError):
    """An ONNX file that is missing, unreadable or lacks TrayLens metadata."""


@dataclass(frozen=True)
class ModelMeta:
    """What the ONNX file says about itself (stored as JSON under META_KEY)."""

    labels: list[str]
    food_ids: list[str | None]
    input_size: tuple[int, int]  # (width, height) of the letterboxed network input
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stride: int
    embedding_dim: int
    version: str
    fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict)
    portion: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # The graph runs each photo and its mirror image and averages the maps (model.network).
    flip_test: bool = False
    # Class prototypes and thresholds of the open-set naming check (model.infer.naming);
    # empty in files fitted before it (1.4.0): names by class probability alone.
    open_set: dict[str, Any] = field(default_factory=dict)
    # The backbone descriptor: {"strides": [16, 32], "channels": [112, 320]} when the graph
    # also outputs the frozen backbone's maps at those strides (after the four maps); an
    # item's embedding then holds the pooled head embedding and the pooled backbone maps side
    # by side, and embedding_dim counts both. Empty (1.4.0): the head embedding alone.
    backbone_descriptor: dict[str, list[int]] = field(default_factory=dict)

    @property
    def backbone_strides(self) -> list[int]:
        """Strides of the backbone maps the graph outputs (none: no backbone descriptor)."""
        return list(self.backbone_descriptor.get("strides", []))

    @property
    def head_embedding_dim(self) -> int:
        """Channels of the graph's embedding map (the item embedding less the backbone's)."""
        return self.embedding_dim - sum(self.backbone_descriptor.get("channels", []))

    @property
    def output_count(self) -> int:
        """How many maps the graph outputs."""
        return 4 + len(self.backbone_strides)

    def to_json(self) -> str:
        """Serialised form written into the ONNX metadata."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        """Parse and validate the metadata JSON."""
        try:
            data = json.loads(text)
            data["input_size"] = tuple(data["input_size"])
            data["mean"] = tuple(data["mean"])
            data["std"] = tuple(data["std"])
            meta = cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"bad TrayLens metadata: {exc}") from exc
        if len(meta.labels) != len(meta.food_ids):
            raise ModelFileError("metadata labels and food_ids differ in length")
        descriptor = meta.backbone_descriptor
        if descriptor and (sorted(descriptor) != ["channels", "strides"]
                           or len(descriptor["strides"]) != len(descriptor["channels"])
                           or not 0 < meta.head_embedding_dim < meta.embedding_dim):
            raise ModelFileError(f"bad backbone_descriptor metadata: {descriptor}")
        return meta


@dataclass(frozen=True)
class PostConfig:
    """Post-processing thresholds (one place; the evaluator may lower score_min for mAP)."""

    score_min: float = 0.25
    max_items: int = 50
    nms_iou: float = 0.6
    mask_threshold: float = 0.5
    coin_score_min: float = 0.3
    # Where items come from: "class", a peak of one class's heatmap scored by that class (the
    # default); "food", a peak of the food map, 1 - prod(1 - heat_c) over the food classes
    # (noisy-OR: "some food is here"), labelled by its best class, the coin kept apart.
    # "food" was measured and not adopted: on unseen foods it added false regions, not
    # recall (docs/MODEL_CARD.md); it stays for measuring a model trained for it.
    peaks: Literal["class", "food"] = "class"
    # Refine each food item's mask to the food inside its container (model.infer.refine:
    # GrabCut from the model's mask); areas, outlines and grams then follow the food, not the
    # plate. Off by default: docs/MODEL_CARD.md, "Food masks against outlines drawn by hand".
    refine_masks: bool = False
    # Record what each food item's box shows (Item.container, model.infer.refine.
    # container_state: food in a container, an emptied one, or neither), from the model's own
    # mask, so that pairing can read a container emptied between two photos as eaten.
    containers: bool = False


@dataclass
class Item:
    """One detected food item (or reference object such as the coin)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in original image pixels
    label: str
    label_index: int
    score: float
    class_scores: np.ndarray  # per-label probabilities, sums to 1
    mask: np.ndarray | None  # bool, shape of the box crop (rounded to whole pixels)
    polygon: list[list[int]] | None
    area_px: float
    embedding: np.ndarray  # L2-normalised
    area_cm2: float | None = None
    volume_ml: float | None = None
    grams: float | None = None
    grams_range: tuple[float, float] | None = None
    # What the box shows (PostConfig.containers): "food" in a container, an "empty" one, or
    # None (neither, or not recorded); model.infer.refine.container_state.
    container: str | None = None


@dataclass
class Prediction:
    """All items found in one image, plus the scale used for portions."""

    width: int
    height: int
    items: list[Item]
    px_per_cm: float | None = None
    scale_source: str | None = None  # "given", "coin" or None


# Image.info key of a reduced decode: the upright (width, height) of the full image.
def letterbox(img: Image.Image, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping aspect into (width, height), pad right/bottom; float32 HWC in [0, 1]."""
    width, height = size
    scale = min(width / img.width, height / img.height)
    new_w = max(1, min(width, round(img.width * scale)))
    new_h = max(1, min(height, round(img.height * scale)))
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(arr, (new_w, new_h), interpolation=interp)
    out = np.full((height, width, 3), PAD_VALUE, dtype=np.float32)
    out[:new_h, :new_w] = resized.astype(np.float32) / 255.0
    return out, scale


def preprocess(images: Sequence[Image.Image], meta: ModelMeta) -> tuple[np.ndarray, list[float]]:
    """Letterbox + normalise a list of images into one NCHW float32 batch."""
    mean = np.asarray(meta.mean, dtype=np.float32)
    std = np.asarray(meta.std, dtype=np.float32)
    batch, scales = [], []
    for img in images:
        arr, scale = letterbox(img, meta.input_size)
        batch.append(((arr - mean) / std).transpose(2, 0, 1))
        scales.append(scale)
    return np.ascontiguousarray(np.stack(batch), dtype=np.float32), scales


def find_peaks(heat: np.ndarray, score_min: float, top_k: int) -> np.ndarray:
    """Local maxima (3x3) of a (C, h, w) heatmap above score_min: rows of (class, y, x, score)."""
    kernel = np.ones((3, 3), np.uint8)
    pooled = np.stack([cv2.dilate(c, kernel) for c in heat.astype(np.float32)])
    is_peak = (heat >= pooled) & (heat >= score_min)
    cls, ys, xs = np.nonzero(is_peak)
    scores = heat[cls, ys, xs]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return np.stack([cls[order], ys[order], xs[order], scores[order]], axis=1).astype(np.float64)


def food_peaks(heat: np.ndarray, labels: Sequence[str], score_min: float, top_k: int,
               ) -> np.ndarray:
    """find_peaks' rows from the food map (noisy-OR of the food classes' heatmaps) and the coin
    class's own map: a food peak is labelled with the food class strongest at that cell and
    scored by the food map."""
    food = [c for c, name in enumerate(labels) if name != portion.COIN_LABEL]
    coin = [c for c, name in enumerate(labels) if name == portion.COIN_LABEL]
    sub = np.clip(heat[food].astype(np.float64), 0.0, 1.0)
    foodness = (1.0 - np.prod(1.0 - sub, axis=0)).astype(np.float32)
    peaks = find_peaks(np.stack([foodness, *heat[coin]]), score_min, top_k)
    if not len(peaks):
        return peaks
    ys, xs = peaks[:, 1].astype(int), peaks[:, 2].astype(int)
    best_food = np.asarray(food)[np.argmax(sub[:, ys, xs], axis=0)]
    is_food = peaks[:, 0] == 0
    peaks[is_food, 0] = best_food[is_food]
    if coin:  # channel 1 of the stack
        peaks[~is_food, 0] = coin[0]
    return peaks


def decode_boxes(peaks: np.ndarray, ltrb: np.ndarray, stride: int) -> np.ndarray:
    """Cell centre +/- predicted distances -> (N, 4) boxes in network-input pixels."""
    ys, xs = peaks[:, 1].astype(int), peaks[:, 2].astype(int)
    cx, cy = (xs + 0.5) * stride, (ys + 0.5) * stride
    left, top, right, bottom = (ltrb[i, ys, xs] for i in range(4))
    return np.stack([cx - left, cy - top, cx + right, cy + bottom], axis=1).astype(np.float64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy class-agnostic NMS; indices kept, best first (one label per item)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        overlaps = box_iou(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][overlaps <= iou]
    return np.asarray(keep, dtype=int)


def full_mask(mask_map: np.ndarray, scale: float, size: tuple[int, int], stride: int) -> np.ndarray:
    """Stride-8 probability map -> probabilities at original image resolution (H, W)."""
    width, height = size
    up = cv2.resize(
        mask_map.astype(np.float32),
        (mask_map.shape[1] * stride, mask_map.shape[0] * stride),
        interpolation=cv2.INTER_LINEAR,
    )
    valid_w = min(up.shape[1], max(1, round(width * scale)))
    valid_h = min(up.shape[0], max(1, round(height * scale)))
    return cv2.resize(up[:valid_h, :valid_w], (width, height), interpolation=cv2.INTER_LINEAR)


# Outline tolerance in pixels: the mask comes up-sampled from stride 8, so finer vertices
# carry no information; they only made every answer, row and overlay ~5x larger.
POLYGON_TOLERANCE_PX = 1.0


def mask_polygon(mask: np.ndarray, offset: tuple[int, int]) -> list[list[int]] | None:
    """Outline (within 1 px) of the largest connected region of a boolean mask, in pixels."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return None
    largest = cv2.approxPolyDP(max(contours, key=cv2.contourArea), POLYGON_TOLERANCE_PX, True)
    if len(largest) < 3:
        return None
    points: list[list[int]] = (largest.reshape(-1, 2) + np.asarray(offset)).tolist()
    return points


def unit(vec: np.ndarray) -> np.ndarray:
    """L2-normalised along the last axis, float32 (zero rows stay zero)."""
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    return (vec / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def pool_embedding(embed: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of a (E, h, w) embedding map, L2-normalised."""
    total = float(weights.sum())
    if total <= 0:
        vec = embed.reshape(embed.shape[0], -1).mean(axis=1)
    else:
        vec = (embed * weights[None]).reshape(embed.shape[0], -1).sum(axis=1) / total
    return unit(vec)


def box_cells(box: np.ndarray, shape: tuple[int, int], stride: int) -> tuple[slice, slice]:
    """Grid cells (rows, cols) covered by a network-input box; never empty."""
    h, w = shape
    x0 = int(np.clip(np.floor(box[0] / stride), 0, w - 1))
    y0 = int(np.clip(np.floor(box[1] / stride), 0, h - 1))
    x1 = int(np.clip(np.ceil(box[2] / stride), x0 + 1, w))
    y1 = int(np.clip(np.ceil(box[3] / stride), y0 + 1, h))
    return slice(y0, y1), slice(x0, x1)


def region_embedding(
    embed: np.ndarray, mask_map: np.ndarray, box: np.ndarray, stride: int, threshold: float
) -> np.ndarray:
    """Embedding of one item: mean over its box cells weighted by the in-mask probability."""
    rows, cols = box_cells(box, mask_map.shape, stride)
    prob = mask_map[rows, cols]
    weights = np.where(prob >= threshold, prob, 0.0)
    return pool_embedding(embed[:, rows, cols], weights)


def backbone_descriptor(maps: Sequence[np.ndarray], strides: Sequence[int],
                        box: np.ndarray) -> np.ndarray:
    """The backbone descriptor of a network-input box: the mean of each (C, h, w) backbone
    map over the box's cells, each L2-normalised, side by side, L2-normalised.

    Why: the backbone is frozen ImageNet weights in every recipe, so this does not depend on
    which dishes a model trained on; on foods the heads never saw it told dishes apart at
    96% with 3 examples where the trained embedding gave 67% (docs/MODEL_CARD.md)."""
    parts = []
    for fmap, stride in zip(maps, strides, strict=True):
        rows, cols = box_cells(box, fmap.shape[1:], stride)
        parts.append(unit(fmap[:, rows, cols].mean(axis=(1, 2))))
    return unit(np.concatenate(parts))


def joined(embedding: np.ndarray, descriptor: np.ndarray | None) -> np.ndarray:
    """An item's embedding: the head's and the backbone descriptor side by side, as one unit
    vector (its cosine with another is the mean of the two parts' cosines); the head's alone
    when the file has no descriptor. Rows of (N, E) and (N, D) arrays join row by row."""
    if descriptor is None:
        return embedding
    return unit(np.concatenate([embedding, descriptor], axis=-1))


def item_embedding(maps: Sequence[np.ndarray], meta: ModelMeta, box: np.ndarray,
                   threshold: float) -> np.ndarray:
    """The embedding of one item found at a network-input box, from one image's raw maps
    (the head embedding weighted by the in-mask probability, plus the backbone descriptor
    over the box when the file has one)."""
    _, _, mask_map, embed, *backbone = maps
    head = region_embedding(embed, mask_map[0], box, meta.stride, threshold)
    return joined(head, backbone_descriptor(backbone, meta.backbone_strides, box)
                  if backbone else None)


def decode_outputs(
    outputs: Sequence[np.ndarray],
    scale: float,
    size: tuple[int, int],
    meta: ModelMeta,
    cfg: PostConfig,
) -> list[Item]:
    """Raw maps of ONE image (heatmap, ltrb, mask, embedding[, backbone maps]) -> items in
    original pixels."""
    maps = [np.asarray(o, dtype=np.float32) for o in outputs]
    if len(maps) != meta.output_count:
        raise ValueError(f"{len(maps)} maps for a file that outputs {meta.output_count}")
    heat, ltrb, mask_map = maps[:3]
    top_k = max(100, cfg.max_items * 4)
    if cfg.peaks == "food":
        peaks = food_peaks(heat, meta.labels, cfg.score_min, top_k)
    else:
        peaks = find_peaks(heat, cfg.score_min, top_k)
    if not len(peaks):
        return []
    boxes = decode_boxes(peaks, ltrb, meta.stride)
    keep = nms(boxes, peaks[:, 3], cfg.nms_iou)[: cfg.max_items]
    prob_full = full_mask(mask_map[0], scale, size, meta.stride)
    items = []
    for k in keep:
        _, y, x, score = peaks[k]
        cls = int(peaks[k, 0])
        vec = heat[:, int(y), int(x)].astype(np.float64)
        box_in = boxes[k]
        box_px = _clip_box(box_in / scale, size)
        item_mask, polygon, area = _item_mask(prob_full, box_px, cfg.mask_threshold)
        items.append(
            Item(
                box=tuple(float(v) for v in box_px),  # type: ignore[arg-type]
                label=meta.labels[cls],
                label_index=cls,
                score=float(score),
                class_scores=(vec / max(vec.sum(), 1e-12)).astype(np.float32),
                mask=item_mask,
                polygon=polygon,
                area_px=area,
                embedding=item_embedding(maps, meta, box_in, cfg.mask_threshold),
            )
        )
    return items


def look_inside(img: Image.Image, items: Sequence[Item], size: tuple[int, int],
                cfg: PostConfig) -> None:
    """What `cfg` asks of the photo's pixels, in place: each food item's container state
    (from the model's mask), then its refined mask. `img` is the decoded photo, `size` the
    (width, height) of the photo it came from."""
    if not (cfg.containers or cfg.refine_masks):
        return
    rgb = np.asarray(img.convert("RGB"))
    if cfg.containers:
        for item in _food_with_masks(items):
            assert item.mask is not None
            item.container = container_state(rgb, item.box, item.mask, img.width / size[0])
    if cfg.refine_masks:
        refine_items(rgb, items, img.width / size[0])


def _food_with_masks(items: Sequence[Item]) -> list[Item]:
    """The items with a mask that are food (not the coin)."""
    return [it for it in items if it.mask is not None and it.label != portion.COIN_LABEL]


def refine_items(rgb: np.ndarray, items: Sequence[Item], scale: float) -> None:
    """Refine every food item's mask, outline and area in place (model.infer.refine); `rgb`
    is the decoded photo, `scale` its pixels per original pixel."""
    for item in _food_with_masks(items):
        assert item.mask is not None
        item.mask = refine_item_mask(rgb, item.box, item.mask, scale)
        item.polygon = mask_polygon(item.mask, (int(np.floor(item.box[0])),
                                                int(np.floor(item.box[1]))))
        item.area_px = float(item.mask.sum())


def _clip_box(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Clip an xyxy box to the image."""
    width, height = size
    return np.clip(box, [0, 0, 0, 0], [width, height, width, height])


def _item_mask(
    prob_full: np.ndarray, box: np.ndarray, threshold: float
) -> tuple[np.ndarray | None, list[list[int]] | None, float]:
    """The item's mask crop, its outline and its pixel area (0 when the mask misses it)."""
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    if x1 <= x0 or y1 <= y0:
        return None, None, 0.0
    crop = prob_full[y0:y1, x0:x1] >= threshold
    if not crop.any():
        return None, None, 0.0
    return crop, mask_polygon(crop, (x0, y0)), float(crop.sum())


# ORT's intra-op worker threads busy-wait (spin) for work by default. On the shared 2-core
# CPU that spinning took the cores from everything else: in one process (benchmarks/
# layout_speed.py, load ~7) plain analyze p50 158 -> 75 ms without it, and the tray
# registration + fill that follow predict 52 -> 15 ms (see docs/BENCHMARKS.md "Layout mode").
# Threads now sleep between ops; spinning=True brings the busy-wait back.
ORT_SPINNING = False
# ORT's intra-op threads when a caller names none; None: ORT's default, one per core. A
# process sharing the cores with others like it (the test suite's pytest-xdist workers)
# sets its share here, as the service does with its intra_op_threads setting.
DEFAULT_THREADS: int | None = None


class TrayModel:
    """One ONNX Runtime session plus the metadata that travels in the file."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, *,
                 memory_arena: bool = True, spinning: bool = ORT_SPINNING) -> None:
        """`memory_arena=False`: ORT allocates per run and frees after it (a long-running
        service's RSS then falls back after a batch instead of keeping the arena's peak).
        `spinning`: ORT's threads busy-wait between operators (off by default: on a shared
        CPU the spinning starved the work after predict; docs/BENCHMARKS.md)."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}")
        opts = ort.SessionOptions()
        threads = threads or DEFAULT_THREADS
        if threads:
            opts.intra_op_num_threads = threads
        opts.enable_cpu_mem_arena = memory_arena
        opts.add_session_config_entry("session.intra_op.allow_spinning",
                                      "1" if spinning else "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types; all mean "unusable file"
            raise ModelFileError(f"cannot load ONNX model {path}: {exc}") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise ModelFileError(f"{path} has no TrayLens metadata ({META_KEY!r})")
        self.path = path
        self.meta = ModelMeta.from_json(props[META_KEY])
        self.calibration = portion.calibration_from_json(self.meta.portion)
        try:
            self.open_set = naming.OpenSet.from_json(
                self.meta.open_set, len(self.meta.labels), self.meta.embedding_dim,
            ) if self.meta.open_set else None
        except naming.OpenSetError as exc:
            raise ModelFileError(f"{path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        outputs = len(self.session.get_outputs())
        if outputs != self.meta.output_count:
            raise ModelFileError(f"{path} outputs {outputs} maps; its metadata describes "
                                 f"{self.meta.output_count}")

    def is_named(self, item: Item, min_class_score: float) -> bool:
        """Whether the item may carry its class name, else "unidentified" (the one rule of
        model.infer.naming: class probability, and the open-set check where fitted)."""
        return naming.is_named(item.class_scores, item.label_index, item.embedding,
                               min_class_score, self.open_set)

    def run(self, images: Sequence[Image.Image]) -> tuple[list[np.ndarray], list[float]]:
        """Raw network maps for a batch (arrays with a batch axis, `meta.output_count` of
        them) and letterbox scales."""
        batch, scales = preprocess(images, self.meta)
        outputs = self.session.run(None, {self.input_name: batch})
        return [np.asarray(o) for o in outputs], scales

    def predict(
        self,
        images: Sequence[Image.Image],
        px_per_cm: Sequence[float | None] | None = None,
        depths: Sequence[np.ndarray | None] | None = None,
        cfg: PostConfig | None = None,
    ) -> list[Prediction]:
        """Items with masks, embeddings and (when a scale is known) grams for each image."""
        if not images:
            return []
        px_per_cm = _per_image(px_per_cm, len(images), "px_per_cm")
        depths = _per_image(depths, len(images), "depths")
        cfg = cfg or PostConfig()
        outputs, scales = self.run(images)
        preds = []
        for i, img in enumerate(images):
            maps = [o[i] for o in outputs]
            size, scale = full_size(img), full_scale(img, scales[i])
            items = decode_outputs(maps, scale, size, self.meta, cfg)
            look_inside(img, items, size, cfg)
            preds.append(self._with_portions(size, items, px_per_cm[i], depths[i], cfg))
        return preds

    def _with_portions(
        self,
        size: tuple[int, int],
        items: list[Item],
        px_per_cm: float | None,
        depth: np.ndarray | None,
        cfg: PostConfig,
    ) -> Prediction:
        """Attach scale, area, volume and grams to each item."""
        scale, source = _scale_for(items, px_per_cm, cfg)
        if depth is not None and np.asarray(depth).shape != (size[1], size[0]):
            raise ImageError(f"depth map shape {np.asarray(depth).shape} != image {size[::-1]}")
        for item in items:
            if scale is None or item.mask is None or item.label == portion.COIN_LABEL:
                continue
            item.area_cm2 = portion.area_cm2(item.area_px, scale)
            if depth is not None:
                item.volume_ml = portion.depth_volume_ml(
                    full_item_mask(item, size), np.asarray(depth, dtype=np.float64), scale
                )
            item.grams, item.grams_range = portion.posterior_grams(
                self.calibration, self.meta.labels, item.class_scores, item.label_index,
                item.area_cm2, item.volume_ml,
            )
        return Prediction(size[0], size[1], items, scale, source)

    def embed_regions(
        self,
        img: Image.Image,
        boxes: Sequence[Sequence[float]] | None = None,
        masks: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Enrolment embeddings (N, E): whole image, given boxes (pixels), or given masks (H, W)."""
        outputs, scales = self.run([img])
        maps = [o[0] for o in outputs]
        size, scale = full_size(img), full_scale(img, scales[0])
        if masks is not None:
            return np.stack([self._mask_embedding(maps, m, size, scale) for m in masks])
        if boxes is None:
            boxes = [(0.0, 0.0, float(size[0]), float(size[1]))]
        thr = PostConfig().mask_threshold
        return np.stack([item_embedding(maps, self.meta, np.asarray(box, np.float64) * scale, thr)
                         for box in boxes])

    def embed_enrolment(
        self,
        img: Image.Image,
        boxes: Sequence[Sequence[float]] | None = None,
        masks: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Enrolment embeddings: `embed_regions` of the photo and of its mirror image, averaged.

        Why: a dish is enrolled from a handful of photos, and a top view is as valid mirrored.
        Averaging the two views makes each example's vector depend less on one pose; measured
        on held-out ECUSTFD menus (k=3, m=5) it lifted identification by ~2-3 points. A file
        with `flip_test` already averages every photo with its mirror inside the graph.
        """
        plain = self.embed_regions(img, boxes, masks)
        if self.meta.flip_test:
            return plain
        mirror = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        mirror.info.update(img.info)  # a reduced decode keeps its full size
        width = full_size(img)[0]
        flipped_boxes = None if boxes is None else [
            (width - float(b[2]), float(b[1]), width - float(b[0]), float(b[3])) for b in boxes]
        flipped_masks = None if masks is None else [np.asarray(m)[:, ::-1] for m in masks]
        return unit(plain + self.embed_regions(mirror, flipped_boxes, flipped_masks))

    def _mask_embedding(
        self, maps: Sequence[np.ndarray], mask: np.ndarray, size: tuple[int, int], scale: float
    ) -> np.ndarray:
        """Embedding pooled under a user-drawn full-resolution mask. The backbone descriptor
        (where the file has one) is pooled over the mask's bounding box, as a found item's is
        over its box, so an example enrolled by mask compares with found items like for like."""
        mask = np.asarray(mask)
        if mask.shape != (size[1], size[0]):
            raise ImageError(f"mask shape {mask.shape} != image {size[::-1]}")
        embed, backbone = maps[3], maps[4:]
        head = self._masked_head(embed, mask, scale)
        if not backbone:
            return head
        ys, xs = np.nonzero(mask)
        box = (np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64) if len(xs)
               else np.array([0.0, 0.0, size[0], size[1]]))
        return joined(head, backbone_descriptor(backbone, self.meta.backbone_strides, box * scale))

    def _masked_head(self, embed: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
        """The head embedding pooled under a full-resolution mask."""
        size = (mask.shape[1], mask.shape[0])
        grid_h, grid_w = embed.shape[1:]
        stride = self.meta.stride
        w_in, h_in = round(size[0] * scale), round(size[1] * scale)
        small = cv2.resize(mask.astype(np.float32), (w_in, h_in), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((grid_h * stride, grid_w * stride), np.float32)
        canvas[: min(h_in, canvas.shape[0]), : min(w_in, canvas.shape[1])] = small[
            : canvas.shape[0], : canvas.shape[1]
        ]
        weights = cv2.resize(canvas, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
        return pool_embedding(embed, weights)


def _per_image(values: Sequence[Any] | None, n: int, name: str) -> list[Any]:
    """Broadcast an optional per-image list; wrong length is a clear error."""
    if values is None:
        return [None] * n
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} images")
    return list(values)


def _scale_for(
    items: list[Item], px_per_cm: float | None, cfg: PostConfig
) -> tuple[float | None, str | None]:
    """px/cm: given by the caller, else from the most confident detected coin."""
    if px_per_cm is not None:
        if not px_per_cm > 0:
            raise ValueError(f"px_per_cm must be > 0, got {px_per_cm}")
        return float(px_per_cm), "given"
    coins = [i for i in items if i.label == portion.COIN_LABEL and i.score >= cfg.coin_score_min]
    if not coins:
        return None, None
    best = max(coins, key=lambda i: i.score)
    try:
        return portion.coin_px_per_cm(best.box), "coin"
    except portion.PortionError:
        return None, None


def full_item_mask(item: Item, size: tuple[int, int]) -> np.ndarray:
    """The item's crop mask placed in a full-image (width, height) boolean array."""
    width, height = size
    out = np.zeros((height, width), dtype=bool)
    if item.mask is not None:
        x0, y0 = int(np.floor(item.box[0])), int(np.floor(item.box[1]))
        crop = item.mask[: height - y0, : width - x0]
        out[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    return out
