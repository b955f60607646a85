"""`python -m model.data`: import, merge, split, compose, stats — thin over the library."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from model.data.backgrounds import KINDS
from model.data.coco import CocoDataset, CocoFormatError, load, save
from model.data.importers.coco_plain import import_coco
from model.data.importers.common import SourceFormatError
from model.data.importers.ecustfd import import_ecustfd
from model.data.importers.labelme import import_labelme
from model.data.importers.maskpng import import_mask_png
from model.data.importers.mealtray import import_mealtray
from model.data.importers.nutrition5k import import_nutrition5k
from model.data.ops import merge, remap_to_label_map
from model.data.pseudo import add_pseudo_masks
from model.data.splits import DEFAULT_SEED, DEFAULT_VAL_FRACTION, label_strata, train_val_split

IMPORTERS: dict[str, Callable[[argparse.Namespace], CocoDataset]] = {
    "mealtray": lambda a: import_mealtray(a.src, a.names),
    "ecustfd": lambda a: import_ecustfd(a.src, strict=a.strict),
    "nutrition5k": lambda a: import_nutrition5k(a.src, _need(a.metadata, "--metadata")),
    "labelme": lambda a: import_labelme(a.src),
    "maskpng": lambda a: import_mask_png(a.src, _need(a.masks, "--masks"),
                                         _need(a.classes, "--classes")),
    "coco": lambda a: import_coco(a.src, a.image_root),
}


def _need(value: Any, flag: str) -> Any:
    """The value of a flag this format requires; ValueError naming the flag."""
    if value is None:
        raise ValueError(f"{flag} is required for this format")
    return value


def stats(ds: CocoDataset) -> dict[str, Any]:
    """Counts for docs and sanity checks: images, annotations per class, groups, grams."""
    names = ds.category_names()
    return {
        "images": len(ds.images),
        "annotations": len(ds.annotations),
        "per_class": dict(sorted(Counter(names[a.category_id] for a in ds.annotations).items())),
        "split_groups": len({im.split_group for im in ds.images}),
        "with_grams": sum(a.grams is not None for a in ds.annotations),
        "with_px_per_cm": sum(im.px_per_cm is not None for im in ds.images),
        "mask_source": dict(Counter(str(a.mask_source) for a in ds.annotations)),
    }


def cmd_import(a: argparse.Namespace) -> None:
    """Import SRC in a format, optionally add pseudo masks and remap, save OUT."""
    ds = IMPORTERS[a.format](a)
    if a.pseudo_masks:
        ds = add_pseudo_masks(ds)
    if a.to_label_map:
        ds = remap_to_label_map(ds, drop_unknown=a.drop_unknown)
    save(ds, a.out)
    print(json.dumps({"out": str(a.out), **stats(ds)}, ensure_ascii=False))


def cmd_merge(a: argparse.Namespace) -> None:
    """Merge datasets, optionally remap, save."""
    ds = merge([load(p) for p in a.inputs])
    if a.to_label_map:
        ds = remap_to_label_map(ds, drop_unknown=a.drop_unknown)
    save(ds, a.out)
    print(json.dumps({"out": str(a.out), **stats(ds)}, ensure_ascii=False))


def cmd_split(a: argparse.Namespace) -> None:
    """Split a dataset into train and val files."""
    ds = load(a.input)
    strata = label_strata(ds) if a.stratify else None
    train, val = train_val_split(ds, a.val_fraction, a.seed, strata)
    save(train, a.train)
    save(val, a.val)
    print(json.dumps({"train": stats(train), "val": stats(val)}, ensure_ascii=False))


def cmd_compose(a: argparse.Namespace) -> None:
    """Cut crops from the sources and write a composed dataset."""
    from model.data.compose import compose_to_file, extract_crops  # OpenCV-heavy, load late

    crops = []
    for src in a.source:
        crops += extract_crops(load(src), a.per_label, a.seed, a.require_grams)
    w, _, h = a.size.partition("x")
    path = compose_to_file(crops, a.out, a.n, a.seed, a.kinds, (int(w), int(h)))
    print(json.dumps({"out": str(path), "crops": len(crops), **stats(load(path))}))


def cmd_stats(a: argparse.Namespace) -> None:
    """Print the counts of a dataset as JSON."""
    print(json.dumps(stats(load(a.input)), ensure_ascii=False, indent=1))


def _add_remap(p: argparse.ArgumentParser) -> None:
    """The --to-label-map / --drop-unknown flags."""
    p.add_argument("--to-label-map", action="store_true",
                   help="remap categories to nutrition_db's label map (class order, food ids)")
    p.add_argument("--drop-unknown", action="store_true",
                   help="with --to-label-map: drop classes the label map lacks")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and --help)."""
    p = argparse.ArgumentParser(prog="python -m model.data", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import a source format into the canonical COCO JSON")
    imp.add_argument("format", choices=sorted(IMPORTERS))
    imp.add_argument("src", type=Path, help="source folder or file (maskpng: images folder)")
    imp.add_argument("out", type=Path)
    imp.add_argument("--names", type=Path, help="mealtray: obj.names (default: found)")
    imp.add_argument("--metadata", type=Path, nargs="+", help="nutrition5k: dish CSVs")
    imp.add_argument("--masks", type=Path, help="maskpng: folder of class-id PNGs")
    imp.add_argument("--classes", type=Path, help="maskpng: classes file")
    imp.add_argument("--image-root", type=Path, help="coco: image folder (default: its own)")
    imp.add_argument("--strict", action="store_true",
                     help="ecustfd: raise on a bad image instead of dropping it (recorded)")
    imp.add_argument("--pseudo-masks", action="store_true",
                     help="GrabCut masks for box-only annotations (mask_source=pseudo)")
    _add_remap(imp)
    imp.set_defaults(func=cmd_import)
    mrg = sub.add_parser("merge", help="merge datasets (categories unified by name)")
    mrg.add_argument("inputs", type=Path, nargs="+")
    mrg.add_argument("--out", type=Path, required=True)
    _add_remap(mrg)
    mrg.set_defaults(func=cmd_merge)
    spl = sub.add_parser("split", help="seeded train/val split keeping split groups whole")
    spl.add_argument("input", type=Path)
    spl.add_argument("--train", type=Path, required=True)
    spl.add_argument("--val", type=Path, required=True)
    spl.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION)
    spl.add_argument("--seed", type=int, default=DEFAULT_SEED)
    spl.add_argument("--stratify", action="store_true",
                     help="split each group's main label on its own (ECUSTFD foods)")
    spl.set_defaults(func=cmd_split)
    _add_compose(sub)
    st = sub.add_parser("stats", help="print counts of a dataset")
    st.add_argument("input", type=Path)
    st.set_defaults(func=cmd_stats)
    return p


def _add_compose(sub: Any) -> None:
    """The compose subcommand."""
    cp = sub.add_parser("compose", help="compose trays from real food crops")
    cp.add_argument("--source", type=Path, nargs="+", required=True,
                    help="datasets to cut crops from (use the TRAIN side only)")
    cp.add_argument("--out", type=Path, required=True, help="output folder")
    cp.add_argument("--n", type=int, default=100, help="number of images")
    cp.add_argument("--seed", type=int, default=0)
    cp.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    cp.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    cp.add_argument("--per-label", type=int, default=None, help="max crops per label")
    cp.add_argument("--require-grams", action="store_true", help="only crops with grams")
    cp.set_defaults(func=cmd_compose)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input exits with status 2 and a one-line reason."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CocoFormatError, SourceFormatError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
