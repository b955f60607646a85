"""Evaluate an ONNX tray model on held-out data: detection, portions, masks, menu mode, calibration.

`python -m model.evaluate --model PATH.onnx [--data ../shared/data] --out DIR` writes
`DIR/metrics.json` (machine readable; shipped as model/artifacts/traylens.metrics.json)
and `DIR/report.md`. Everything runs through `model.infer.runtime` (the service's code path)
and the metric definitions in `model.metrics`; nothing here imports torch.

Sections (each present when its data set is given):
- detection: box AP per class and mAP@0.5 on held-out mealtray capture runs (and ECUSTFD
  objects), as COCOeval computes them (101-point interpolation; model.metrics), with the
  detections' ECE;
- grams: ECUSTFD held-out objects; the scale comes from the coin the model detects, and
  for diagnosis also from the annotated coin box (same px/cm formula as the runtime);
- masks: mean mask IoU against ground-truth or composed masks only, never pseudo masks;
- food_regions: class-agnostic, at the service's operating point (PostConfig().score_min):
  recall at IoU 0.5 of every annotated food region whatever its label (the coin left out),
  false regions per photo, the share of found regions named with a wrong class as the
  service names them (model.infer.naming: class probability >= MatchConfig.min_class_score,
  and the file's open-set check where it has one), and mask IoU against real (drawn)
  outlines where the set has any (model.metrics.food_regions), or where outlines were drawn
  by hand on its photos (`--outlines`, data/outlines/<set>/: the held-out ones count);
- menu: menu-mode identification accuracy, k enrolled examples per dish, menus of m dishes
  drawn at random (seeded) from held-out foods (model.evaluate_menu).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from model import metrics
from model.data.coco import MASK_SOURCES, Annotation, CocoDataset, CocoFormatError, ImageRecord
from model.data.compose import compose_dataset, extract_crops
from model.data.importers.common import SourceFormatError
from model.data.importers.ecustfd import import_ecustfd
from model.data.importers.labelme import import_labelme, read_labelme
from model.data.importers.mealtray import import_mealtray
from model.data.masks import annotation_mask
from model.data.pseudo import ellipse_mask
from model.data.splits import DEFAULT_SEED, DEFAULT_VAL_FRACTION, group_of, training_split
from model.evaluate_common import (
    EvalConfig,
    EvaluationError,
    best_match,
    calibration,
    fmt,
    xyxy,
)
from model.evaluate_menu import embed_annotations, menu_markdown, menu_section
from model.infer import naming, portion
from model.infer.images import load_image
from model.infer.menu_match import MatchConfig
from model.infer.runtime import (
    Item,
    ModelFileError,
    PostConfig,
    Prediction,
    TrayModel,
    full_item_mask,
)

# Pseudo (GrabCut from a box) and model (the served model's prediction) masks are guesses:
# scoring against them would flatter the model.
EVALUABLE_MASK_SOURCES = tuple(s for s in MASK_SOURCES if s not in ("pseudo", "model"))
# Outlines a person drew (LabelMe polygons, mask PNGs, plain COCO): the food-region mask IoU
# is measured against these only, not against composed trays' pasted crops.
REAL_MASK_SOURCES = ("gt",)
# Outlines drawn by hand on held-out shared photos, one folder per source (docs/DATA.md).
OUTLINES_DIR = Path("data/outlines")
SCHEMA_VERSION = 1
# Crops per label for the composed trays: enough variety, bounded pseudo-mask (GrabCut) time.
COMPOSE_CROPS_PER_LABEL = 6


def _batches(images: Sequence[ImageRecord], size: int) -> Iterator[Sequence[ImageRecord]]:
    """Consecutive slices of at most size images."""
    for start in range(0, len(images), size):
        yield images[start : start + size]


def predict_dataset(
    model: TrayModel,
    ds: CocoDataset,
    post: PostConfig,
    px_per_cm: dict[int, float] | None = None,
    batch_size: int = 4,
) -> dict[int, Prediction]:
    """Run the model over every image of a dataset; image id -> Prediction."""
    out: dict[int, Prediction] = {}
    for batch in _batches(ds.images, batch_size):
        # Decoded as the service decodes (reduced to the input size): what kiosks get.
        imgs = [load_image(ds.image_path(im), fit=model.meta.input_size) for im in batch]
        scales = [px_per_cm.get(im.id) if px_per_cm else None for im in batch]
        for im, pred in zip(batch, model.predict(imgs, px_per_cm=scales, cfg=post), strict=True):
            out[im.id] = pred
    return out


def detection_section(
    ds: CocoDataset, preds: dict[int, Prediction], cfg: EvalConfig
) -> dict[str, Any]:
    """Per-class AP, mAP and detection-score ECE of one data set's predictions."""
    gts, dets = _ground_truth(ds), _detections(preds)
    report = metrics.detection_ap(dets, gts, cfg.iou_threshold, "coco101")
    tp = metrics.match_detections(dets, gts, cfg.iou_threshold)
    ece = calibration([d.score for d in dets], tp.tolist(), cfg.ece_bins)
    groups = {str(im.id): group_of(im) for im in ds.images}
    n_groups = len(set(groups.values()))
    ci = (metrics.bootstrap_map_ci95(dets, gts, groups, cfg.iou_threshold, seed=cfg.seed,
                                     interpolation=report.interpolation)
          if n_groups > 1 else None)
    return {
        "images": len(ds.images),
        "iou_threshold": report.iou_threshold,
        "interpolation": report.interpolation,
        "map": report.mean_ap,
        # Whole capture runs (or objects) resampled: how far the mAP moves with the photos.
        "map_ci95": list(ci) if ci else None,
        "map_ci_groups": n_groups,
        "per_class": {k: asdict(v) for k, v in report.per_class.items()},
        "score_min": cfg.detection_score_min,
        "calibration": ece,
    }


def _best_match(box: metrics.BoxT, items: Sequence[Item], iou: float) -> Item | None:
    """The food item (not the coin) whose box overlaps the annotation most, if >= iou."""
    return best_match(box, [it for it in items if it.label != portion.COIN_LABEL], iou)


def annotated_coin_scale(ds: CocoDataset) -> dict[int, float]:
    """Image id -> px/cm from the annotated coin box, by the runtime's own formula."""
    names = ds.category_names()
    coins: dict[int, list[Annotation]] = defaultdict(list)
    for a in ds.annotations:
        if names[a.category_id] == portion.COIN_LABEL:
            coins[a.image_id].append(a)
    return {iid: portion.coin_px_per_cm(xyxy(c[0])) for iid, c in coins.items() if len(c) == 1}


def grams_section(
    ds: CocoDataset, preds: dict[int, Prediction], iou: float,
    match: MatchConfig | None = None, open_set: naming.OpenSet | None = None,
) -> dict[str, Any]:
    """Grams MAE / MAE% over annotated foods the model found and could weigh; coverage too.

    Beside the overall figure (whatever label the found item got): the foods the service
    names right (`named_right`: the annotation's label, and named as model.infer.naming
    names with `match`'s class-probability floor and the file's open-set check), and all
    weighed foods not named right counted as a miss, 0 g of the right food
    (`misnamed_as_miss`): what a diary gets, since a misnamed food's grams go to another
    food's nutrients and an unidentified one's to none until a person names it; and the
    foods the service names (`named_misnamed_as_miss`: an unidentified food goes to review,
    left out; a misnamed one counts 0 g). `misnamed` and `unidentified` count the two ways a
    weighed food is not named right.
    """
    min_class_score = (match or MatchConfig()).min_class_score
    pairs: list[tuple[float, float]] = []
    right: list[tuple[float, float]] = []
    as_miss: list[tuple[float, float]] = []
    named_as_miss: list[tuple[float, float]] = []
    per_food: dict[str, list[tuple[float, float]]] = defaultdict(list)
    names = ds.category_names()
    n_total = n_unmatched = n_no_grams = n_misnamed = n_unidentified = 0
    for a in ds.annotations:
        if a.grams is None:
            continue
        n_total += 1
        item = _best_match(xyxy(a), preds[a.image_id].items, iou)
        if item is None:
            n_unmatched += 1
        elif item.grams is None:
            n_no_grams += 1  # no scale found (coin missed) or no mask
        else:
            pairs.append((item.grams, a.grams))
            per_food[names[a.category_id]].append((item.grams, a.grams))
            named = naming.is_named(item.class_scores, item.label_index, item.embedding,
                                    min_class_score, open_set)
            named_right = named and item.label == names[a.category_id]
            n_unidentified += not named
            n_misnamed += named and not named_right
            if named_right:
                right.append((item.grams, a.grams))
            as_miss.append((item.grams if named_right else 0.0, a.grams))
            if named:
                named_as_miss.append((item.grams if named_right else 0.0, a.grams))
    out: dict[str, Any] = {
        "annotated": n_total,
        "not_detected": n_unmatched,
        "no_grams": n_no_grams,
        "misnamed": n_misnamed,
        "unidentified": n_unidentified,
        "coverage": len(pairs) / n_total if n_total else None,
    }
    out["overall"] = _grams(pairs)
    out["named_right"] = _grams(right)
    out["misnamed_as_miss"] = _grams(as_miss)
    out["named_misnamed_as_miss"] = _grams(named_as_miss)
    out["per_food"] = {k: _grams(v) for k, v in sorted(per_food.items())}
    return out


def _grams(pairs: Sequence[tuple[float, float]]) -> dict[str, Any] | None:
    """GramsError as a dict, None without pairs."""
    if not pairs:
        return None
    pred, true = zip(*pairs, strict=True)
    return asdict(metrics.grams_error(pred, true))


def mask_section(ds: CocoDataset, preds: dict[int, Prediction]) -> dict[str, Any] | None:
    """Mean IoU over ground-truth/composed masks (greedy one-to-one); None without any."""
    by_image = ds.annotations_by_image()
    ious: list[float] = []
    for im in ds.images:
        gts = [
            m
            for a in by_image[im.id]
            if a.mask_source in EVALUABLE_MASK_SOURCES
            and (m := annotation_mask(a, im.height, im.width)) is not None
        ]
        if not gts:
            continue
        items = [it for it in preds[im.id].items if it.label != portion.COIN_LABEL]
        pred_masks = [full_item_mask(it, (im.width, im.height)) for it in items]
        ious.extend(metrics.matched_mask_ious(pred_masks, gts))
    if not ious:
        return None
    return {
        "mean_iou": float(np.mean(ious)),
        "n_masks": len(ious),
        "mask_sources": list(EVALUABLE_MASK_SOURCES),
    }


def operating_point(preds: dict[int, Prediction], post: PostConfig) -> dict[int, Prediction]:
    """What the service reports of low-threshold predictions: items with score >=
    post.score_min, at most post.max_items. Equal to predicting with `post` (peaks and
    class-agnostic NMS keep the same higher-scoring items; tests/model/test_evaluate.py)."""
    return {iid: replace(p, items=[it for it in p.items if it.score >= post.score_min]
                         [: post.max_items])
            for iid, p in preds.items()}


def food_region_section(
    ds: CocoDataset, preds: dict[int, Prediction], cfg: EvalConfig, match: MatchConfig,
    post: PostConfig, open_set: naming.OpenSet | None = None,
) -> dict[str, Any]:
    """Class-agnostic food-region figures of predictions made at the operating point `post`,
    each found region named as the service names it (model.infer.naming: the file's
    open-set check where it has one)."""
    items = [it for pred in preds.values() for it in pred.items]
    report = metrics.food_regions(
        _detections(preds),
        [naming.unnamed_reason(it.class_scores, it.label_index, it.embedding,
                               match.min_class_score, open_set) for it in items],
        _ground_truth(ds), [str(im.id) for im in ds.images], cfg.iou_threshold,
        non_food=(portion.COIN_LABEL,))
    return {**asdict(report), "score_min": post.score_min, "peaks": post.peaks,
            "min_class_score": match.min_class_score, "open_set": open_set is not None,
            "real_masks": real_mask_section(ds, preds)}


# False regions per photo at which region_curve_section reads the recall.
CURVE_FALSE_PER_PHOTO = (0.1, 0.25, 0.5, 1.0)


def region_curve_section(
    ds: CocoDataset, preds: dict[int, Prediction], cfg: EvalConfig,
    bounds: Sequence[float] = CURVE_FALSE_PER_PHOTO,
) -> dict[str, Any]:
    """Class-agnostic food-region recall at matched false regions per photo, from predictions
    down to the evaluator's low threshold (model.metrics.region_curve): for comparing models,
    not an operating point (the threshold is read off this very set)."""
    curve = metrics.region_curve(_detections(preds), _ground_truth(ds),
                                 [str(im.id) for im in ds.images], cfg.iou_threshold,
                                 non_food=(portion.COIN_LABEL,))
    points = []
    for bound in bounds:
        recall, threshold = curve.at_false(bound)
        points.append({"false_per_photo": bound, "recall": recall, "threshold": threshold})
    return {"score_min": cfg.detection_score_min, "points": points}


def _detections(preds: dict[int, Prediction]) -> list[metrics.Detection]:
    """Every predicted item as a metrics.Detection (image ids as strings)."""
    return [metrics.Detection(str(iid), it.label, it.score, it.box)
            for iid, pred in preds.items() for it in pred.items]


def _ground_truth(ds: CocoDataset) -> list[metrics.GroundTruth]:
    """Every annotated box of a set as a metrics.GroundTruth."""
    names = ds.category_names()
    return [metrics.GroundTruth(str(a.image_id), names[a.category_id], xyxy(a))
            for a in ds.annotations]


def real_mask_section(ds: CocoDataset, preds: dict[int, Prediction]) -> dict[str, Any] | None:
    """Mean IoU of the food items' masks against drawn food outlines (greedy one to one,
    unmatched outlines 0), overall and per outline label; beside it, the same matching with
    each item's mask replaced by the ellipse inscribed in its box (what the masks add over
    the box). None when the set has no drawn outline."""
    ious: dict[str, list[float]] = {"model": [], "box_ellipse": []}
    labels: list[str] = []
    photos = 0
    drawn = food_outlines(ds)
    for im in ds.images:
        outlines = drawn[im.id]
        if not outlines:
            continue
        photos += 1
        gts = [m for _, m in outlines]
        labels += [label for label, _ in outlines]
        items = [it for it in preds[im.id].items if it.label != portion.COIN_LABEL]
        ious["model"] += metrics.matched_mask_ious(
            [full_item_mask(it, (im.width, im.height)) for it in items], gts)
        ious["box_ellipse"] += metrics.matched_mask_ious(
            [ellipse_mask(im.height, im.width, _xywh(it.box)) for it in items], gts)
    if not labels:
        return None
    per_label = defaultdict(list)
    for label, iou in zip(labels, ious["model"], strict=True):
        per_label[label].append(iou)
    return {"mean_iou": float(np.mean(ious["model"])), "n_masks": len(labels), "photos": photos,
            "box_ellipse_mean_iou": float(np.mean(ious["box_ellipse"])),
            "per_label": {k: {"mean_iou": float(np.mean(v)), "n": len(v)}
                          for k, v in sorted(per_label.items())},
            "mask_sources": list(REAL_MASK_SOURCES)}


def food_outlines(ds: CocoDataset) -> dict[int, list[tuple[str, np.ndarray]]]:
    """Image id -> (label, full-size bool mask) of each food outline a person drew on it (the
    coin, a scale reference, is no food)."""
    names = ds.category_names()
    by_image = ds.annotations_by_image()
    return {im.id: [(names[a.category_id], m) for a in by_image[im.id]
                    if a.mask_source in REAL_MASK_SOURCES
                    and names[a.category_id] != portion.COIN_LABEL
                    and (m := annotation_mask(a, im.height, im.width)) is not None]
            for im in ds.images}


def _xywh(box: tuple[float, float, float, float]) -> list[float]:
    """An (x0, y0, x1, y1) box as COCO's [x, y, w, h]."""
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def drawn_outline_set(outlines_dir: Path, source: str) -> CocoDataset | None:
    """The outlines a person drew on one source's shared photos (LabelMe files in
    `outlines_dir/source`, their imagePath into the shared data; docs/DATA.md); None where
    there are none. EvaluationError when a file's photo is missing."""
    folder = outlines_dir / source
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return None
    missing = [f.name for f in files if not read_labelme(f)[0].is_file()]
    if missing:
        raise EvaluationError(f"{folder}: the photos of {len(missing)} outline files are "
                              f"missing (is the shared data beside the repo?), e.g. {missing[0]}")
    return import_labelme(folder)


def drawn_outline_section(model: TrayModel, outlines: CocoDataset, held: CocoDataset,
                          cfg: EvalConfig | None = None) -> dict[str, Any] | None:
    """Mask IoU at the service's operating point (real_mask_section) on the drawn outlines
    of photos in `held` (the model's held-out split); outlines on photos it trained on are
    counted and left out. None when no outlined photo is held out."""
    cfg = cfg or EvalConfig()
    held_names = {Path(im.file_name).name for im in held.images}
    keep = [im.id for im in outlines.images if Path(im.file_name).name in held_names]
    part = outlines.subset(keep)
    section = real_mask_section(part, predict_dataset(model, part, served(cfg),
                                                      batch_size=cfg.batch_size))
    if section is None:
        return None
    return {**section, "photos_not_held_out": len(outlines.images) - len(keep)}


def evaluate(
    model: TrayModel,
    sets: dict[str, CocoDataset],
    cfg: EvalConfig | None = None,
    match: MatchConfig | None = None,
    outlines: dict[str, CocoDataset] | None = None,
) -> dict[str, Any]:
    """All sections for the given held-out sets ("mealtray", "ecustfd", "composed");
    `outlines`: per set, outlines a person drew on its source's photos (drawn_outline_set)."""
    cfg = cfg or EvalConfig()
    match = match or MatchConfig()
    unknown = set(sets) - {"mealtray", "ecustfd", "composed"}
    if unknown:
        raise EvaluationError(f"unknown data sets {sorted(unknown)}")
    low = PostConfig(score_min=cfg.detection_score_min, max_items=100)
    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "model": {"version": model.meta.version, "fingerprint": model.meta.fingerprint,
                  "file": model.path.name},
        "config": asdict(cfg),
        "data": {name: len(ds.images) for name, ds in sets.items()},
        "detection": {},
        "masks": {},
        "food_regions": {},
    }
    for name, ds in sets.items():
        preds = predict_dataset(model, ds, low, batch_size=cfg.batch_size)
        result["detection"][name] = detection_section(ds, preds, cfg)
        if (masks := mask_section(ds, preds)) is not None:
            result["masks"][name] = masks
        if name != "composed":  # real photos only: the trays are pasted crops
            result["food_regions"][name] = {
                **food_region_section(ds, operating_point(preds, PostConfig()), cfg, match,
                                      PostConfig(), model.open_set),
                "curve": region_curve_section(ds, preds, cfg)}
            if outlines and name in outlines:
                result["food_regions"][name]["drawn_outlines"] = drawn_outline_section(
                    model, outlines[name], ds, cfg)
    if "ecustfd" in sets:
        result["grams"] = _grams_both_scales(model, sets["ecustfd"], cfg, match)
        samples = embed_annotations(model, sets["ecustfd"])
        try:
            result["menu"] = menu_section(samples, cfg, match)
        except EvaluationError as exc:  # too few held-out objects: say so, keep the rest
            result["menu"] = {"not_evaluated": str(exc)}
    result["headline"] = headline(result)
    return result


def headline(result: dict[str, Any]) -> dict[str, float | None]:
    """The few figures the issue sets targets for, flat (for the ONNX metadata and the card)."""

    def get(*keys: str) -> Any:
        node: Any = result
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        return node

    map_ci = get("detection", "mealtray", "map_ci95") or [None, None]
    return {
        "mealtray_map50": get("detection", "mealtray", "map"),
        "mealtray_map50_ci_low": map_ci[0],
        "mealtray_map50_ci_high": map_ci[1],
        "mealtray_detection_ece": get("detection", "mealtray", "calibration", "ece"),
        "ecustfd_grams_mae_pct": get("grams", "detected_coin", "overall", "mae_pct"),
        "ecustfd_grams_coverage": get("grams", "detected_coin", "coverage"),
        "ecustfd_grams_mae_pct_annotated_coin": get("grams", "annotated_coin", "overall",
                                                    "mae_pct"),
        "composed_mask_iou": get("masks", "composed", "mean_iou"),
        "menu_accuracy": get("menu", "accuracy", "mean"),
        "menu_accuracy_ci_low": get("menu", "accuracy", "ci_low"),
        "menu_ece": get("menu", get("menu", "match", "method") or "", "calibration", "ece"),
    }


def served(cfg: EvalConfig) -> PostConfig:
    """The service's post-processing, masks refined when the evaluation says so."""
    return PostConfig(refine_masks=cfg.refine_masks)


def _grams_both_scales(model: TrayModel, ds: CocoDataset, cfg: EvalConfig,
                       match: MatchConfig) -> dict[str, Any]:
    """Grams with the model's own coin scale (the product) and the annotated coin (diagnosis)."""
    post = served(cfg)  # what the service runs
    detected = predict_dataset(model, ds, post, batch_size=cfg.batch_size)
    given = predict_dataset(model, ds, post, annotated_coin_scale(ds), cfg.batch_size)
    return {
        "detected_coin": grams_section(ds, detected, cfg.iou_threshold, match, model.open_set),
        "annotated_coin": grams_section(ds, given, cfg.iou_threshold, match, model.open_set),
    }


def split_params(model: TrayModel) -> tuple[float, int]:
    """(val_fraction, seed) the model was trained with (its metadata), else the data defaults."""
    training = model.meta.training
    return (float(training.get("val_fraction", DEFAULT_VAL_FRACTION)),
            int(training.get("seed", DEFAULT_SEED)))


def held_out_sets(data_dir: Path, val_fraction: float, seed: int) -> dict[str, CocoDataset]:
    """Validation parts of mealtray (whole capture runs) and ECUSTFD (whole objects).

    The same call as training's split (model.training.sources.split_sources): group-preserving,
    stratified by label, so these images were never trained on.
    """
    tray_dir = data_dir / "images" / "mealtray" / "labeled"
    ecust_dir = data_dir / "images" / "ecustfd"
    for folder in (tray_dir, ecust_dir):
        if not folder.is_dir():
            raise EvaluationError(f"{folder}: not found (is --data the shared data folder?)")
    full = {"mealtray": import_mealtray(tray_dir), "ecustfd": import_ecustfd(ecust_dir)}
    return {name: _val_part(ds, val_fraction, seed) for name, ds in full.items()}


def _val_part(ds: CocoDataset, val_fraction: float, seed: int) -> CocoDataset:
    """The held-out side of training's own split (model.data.splits.training_split)."""
    return training_split(ds, val_fraction, seed)[1]


def composed_held_out(
    sets: dict[str, CocoDataset], out_dir: Path, n_images: int, seed: int
) -> CocoDataset:
    """Trays composed only from held-out crops: exact masks, so mask IoU can be measured."""
    crops = [c for ds in sets.values()
             for c in extract_crops(ds, per_label=COMPOSE_CROPS_PER_LABEL, seed=seed)]
    return compose_dataset(crops, out_dir, n_images, seed)


INTERPOLATION_TEXT = {"coco101": "COCOeval's 101-point", "all_point": "all-point (VOC)"}


def markdown_report(result: dict[str, Any]) -> str:
    """A human-readable summary of the JSON result."""
    lines = [f"# Evaluation of {result['model']['file']} (version {result['model']['version']})",
             "", f"Held-out images: {result['data']}", "", "| headline | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in result["headline"].items()]
    lines.append("")
    for name, det in result["detection"].items():
        interp = INTERPOLATION_TEXT.get(det["interpolation"], det["interpolation"])
        lines += [f"## Detection: {name} ({det['images']} images)", "",
                  f"mAP@{det['iou_threshold']} ({interp} interpolation): "
                  f"**{fmt(det['map'])}**{_ci_text(det)}; "
                  f"detection ECE {fmt(det['calibration']['ece'])}", "",
                  "| class | AP | GT boxes | detections | TP |", "|---|---|---|---|---|"]
        lines += [f"| {c} | {fmt(v['ap'])} | {v['n_gt']} | {v['n_det']} | {v['n_tp']} |"
                  for c, v in det["per_class"].items()]
        lines.append("")
    for name, m in result["masks"].items():
        lines += [f"## Masks: {name}", "", f"Mean mask IoU {fmt(m['mean_iou'])} over "
                  f"{m['n_masks']} masks ({', '.join(m['mask_sources'])})", ""]
    lines += food_regions_markdown(result.get("food_regions") or {})
    if "grams" in result:
        lines += ["## Grams (ECUSTFD held-out objects)", "",
                  "| scale from | MAE g | MAE % | weighed | not detected | no grams (no scale) |",
                  "|---|---|---|---|---|---|"]
        for scale, g in result["grams"].items():
            o = g["overall"] or {}
            lines.append(f"| {scale.replace('_', ' ')} | {fmt(o.get('mae_g'))} | "
                         f"{fmt(o.get('mae_pct'))} | {o.get('n', 0)} of {g['annotated']} | "
                         f"{g['not_detected']} | {g['no_grams']} |")
        lines.append("")
        named = {scale: g for scale, g in result["grams"].items() if "misnamed_as_miss" in g}
        if named:  # evaluations from 2026-12-06 on
            lines += ["| scale from | MAE %, foods named right | MAE %, foods named (a "
                      "misnamed one as 0 g; unidentified ones left to review) | MAE %, a food "
                      "not named right counted as 0 g | misnamed | unidentified |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {scale.replace('_', ' ')} | "
                      f"{fmt((g['named_right'] or {}).get('mae_pct'))} | "
                      f"{fmt((g.get('named_misnamed_as_miss') or {}).get('mae_pct'))} | "
                      f"{fmt((g['misnamed_as_miss'] or {}).get('mae_pct'))} | "
                      f"{g.get('misnamed', '')} | {g.get('unidentified', '')} |"
                      for scale, g in named.items()]
            lines.append("")
    if "menu" in result:
        lines += menu_markdown(result["menu"])
    return "\n".join(lines) + "\n"


def food_regions_markdown(sections: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows of the class-agnostic food-region sections (none: no lines)."""
    if not sections:
        return []
    first = next(iter(sections.values()))
    lines = [f"## Food regions, class-agnostic (IoU {first['iou_threshold']}, score >= "
             f"{first['score_min']}, named at class probability >= "
             f"{first['min_class_score']}"
             f"{' and the open-set check' if first.get('open_set') else ''})", "",
             "| set | photos | food regions | recall | false regions / photo | "
             "named wrong (of found) | unidentified | mask IoU, drawn outlines |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in sections.items():
        masks = s.get("drawn_outlines") or s["real_masks"]
        iou = f"{fmt(masks['mean_iou'])} ({masks['n_masks']})" if masks else "-"
        lines.append(f"| {name} | {s['photos']} | {s['annotated']} | {fmt(s['recall'])} | "
                     f"{fmt(s['false_per_photo'])} | {fmt(s['named_wrong_share'], True)} "
                     f"({s['named_wrong']}) | {s['unidentified']} | {iou} |")
    for name, s in sections.items():
        if lost := s.get("unidentified_right_per_label"):
            kept = s.get("named_right_per_label", {})
            worst = sorted(lost, key=lambda k: (-lost[k], k))
            lines += ["", f"{name}: found regions of the right class left unidentified, per "
                      "label (of those found with it): " + ", ".join(
                          f"{k} {lost[k]} of {lost[k] + kept.get(k, 0)}" for k in worst)]
    curves = {name: s["curve"] for name, s in sections.items() if "curve" in s}
    if curves:
        bounds = [p["false_per_photo"] for p in next(iter(curves.values()))["points"]]
        lines += ["", "Recall at a matched rate of false regions per photo (the score threshold "
                  "read off each set: for comparing models, not an operating point):", "",
                  "| set | " + " | ".join(f"<= {b} false / photo" for b in bounds) + " |",
                  "|---|" + "---|" * len(bounds)]
        for name, c in curves.items():
            lines.append(f"| {name} | " + " | ".join(
                f"{fmt(p['recall'])} (score >= {fmt(p['threshold'])})" for p in c["points"])
                + " |")
    return [*lines, "", *drawn_outlines_markdown(sections)]


def drawn_outlines_markdown(sections: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows of the drawn-outline mask IoU per set and label (none: no lines)."""
    drawn = {name: d for name, s in sections.items() if (d := s.get("drawn_outlines"))}
    if not drawn:
        return []
    lines = ["Mask IoU against food outlines drawn by hand on held-out photos (the food, not "
             "its plate; docs/DATA.md), beside the ellipse inscribed in each found box:", "",
             "| set | photos | outlines | mask IoU | box ellipse | per label (IoU, n) |",
             "|---|---|---|---|---|---|"]
    for name, d in drawn.items():
        labels = ", ".join(f"{k} {fmt(v['mean_iou'])} ({v['n']})"
                           for k, v in d["per_label"].items())
        lines.append(f"| {name} | {d['photos']} | {d['n_masks']} | {fmt(d['mean_iou'])} | "
                     f"{fmt(d['box_ellipse_mean_iou'])} | {labels} |")
    return [*lines, ""]


def _ci_text(det: dict[str, Any]) -> str:
    """' (95% CI a - b over n groups resampled)', or '' without an interval."""
    ci = det.get("map_ci95")
    if not ci:
        return ""
    return f" (95% CI {fmt(ci[0])} - {fmt(ci[1])}, {det['map_ci_groups']} groups resampled)"


def write_outputs(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write metrics.json and report.md into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "metrics.json", out_dir / "report.md"
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown_report(result), encoding="utf-8")
    return json_path, md_path


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="ONNX model file")
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="shared data folder")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json, report.md")
    d = EvalConfig()
    p.add_argument("--k", type=int, default=d.k_enrol, help="enrolled examples per dish")
    p.add_argument("--m", type=int, default=d.menu_size, help="dishes per menu")
    p.add_argument("--menus", type=int, default=d.n_menus, help="random menus to draw")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--composed", type=int, default=40,
                   help="trays to compose from held-out crops for mask IoU (0: none)")
    p.add_argument("--outlines", type=Path, default=OUTLINES_DIR,
                   help="outlines drawn on the shared photos, one folder per source")
    p.add_argument("--refine-masks", action="store_true",
                   help="grams and drawn-outline masks with PostConfig(refine_masks=True)")
    p.add_argument("--val-fraction", type=float, help="default: the model's training split")
    p.add_argument("--split-seed", type=int, help="default: the model's split seed (`seed`)")
    return p.parse_args(argv)


def _load_sets(args: argparse.Namespace, model: TrayModel) -> dict[str, CocoDataset]:
    """Held-out sets with the model's own split (unless overridden), plus composed trays."""
    val_fraction, seed = split_params(model)
    sets = held_out_sets(
        args.data,
        seed=seed if args.split_seed is None else args.split_seed,
        val_fraction=val_fraction if args.val_fraction is None else args.val_fraction,
    )
    if args.composed > 0:
        sets["composed"] = composed_held_out(sets, args.out / "composed", args.composed, args.seed)
    return sets


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: evaluate, write the two files, print where they are."""
    args = _parse(argv)
    cfg = EvalConfig(k_enrol=args.k, menu_size=args.m, n_menus=args.menus, seed=args.seed,
                     refine_masks=args.refine_masks)
    try:
        model = TrayModel(args.model)
        sets = _load_sets(args, model)
        outlines = {name: o for name in sets
                    if (o := drawn_outline_set(args.outlines, name)) is not None}
        result = evaluate(model, sets, cfg, outlines=outlines)
    except (EvaluationError, ModelFileError, SourceFormatError, CocoFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json_path, md_path = write_outputs(result, args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
