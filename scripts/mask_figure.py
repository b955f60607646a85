"""Draw a photo's masks beside the food outlines drawn on it: the picture in docs/MODEL_CARD.md.

    python scripts/mask_figure.py OUTLINES.json OUT.png [--model FILE] [--width 640]

OUTLINES.json is a LabelMe file of drawn food outlines (data/outlines/<source>/*.json); the
picture shows its photo with the drawn outlines (green), the model's own masks (yellow) and
the masks refined to the food (PostConfig(refine_masks=True), magenta), each found item once.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.data.importers.labelme import import_labelme  # noqa: E402
from model.evaluate import food_outlines  # noqa: E402
from model.infer.images import load_image  # noqa: E402
from model.infer.portion import COIN_LABEL  # noqa: E402
from model.infer.runtime import PostConfig, TrayModel, full_item_mask  # noqa: E402

MODEL = REPO / "model" / "artifacts" / "traylens.onnx"
# BGR colours of the three kinds of outline, and their line widths at the photo's size.
DRAWN, MODEL_MASK, REFINED = (80, 220, 60), (0, 220, 255), (230, 60, 230)


def _contours(canvas: np.ndarray, masks: Sequence[np.ndarray], colour: tuple[int, int, int],
              width: int) -> None:
    """Draw each mask's outer contours on the canvas."""
    for m in masks:
        found, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL,
                                    cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, found, -1, colour, width, cv2.LINE_AA)


def figure(outlines: Path, model: TrayModel, width: int) -> np.ndarray:
    """The picture (BGR) of the one photo the LabelMe file outlines."""
    ds = import_labelme(outlines)
    (im,) = ds.images
    drawn = [m for _, m in food_outlines(ds)[im.id]]
    img = load_image(ds.image_path(im))
    canvas = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2BGR)
    line = max(2, round(im.width / 400))
    for post, colour in ((PostConfig(), MODEL_MASK), (PostConfig(refine_masks=True), REFINED)):
        items = [it for it in model.predict([img], cfg=post)[0].items if it.label != COIN_LABEL]
        _contours(canvas, [full_item_mask(it, img.size) for it in items], colour, line)
    _contours(canvas, drawn, DRAWN, line)
    return cv2.resize(canvas, (width, round(width * im.height / im.width)),
                      interpolation=cv2.INTER_AREA)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, draw, write the PNG."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outlines", type=Path, help="a LabelMe file of drawn food outlines")
    ap.add_argument("out", type=Path, help="the PNG to write")
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--width", type=int, default=640)
    args = ap.parse_args(argv)
    picture = figure(args.outlines, TrayModel(args.model), args.width)
    if not cv2.imwrite(str(args.out), picture):
        print(f"error: could not write {args.out}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
