"""The one canonical training format: COCO JSON extended with what nutrition needs.

Standard COCO keys (images, annotations, categories) plus, all optional:
- image: `px_per_cm`, `depth_file` (relative to image_root, like `file_name`),
  `meal_state` ("before"/"after"), `pair_id`, `split_group` (the unit a train/val split
  must never cut: a capture run, a physical object), `source` (importer name), `dish`
  (dish-level metadata such as total grams);
- annotation: `grams`, `mask_source` ("gt"/"pseudo"/"composed"/"model"; None when there is
  no mask), `object_id` (the physical object, e.g. ECUSTFD "apple001"), `original` (a
  service export's corrected item: the model's estimate before the user's correction);
- category: `food_id` (nutrition_db id; optional for coarse classes);
- top level: `image_root`, the folder `file_name` is relative to (itself relative to the
  JSON file, or absolute).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

MEAL_STATES = ("before", "after")
# "model": the served model's own mask, exported with a user-corrected item (serve exports);
# like "pseudo", a training target that metrics never score against.
MASK_SOURCES = ("gt", "pseudo", "composed", "model")
MealState = Literal["before", "after"]
MaskSource = Literal["gt", "pseudo", "composed", "model"]
# Polygons: list of flat [x0, y0, x1, y1, ...]; RLE: {"size": [h, w], "counts": str | list}.
Segmentation = list[list[float]] | dict[str, Any]
# Boxes may poke out of the image by a rounding pixel in real label files.
BOX_TOLERANCE_PX = 2.0


class CocoFormatError(ValueError):
    """A dataset file or object breaks the format; the message names the bad field."""


@dataclass
class Category:
    """One class: COCO id, name, and its nutrition_db food id when it has one."""

    id: int
    name: str
    food_id: str | None = None
    supercategory: str | None = None


@dataclass
class ImageRecord:
    """One image and its image-level nutrition fields."""

    id: int
    file_name: str
    width: int
    height: int
    px_per_cm: float | None = None
    depth_file: str | None = None
    meal_state: MealState | None = None
    pair_id: str | None = None
    split_group: str | None = None
    source: str | None = None
    dish: dict[str, Any] | None = None


@dataclass
class Annotation:
    """One object instance: box [x, y, w, h] in pixels, optional mask and grams."""

    id: int
    image_id: int
    category_id: int
    bbox: list[float]
    area: float = 0.0
    iscrowd: int = 0
    segmentation: Segmentation | None = None
    mask_source: MaskSource | None = None
    grams: float | None = None
    object_id: str | None = None
    # The model's estimate (food_id, label, grams, ...) of an item a user corrected.
    original: dict[str, Any] | None = None


@dataclass
class CocoDataset:
    """Images, annotations and categories, plus the folder the image files live in."""

    images: list[ImageRecord] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    categories: list[Category] = field(default_factory=list)
    image_root: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def image_path(self, image: ImageRecord) -> Path:
        """Absolute-or-relative path of an image file, resolved against image_root."""
        root = self.image_root if self.image_root is not None else Path(".")
        return root / image.file_name

    def annotations_by_image(self) -> dict[int, list[Annotation]]:
        """Annotations grouped by image id (every image present, possibly empty)."""
        out: dict[int, list[Annotation]] = {im.id: [] for im in self.images}
        for ann in self.annotations:
            out.setdefault(ann.image_id, []).append(ann)
        return out

    def category_names(self) -> dict[int, str]:
        """Category id -> name."""
        return {c.id: c.name for c in self.categories}

    def subset(self, image_ids: Iterable[int]) -> CocoDataset:
        """A dataset with only these images and their annotations (same categories)."""
        keep = set(image_ids)
        return CocoDataset(
            images=[im for im in self.images if im.id in keep],
            annotations=[a for a in self.annotations if a.image_id in keep],
            categories=list(self.categories),
            image_root=self.image_root,
            info=dict(self.info),
        )


def _drop_none(obj: Any) -> dict[str, Any]:
    """Dataclass -> dict without the optional fields that are unset."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


def to_dict(ds: CocoDataset, json_dir: Path | None = None) -> dict[str, Any]:
    """The JSON-ready dict; image_root is written relative to json_dir when possible."""
    out: dict[str, Any] = {"info": ds.info}
    if ds.image_root is not None:
        out["image_root"] = _relative_root(ds.image_root, json_dir)
    out["images"] = [_drop_none(im) for im in ds.images]
    out["annotations"] = [_drop_none(a) for a in ds.annotations]
    out["categories"] = [_drop_none(c) for c in ds.categories]
    return out


def _relative_root(root: Path, json_dir: Path | None) -> str:
    """Relative path from json_dir to root, so a dataset folder can move as a whole."""
    if json_dir is None:
        return str(root)
    try:
        return os.path.relpath(root.resolve(), json_dir.resolve())
    except ValueError:  # different drives on Windows
        return str(root.resolve())


def save(ds: CocoDataset, path: str | Path) -> Path:
    """Validate and write the dataset as JSON; returns the path."""
    path = Path(path)
    validate(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_dict(ds, json_dir=path.parent)
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return path


def load(path: str | Path) -> CocoDataset:
    """Read and validate a dataset JSON file; CocoFormatError names the bad field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CocoFormatError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise CocoFormatError(f"{path}: not valid JSON ({exc})") from exc
    try:
        return from_dict(data, json_dir=path.parent)
    except CocoFormatError as exc:
        raise CocoFormatError(f"{path}: {exc}") from exc


def from_dict(
    data: Any, json_dir: Path | None = None, allow_unknown_keys: bool = False
) -> CocoDataset:
    """Build and validate a dataset from parsed JSON.

    An unknown record key is an error (a misspelt `gram` would silently lose weights);
    allow_unknown_keys drops them instead, for files written by other tools.
    """
    if not isinstance(data, Mapping):
        raise CocoFormatError("top level: expected a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoFormatError(f"{key}: missing or not a list")
    root = data.get("image_root")
    if root is not None and not isinstance(root, str):
        raise CocoFormatError("image_root: expected a string")
    image_root = None if root is None else _resolve_root(root, json_dir)
    info = data.get("info") or {}
    if not isinstance(info, Mapping):
        raise CocoFormatError("info: expected an object")
    def build(cls: Any, key: str) -> list[Any]:
        return [_build(cls, d, f"{key}[{i}]", allow_unknown_keys)
                for i, d in enumerate(data[key])]

    ds = CocoDataset(
        images=build(ImageRecord, "images"),
        annotations=build(Annotation, "annotations"),
        categories=build(Category, "categories"),
        image_root=image_root,
        info=dict(info),
    )
    validate(ds)
    return ds


def _resolve_root(root: str, json_dir: Path | None) -> Path:
    """image_root as written, made absolute against the JSON file's folder."""
    p = Path(root)
    if p.is_absolute() or json_dir is None:
        return p
    return (json_dir / p).resolve()


_REQUIRED = {
    ImageRecord: ("id", "file_name", "width", "height"),
    Annotation: ("id", "image_id", "category_id", "bbox"),
    Category: ("id", "name"),
}


def _build(cls: Any, d: Any, where: str, allow_unknown_keys: bool) -> Any:
    """One record from a JSON object; missing and (unless allowed) unknown keys reported."""
    if not isinstance(d, Mapping):
        raise CocoFormatError(f"{where}: expected an object")
    for key in _REQUIRED[cls]:
        if key not in d:
            raise CocoFormatError(f"{where}.{key}: missing")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown and not allow_unknown_keys:
        raise CocoFormatError(f"{where}.{unknown[0]}: unknown field (known: {sorted(names)})")
    return cls(**{k: v for k, v in d.items() if k in names})


def validate(ds: CocoDataset) -> None:
    """Check types, ranges and references; raise CocoFormatError naming the field."""
    cat_ids = _check_unique([c.id for c in ds.categories], "categories")
    for i, c in enumerate(ds.categories):
        _check_category(c, f"categories[{i}]")
    _check_unique([c.name for c in ds.categories], "categories", what="name")
    sizes: dict[int, tuple[int, int]] = {}
    _check_unique([im.id for im in ds.images], "images")
    for i, im in enumerate(ds.images):
        _check_image(im, f"images[{i}]")
        sizes[im.id] = (im.width, im.height)
    _check_unique([a.id for a in ds.annotations], "annotations")
    for i, a in enumerate(ds.annotations):
        where = f"annotations[{i}]"
        if a.image_id not in sizes:
            raise CocoFormatError(f"{where}.image_id: no image with id {a.image_id!r}")
        if a.category_id not in cat_ids:
            raise CocoFormatError(f"{where}.category_id: no category with id {a.category_id!r}")
        _check_annotation(a, sizes[a.image_id], where)


def _check_unique(ids: list[Any], where: str, what: str = "id") -> set[Any]:
    """Ids must be unique; returns them as a set."""
    seen: set[Any] = set()
    for i, v in enumerate(ids):
        if what == "id" and (not isinstance(v, int) or isinstance(v, bool)):
            raise CocoFormatError(f"{where}[{i}].id: expected an integer, got {v!r}")
        if v in seen:
            raise CocoFormatError(f"{where}[{i}].{what}: duplicate {v!r}")
        seen.add(v)
    return seen


def _is_num(v: Any) -> bool:
    """A finite int or float (bool excluded)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_positive(v: Any, where: str) -> None:
    """None or a positive number."""
    if v is not None and (not _is_num(v) or v <= 0):
        raise CocoFormatError(f"{where}: expected a positive number, got {v!r}")


def _check_opt_str(v: Any, where: str) -> None:
    """None or a non-empty string."""
    if v is not None and not (isinstance(v, str) and v):
        raise CocoFormatError(f"{where}: expected a non-empty string, got {v!r}")


def _check_category(c: Category, where: str) -> None:
    """Field checks of one category."""
    if not isinstance(c.name, str) or not c.name:
        raise CocoFormatError(f"{where}.name: expected a non-empty string, got {c.name!r}")
    _check_opt_str(c.food_id, f"{where}.food_id")
    _check_opt_str(c.supercategory, f"{where}.supercategory")


def _check_image(im: ImageRecord, where: str) -> None:
    """Field checks of one image record."""
    if not isinstance(im.file_name, str) or not im.file_name:
        raise CocoFormatError(f"{where}.file_name: expected a non-empty string")
    for key in ("width", "height"):
        v = getattr(im, key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise CocoFormatError(f"{where}.{key}: expected a positive integer, got {v!r}")
    _check_positive(im.px_per_cm, f"{where}.px_per_cm")
    if im.meal_state is not None and im.meal_state not in MEAL_STATES:
        raise CocoFormatError(
            f"{where}.meal_state: expected one of {MEAL_STATES}, got {im.meal_state!r}"
        )
    for key in ("depth_file", "pair_id", "split_group", "source"):
        _check_opt_str(getattr(im, key), f"{where}.{key}")
    if im.dish is not None and not isinstance(im.dish, dict):
        raise CocoFormatError(f"{where}.dish: expected an object")


def _check_annotation(a: Annotation, size: tuple[int, int], where: str) -> None:
    """Field checks of one annotation against its image size."""
    box = a.bbox
    if not isinstance(box, list) or len(box) != 4 or not all(_is_num(v) for v in box):
        raise CocoFormatError(f"{where}.bbox: expected [x, y, w, h] numbers, got {box!r}")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise CocoFormatError(f"{where}.bbox: width and height must be > 0, got {box!r}")
    width, height = size
    tol = BOX_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise CocoFormatError(f"{where}.bbox: {box!r} lies outside the {width}x{height} image")
    if not _is_num(a.area) or a.area < 0:
        raise CocoFormatError(f"{where}.area: expected a number >= 0, got {a.area!r}")
    if a.iscrowd not in (0, 1):
        raise CocoFormatError(f"{where}.iscrowd: expected 0 or 1, got {a.iscrowd!r}")
    _check_positive(a.grams, f"{where}.grams")
    _check_opt_str(a.object_id, f"{where}.object_id")
    if a.original is not None and not isinstance(a.original, dict):
        raise CocoFormatError(f"{where}.original: expected an object, got {a.original!r}")
    _check_mask_fields(a, size, where)


def _check_mask_fields(a: Annotation, size: tuple[int, int], where: str) -> None:
    """A segmentation needs a mask_source and a well-formed polygon or RLE."""
    if a.segmentation is None:
        if a.mask_source is not None:
            raise CocoFormatError(f"{where}.mask_source: set but there is no segmentation")
        return
    if a.mask_source not in MASK_SOURCES:
        raise CocoFormatError(
            f"{where}.mask_source: expected one of {MASK_SOURCES} with a segmentation, "
            f"got {a.mask_source!r}"
        )
    seg = a.segmentation
    if isinstance(seg, dict):
        if list(seg.get("size", [])) != [size[1], size[0]]:
            raise CocoFormatError(
                f"{where}.segmentation.size: expected [{size[1]}, {size[0]}] (h, w), "
                f"got {seg.get('size')!r}"
            )
        if not isinstance(seg.get("counts"), str | list):
            raise CocoFormatError(f"{where}.segmentation.counts: expected a string or list")
        return
    if not isinstance(seg, list) or not seg:
        raise CocoFormatError(f"{where}.segmentation: expected polygons or an RLE object")
    for j, poly in enumerate(seg):
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            raise CocoFormatError(
                f"{where}.segmentation[{j}]: a polygon needs >= 3 (x, y) pairs, flat"
            )
        if not all(_is_num(v) for v in poly):
            raise CocoFormatError(f"{where}.segmentation[{j}]: non-numeric coordinate")


def renumber(ds: CocoDataset) -> CocoDataset:
    """Image and annotation ids 1..n in current order (ids stay consistent)."""
    image_map = {im.id: i for i, im in enumerate(ds.images, start=1)}
    images = [replace(im, id=image_map[im.id]) for im in ds.images]
    anns = [
        replace(a, id=i, image_id=image_map[a.image_id])
        for i, a in enumerate(ds.annotations, start=1)
    ]
    return replace(ds, images=images, annotations=anns)
