"""Run a TrayLens ONNX model on images and print what it finds.

python -m model.predict --model model/artifacts/traylens.onnx IMAGE... [--px-per-cm X] [--json]
    [--embeddings]

Per image: {"image", "width", "height", "no_food_found", "items": [{"box", "label", "score",
"polygon", "grams", "grams_range", "embedding"}]}; boxes and polygons in original image pixels.
no_food_found is true when no item is food (none at all, or only the reference coin, a scale
and not a food); the text output then says "no food found" instead of leaving a bare 0.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from model.infer.images import ImageError, load_image
from model.infer.portion import COIN_LABEL
from model.infer.runtime import Item, ModelFileError, Prediction, TrayModel

DEFAULT_MODEL = "model/artifacts/traylens.onnx"


def item_record(item: Item, embeddings: bool) -> dict[str, Any]:
    """One item in the CLI's JSON schema."""
    return {
        "box": [round(v, 1) for v in item.box],
        "label": item.label,
        "score": round(item.score, 4),
        "polygon": item.polygon,
        "grams": None if item.grams is None else round(item.grams, 1),
        "grams_range": None if item.grams_range is None
        else [round(item.grams_range[0], 1), round(item.grams_range[1], 1)],
        "embedding": [round(float(v), 5) for v in item.embedding] if embeddings else None,
    }


def image_record(path: str, pred: Prediction, embeddings: bool) -> dict[str, Any]:
    """One image in the CLI's JSON schema."""
    return {
        "image": path,
        "width": pred.width,
        "height": pred.height,
        "no_food_found": not any(i.label != COIN_LABEL for i in pred.items),
        "items": [item_record(i, embeddings) for i in pred.items],
    }


def text_lines(rec: dict[str, Any]) -> list[str]:
    """Human-readable summary of one image record."""
    n = len(rec["items"])
    lines = [f"{rec['image']} ({rec['width']}x{rec['height']}): {n} item{'' if n == 1 else 's'}"]
    for it in rec["items"]:
        grams = "" if it["grams"] is None else (
            f"  {it['grams']:.0f} g [{it['grams_range'][0]:.0f}-{it['grams_range'][1]:.0f}]")
        box = ", ".join(f"{v:.0f}" for v in it["box"])
        lines.append(f"  {it['label']:<18} {it['score']:.2f}  box [{box}]{grams}")
    if rec["no_food_found"]:
        coin = " (the coin is a scale reference, not food)" if rec["items"] else ""
        lines.append(f"  no food found{coin}: nothing to weigh, not a meal without nutrients")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n")[0])
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"ONNX file (default {DEFAULT_MODEL})")
    p.add_argument("--px-per-cm", type=float, help="known scale for every image (else the coin)")
    p.add_argument("--json", action="store_true", help="one JSON list instead of text")
    p.add_argument("--embeddings", action="store_true", help="include item embeddings")
    a = p.parse_args(argv)
    if a.px_per_cm is not None and not a.px_per_cm > 0:
        p.error("--px-per-cm must be > 0")
    try:
        model = TrayModel(a.model)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records, failed = [], 0
    for path in a.images:
        try:
            img = load_image(path, fit=model.meta.input_size)
            pred = model.predict([img], px_per_cm=[a.px_per_cm])[0]
        except ImageError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        records.append(image_record(path, pred, a.embeddings))
    if a.json:
        print(json.dumps(records, ensure_ascii=False))
    else:
        for rec in records:
            print("\n".join(text_lines(rec)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
