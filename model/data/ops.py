"""Dataset operations: remap categories to the one label map, merge datasets."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from model.data.coco import (
    Category,
    CocoDataset,
    CocoFormatError,
    ImageRecord,
    renumber,
    validate,
)


def remap_categories(
    ds: CocoDataset,
    labels: Sequence[str],
    food_ids: Mapping[str, str | None] | None = None,
    rename: Mapping[str, str] | None = None,
    drop_unknown: bool = False,
) -> CocoDataset:
    """Categories become `labels` in order (ids 1..n, id - 1 = class index).

    rename maps a source name to a label first; names that are not labels raise
    CocoFormatError unless drop_unknown, which drops their annotations.
    """
    index = {name: i + 1 for i, name in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels must be unique")
    rename = rename or {}
    old_names = ds.category_names()
    new_id: dict[int, int] = {}
    unknown = []
    for cid, name in old_names.items():
        target = rename.get(name, name)
        if target in index:
            new_id[cid] = index[target]
        else:
            unknown.append(name)
    if unknown and not drop_unknown:
        raise CocoFormatError(
            f"categories {sorted(unknown)} are not in the label map; pass a rename or "
            f"drop_unknown (labels: {', '.join(labels)})"
        )
    food_ids = food_ids or {}
    cats = [Category(id=index[n], name=n, food_id=food_ids.get(n)) for n in labels]
    anns = [replace(a, category_id=new_id[a.category_id])
            for a in ds.annotations if a.category_id in new_id]
    out = replace(ds, categories=cats, annotations=anns)
    validate(out)
    return out


def remap_to_label_map(
    ds: CocoDataset, rename: Mapping[str, str] | None = None, drop_unknown: bool = False
) -> CocoDataset:
    """Remap to nutrition_db's label map (the default model's classes, with food ids)."""
    from nutrition_db import label_map  # the one label map; imported late to stay light

    lm = label_map()
    food_ids = {label: lm.food_id(label) for label in lm.labels}
    return remap_categories(ds, lm.labels, food_ids, rename=rename, drop_unknown=drop_unknown)


def merge(datasets: Sequence[CocoDataset]) -> CocoDataset:
    """One dataset from several: categories unified by name, ids renumbered.

    Image paths are rewritten relative to the common folder of all image roots, so
    the merged JSON points at the same files.
    """
    if not datasets:
        raise ValueError("nothing to merge")
    roots = [(d.image_root or Path(".")).resolve() for d in datasets]
    common = Path(os.path.commonpath([str(r) for r in roots]))
    cats = _merged_categories(datasets)
    by_name = {c.name: c.id for c in cats}
    out = CocoDataset(categories=cats, image_root=common,
                      info={"merged": [d.info for d in datasets]})
    next_image = 0
    for d, root in zip(datasets, roots, strict=True):
        prefix = root.relative_to(common)
        names = d.category_names()
        image_map = {im.id: next_image + k for k, im in enumerate(d.images, start=1)}
        next_image += len(d.images)
        out.images += [_moved(im, image_map[im.id], prefix) for im in d.images]
        out.annotations += [replace(a, image_id=image_map[a.image_id],
                                    category_id=by_name[names[a.category_id]])
                            for a in d.annotations]
    out = renumber(out)
    validate(out)
    return out


def _moved(im: ImageRecord, new_id: int, prefix: Path) -> ImageRecord:
    """The image under a new id with its file paths (image, depth) below prefix."""
    depth = None if im.depth_file is None else (prefix / im.depth_file).as_posix()
    return replace(im, id=new_id, file_name=(prefix / im.file_name).as_posix(),
                   depth_file=depth)


def _merged_categories(datasets: Sequence[CocoDataset]) -> list[Category]:
    """Categories by name in first-seen order; conflicting food ids are an error."""
    cats: dict[str, Category] = {}
    for d in datasets:
        for c in d.categories:
            seen = cats.get(c.name)
            if seen is None:
                cats[c.name] = Category(id=len(cats) + 1, name=c.name, food_id=c.food_id,
                                        supercategory=c.supercategory)
            elif c.food_id is not None and seen.food_id not in (None, c.food_id):
                raise CocoFormatError(
                    f"category {c.name!r}: food_id {c.food_id!r} conflicts with {seen.food_id!r}"
                )
            elif seen.food_id is None and c.food_id is not None:
                cats[c.name] = replace(seen, food_id=c.food_id)
    return list(cats.values())
