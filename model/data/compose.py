"""Tray composer: paste real food crops onto drawn trays, plates and bowls.

Crops are cut from real photos with their masks (pseudo masks for box-only sets) and keep
their grams and scale. A crop is pasted at its true size in the scene (scene px_per_cm /
source px_per_cm) times a size jitter f; since grams grow with volume, ~ area^1.5, the
pasted item weighs grams * f^3. Crops without a scale (mealtray items) are fitted to
their region and carry no grams. Output: images + COCO with masks marked "composed".
It supplements real photos for pre-training and tests; it never replaces real validation.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from model.data.backgrounds import KINDS, Region, Scene, draw_scene
from model.data.builder import DatasetBuilder
from model.data.coco import CocoDataset, save
from model.data.masks import annotation_mask, compress_rle, mask_bbox, rle_encode
from model.data.pseudo import add_pseudo_masks, read_bgr

SOURCE = "composed"
SKIP_LABELS = ("coin",)
SIZE_JITTER = (0.85, 1.15)
# A crop that would hide more than 1 - MIN_VISIBLE of an item already placed is not
# pasted: the hidden item's grams would no longer match what is visible.
MIN_VISIBLE = 0.6
MIN_CROP_PX = 12


@dataclass(frozen=True)
class FoodCrop:
    """A food cut from a real photo: RGBA pixels, label, grams, scale and origin."""

    rgba: np.ndarray  # h x w x 4 uint8, alpha = the mask
    label: str
    grams: float | None
    px_per_cm: float | None
    source: str  # "<file name>#<annotation id>", for provenance


def cut_crop(image_rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGBA crop of the mask's box, alpha = mask."""
    x, y, w, h = (int(v) for v in mask_bbox(mask))
    rgba = np.dstack([image_rgb[y : y + h, x : x + w], mask[y : y + h, x : x + w] * 255])
    return rgba.astype(np.uint8)


def pick_annotations(
    ds: CocoDataset, per_label: int | None, seed: int, require_grams: bool = False
) -> list[int]:
    """Annotation ids to crop: up to per_label of each label, chosen with the seed.

    require_grams keeps only crops whose grams survive pasting: grams and a known scale.
    """
    names = ds.category_names()
    scaled = {im.id for im in ds.images if im.px_per_cm is not None}
    by_label: dict[str, list[int]] = {}
    for a in ds.annotations:
        label = names[a.category_id]
        if label in SKIP_LABELS or (
            require_grams and (a.grams is None or a.image_id not in scaled)
        ):
            continue
        by_label.setdefault(label, []).append(a.id)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        ids = by_label[label]
        if per_label is not None and len(ids) > per_label:
            ids = sorted(rng.choice(ids, size=per_label, replace=False).tolist())
        chosen += ids
    return chosen


def extract_crops(
    ds: CocoDataset, per_label: int | None = None, seed: int = 0, require_grams: bool = False
) -> list[FoodCrop]:
    """Food crops from a dataset; box-only annotations get pseudo masks first."""
    wanted = set(pick_annotations(ds, per_label, seed, require_grams))
    ds = add_pseudo_masks(ds, annotation_ids=wanted)
    names = ds.category_names()
    by_image = ds.annotations_by_image()
    crops: list[FoodCrop] = []
    for im in ds.images:
        todo = [a for a in by_image[im.id] if a.id in wanted]
        if not todo:
            continue
        rgb = cv2.cvtColor(read_bgr(ds, im), cv2.COLOR_BGR2RGB)
        for a in todo:
            mask = annotation_mask(a, im.height, im.width)
            if mask is None or mask.sum() < MIN_CROP_PX**2:
                continue
            crops.append(FoodCrop(cut_crop(rgb, mask), names[a.category_id], a.grams,
                                  im.px_per_cm, f"{im.file_name}#{a.id}"))
    return crops


def place_scale(crop: FoodCrop, scene_ppcm: float, region: Region,
                rng: np.random.Generator) -> tuple[float, float | None]:
    """(resize factor for the crop's pixels, grams after resizing) for one region."""
    h, w = crop.rgba.shape[:2]
    fit = min(region.w / w, region.h / h)
    if crop.px_per_cm is None:  # no scale: fill most of the region, weight unknown
        return fit * float(rng.uniform(0.6, 0.95)), None
    true = scene_ppcm / crop.px_per_cm
    f = float(rng.uniform(*SIZE_JITTER))
    f = min(f, fit / true)  # shrink to fit the compartment if needed
    grams = None if crop.grams is None else crop.grams * f**3
    return true * f, grams


def placed_mask(shape: tuple[int, ...], rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """The bool mask an RGBA crop covers when pasted at (x, y) on an image of shape."""
    h, w = rgba.shape[:2]
    mask = np.zeros(shape[:2], dtype=bool)
    mask[y : y + h, x : x + w] = rgba[..., 3] > 127
    return mask


def paste(canvas: np.ndarray, rgba: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend rgba onto canvas (float RGB) at (x, y), with a soft shadow, in place."""
    h, w = rgba.shape[:2]
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    soft = cv2.GaussianBlur(alpha, (0, 0), 1.0)  # feathered edge, as real crops have
    shadow = cv2.GaussianBlur(alpha, (0, 0), 4.0) * 0.35
    sy, sx = min(y + 4, canvas.shape[0] - h), min(x + 4, canvas.shape[1] - w)
    canvas[sy : sy + h, sx : sx + w] *= (1.0 - shadow)[..., None]
    region = canvas[y : y + h, x : x + w]
    region[:] = region * (1 - soft[..., None]) + rgba[..., :3] * soft[..., None]


def relight(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Global light: brightness, colour cast, vignette and sensor noise."""
    h, w = img.shape[:2]
    gain = rng.uniform(0.8, 1.15) * rng.uniform(0.94, 1.06, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    vignette = 1.0 - rng.uniform(0.05, 0.25) * r2 / 2
    out = img * gain[None, None, :] * vignette[..., None] + rng.normal(0, 3, img.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class PlacedItem:
    """One pasted crop: label, visible mask, grams after resizing, and its origin."""

    label: str
    mask: np.ndarray
    grams: float | None
    source: str


def _choose_regions(scene: Scene, rng: np.random.Generator) -> list[Region]:
    """Which regions get food: a few cells of a plain tray, most compartments, ..."""
    regions = scene.regions
    if scene.kind == "plain":
        k = int(rng.integers(2, min(5, len(regions)) + 1))
        return [regions[i] for i in sorted(rng.choice(len(regions), size=k, replace=False))]
    chosen = [r for r in regions if rng.random() < 0.85]
    return chosen or [regions[int(rng.integers(len(regions)))]]


def _resize(rgba: np.ndarray, factor: float) -> np.ndarray:
    """The crop scaled by factor (area interpolation when shrinking)."""
    h, w = rgba.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(rgba, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def compose_image(
    crops: Sequence[FoodCrop], kind: str, size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, list[PlacedItem], float]:
    """One composed scene: (RGB image, visible items, px_per_cm)."""
    scene = draw_scene(kind, rng, size)
    canvas = scene.image.astype(np.float32)
    items: list[PlacedItem] = []
    for region in _choose_regions(scene, rng):
        crop = crops[int(rng.integers(len(crops)))]
        # A random quarter turn before fitting; no mirroring, as packaging has text.
        crop = replace(crop, rgba=np.ascontiguousarray(np.rot90(crop.rgba, int(rng.integers(4)))))
        factor, grams = place_scale(crop, scene.px_per_cm, region, rng)
        rgba = _resize(crop.rgba, factor)[: region.h, : region.w]  # trims a rounding pixel
        h, w = rgba.shape[:2]
        if min(h, w) < MIN_CROP_PX or not (rgba[..., 3] > 127).any():
            continue
        x = region.x + int(rng.integers(0, region.w - w + 1))
        y = region.y + int(rng.integers(0, region.h - h + 1))
        mask = placed_mask(canvas.shape, rgba, x, y)
        if any((it.mask & ~mask).sum() < MIN_VISIBLE * it.mask.sum() for it in items):
            continue
        paste(canvas, rgba, x, y)
        for earlier in items:
            earlier.mask &= ~mask
        items.append(PlacedItem(crop.label, mask, grams, crop.source))
    return relight(canvas, rng), items, scene.px_per_cm


def compose_dataset(
    crops: Sequence[FoodCrop],
    out_dir: str | Path,
    n_images: int,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    size: tuple[int, int] = (640, 480),
) -> CocoDataset:
    """Write n_images composed scenes to out_dir/images and return their dataset.

    Image i depends only on (seed, i), so a set can be extended or regenerated in part.
    """
    if not crops:
        raise ValueError("no food crops to compose from")
    if n_images < 1 or not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"need n_images >= 1 and kinds from {KINDS}, got {n_images}, {kinds}")
    images_dir = Path(out_dir) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    b = DatasetBuilder(image_root=images_dir.resolve(), source=SOURCE)
    b.ds.info.update(seed=seed, kinds=list(kinds), crops=len(crops))
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        kind = kinds[i % len(kinds)]
        img, items, ppcm = compose_image(crops, kind, size, rng)
        name = f"{kind}_{seed}_{i:05d}.jpg"
        cv2.imwrite(str(images_dir / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        iid = b.image(name, size[0], size[1], px_per_cm=ppcm, split_group=f"composed:{i}")
        _add_items(b, iid, items)
    return b.build()


def _add_items(b: DatasetBuilder, iid: int, items: list[PlacedItem]) -> None:
    """Annotations for the visible placed items of one image."""
    for it in items:
        full = int(it.mask.sum())
        if full == 0:
            continue
        b.annotation(iid, it.label, mask_bbox(it.mask),
                     segmentation=compress_rle(rle_encode(it.mask)), mask_source="composed",
                     area=float(full), grams=it.grams, object_id=it.source)


def compose_to_file(crops: Sequence[FoodCrop], out_dir: str | Path, n_images: int,
                    seed: int = 0, kinds: Sequence[str] = KINDS,
                    size: tuple[int, int] = (640, 480)) -> Path:
    """compose_dataset + save as out_dir/composed.json; returns the JSON path."""
    ds = compose_dataset(crops, out_dir, n_images, seed, kinds, size)
    return save(ds, Path(out_dir) / "composed.json")
