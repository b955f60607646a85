"""model.metrics against pycocotools' COCOeval, on the shipped model's real predictions.

The evaluator's figures are meant to be the field's: box AP@0.5 per class and its mean as
COCOeval computes them (iouThrs [0.5], area range "all", maxDets 100, 101-point
interpolation), mask IoU as COCOeval's segm IoU, and the class-agnostic food-region recall as
COCOeval's recall with useCats=0. Each is checked on the repo's fixture photos (a fresh
clone has them) and, where ../shared/data exists, on the whole held-out split: that check
lives in tests/model/test_shipped_metrics.py, which predicts the split once for its own
checks too.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.leave_one_source_out import drawn_outlines
from model import metrics
from model.data.coco import CocoDataset
from model.data.masks import annotation_mask
from model.evaluate import (
    detection_section,
    food_region_section,
    operating_point,
    predict_dataset,
)
from model.evaluate_common import EvalConfig
from model.infer import portion
from model.infer.menu_match import MatchConfig
from model.infer.runtime import PostConfig, Prediction, TrayModel, full_item_mask

mask_utils = pytest.importorskip("pycocotools.mask")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

# Same numbers from two codes: only float summation order may differ.
TOL = 1e-12
MAX_DETS = 100  # COCOeval's per image (and class) cap; the evaluator keeps <= 100 per image


def _rle(mask: np.ndarray) -> dict[str, Any]:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _coco_eval(ds: CocoDataset, preds: dict[int, Prediction], iou_type: str = "bbox",
               use_cats: bool = True, drop: Sequence[str] = ()) -> COCOeval:
    """COCOeval (evaluated and accumulated) of predictions against a dataset's boxes, or
    its drawn masks for segm; labels in `drop` are left out on both sides."""
    names = ds.category_names()
    cat_ids = {name: k + 1 for k, name in enumerate(sorted(set(names.values())))}
    gt: dict[str, Any] = {
        "images": [{"id": im.id, "width": im.width, "height": im.height} for im in ds.images],
        "categories": [{"id": i, "name": n} for n, i in cat_ids.items()], "annotations": []}
    for k, a in enumerate(ds.annotations):
        if names[a.category_id] in drop:
            continue
        im = next(i for i in ds.images if i.id == a.image_id)
        ann: dict[str, Any] = {"id": k + 1,  # COCOeval treats a matched id 0 as unmatched
                               "image_id": a.image_id, "category_id": cat_ids[names[a.category_id]],
                               "bbox": list(a.bbox), "iscrowd": 0}
        if iou_type == "segm":
            mask = annotation_mask(a, im.height, im.width)
            assert mask is not None
            ann["segmentation"], ann["area"] = _rle(mask), float(mask.sum())
        else:
            ann["area"] = float(a.bbox[2] * a.bbox[3])
        gt["annotations"].append(ann)
    dts = []
    for iid, pred in preds.items():
        assert len(pred.items) <= MAX_DETS
        for it in pred.items:
            if it.label in drop or (use_cats and it.label not in cat_ids):
                continue  # a class without ground truth: COCOeval skips it, so does mAP
            x0, y0, x1, y1 = it.box
            d: dict[str, Any] = {"image_id": iid,  # class-agnostic: any category will do
                                 "category_id": cat_ids[it.label] if use_cats else 1,
                                 "score": it.score, "bbox": [x0, y0, x1 - x0, y1 - y0]}
            if iou_type == "segm":
                d["segmentation"] = _rle(full_item_mask(it, (pred.width, pred.height)))
            dts.append(d)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dts) if dts else COCO()
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.params.maxDets = [MAX_DETS]
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
    return ev


def _coco_ap(ev: COCOeval) -> dict[str, float]:
    """AP@0.5 per category with ground truth (COCOeval's -1 marks none)."""
    names = {c["id"]: c["name"] for c in ev.cocoGt.dataset["categories"]}
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        prec = ev.eval["precision"][0, :, k, 0, 0]
        if (prec > -1).any():
            out[names[cat]] = float(np.mean(prec))
    return out


def _low(model: TrayModel, ds: CocoDataset) -> dict[int, Prediction]:
    """Predictions as the evaluator makes them for mAP (its low score threshold)."""
    cfg = EvalConfig()
    low = PostConfig(score_min=cfg.detection_score_min, max_items=MAX_DETS)
    return predict_dataset(model, ds, low, batch_size=cfg.batch_size)


def check_ap(ds: CocoDataset, preds: dict[int, Prediction]) -> tuple[float, float]:
    """The evaluator's per-class AP and mAP equal COCOeval's; (COCOeval mAP, all-point mAP)."""
    section = detection_section(ds, preds, EvalConfig())
    coco = _coco_ap(_coco_eval(ds, preds))
    assert section["interpolation"] == "coco101"
    ours = {name: c["ap"] for name, c in section["per_class"].items()}
    assert set(ours) == set(coco)
    for name in coco:
        assert ours[name] == pytest.approx(coco[name], abs=TOL), name
    coco_map = float(np.mean(list(coco.values())))
    assert section["map"] == pytest.approx(coco_map, abs=TOL)
    # The interpolation the evaluator used before (PASCAL VOC all-point), for the record.
    dets = [metrics.Detection(str(i), it.label, it.score, it.box)
            for i, p in preds.items() for it in p.items]
    names = ds.category_names()
    gts = [metrics.GroundTruth(str(a.image_id), names[a.category_id],
                               (a.bbox[0], a.bbox[1], a.bbox[0] + a.bbox[2], a.bbox[1] + a.bbox[3]))
           for a in ds.annotations]
    return coco_map, metrics.detection_ap(dets, gts, 0.5, "all_point").mean_ap


def check_food_regions(ds: CocoDataset, low: dict[int, Prediction]) -> None:
    """Class-agnostic recall and false regions equal COCOeval's with useCats=0."""
    post = PostConfig()
    preds = operating_point(low, post)
    ours = food_region_section(ds, preds, EvalConfig(), MatchConfig(), post)
    ev = _coco_eval(ds, preds, use_cats=False, drop=(portion.COIN_LABEL,))
    recall = float(ev.eval["recall"][0, 0, 0, 0])
    matched = sum(int((e["dtMatches"][0] > 0).sum()) for e in ev.evalImgs if e)
    n_dets = sum(len(e["dtIds"]) for e in ev.evalImgs if e)
    assert ours["annotated"] and ours["recall"] == pytest.approx(recall, abs=TOL)
    assert (ours["found"], ours["predicted"]) == (matched, n_dets)
    assert ours["false_regions"] == n_dets - matched


def test_box_ap_equals_cocoeval_on_fixture_photos(
    model_path: Path, mealtray_ds: CocoDataset, ecustfd_ds: CocoDataset
) -> None:
    model = TrayModel(model_path)
    for ds in (mealtray_ds, ecustfd_ds):
        preds = _low(model, ds)
        check_ap(ds, preds)
        check_food_regions(ds, preds)


def test_mask_iou_equals_cocoeval_segm_on_drawn_outlines(model_path: Path,
                                                         fixtures_dir: Path) -> None:
    """Every predicted-vs-drawn mask IoU (class-agnostic) is COCOeval's segm IoU."""
    model = TrayModel(model_path)
    pairs = 0
    for ds in drawn_outlines("ecustfd", fixtures_dir):
        preds = predict_dataset(model, ds, PostConfig())
        ev = _coco_eval(ds, preds, "segm", use_cats=False)
        for im in ds.images:
            names = ds.category_names()
            # COCOeval lists an image's ground truth category by category (ids by name here).
            anns = sorted((a for a in ds.annotations if a.image_id == im.id),
                          key=lambda a: names[a.category_id])
            gts = [annotation_mask(a, im.height, im.width) for a in anns]
            # COCOeval sorts detections by score, best first; so does the runtime.
            dets = [full_item_mask(it, (im.width, im.height)) for it in preds[im.id].items]
            ours = np.array([[metrics.mask_iou(d, g) for g in gts] for d in dets])
            theirs = np.asarray(ev.ious[(im.id, -1)])
            assert ours.shape == theirs.shape and ours.size
            assert np.abs(ours - theirs).max() <= TOL
            pairs += ours.size
    assert pairs >= 8
