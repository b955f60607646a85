"""model.evaluate: known-answer checks of each section on real fixture annotations, the whole
run with the dev/shipped ONNX model on fixture photos, and the CLI's outputs and errors."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import model.evaluate as evaluate_module
from model.data.coco import CocoDataset
from model.data.importers.labelme import import_labelme
from model.data.masks import annotation_mask
from model.data.splits import group_of
from model.evaluate import (
    composed_held_out,
    detection_section,
    drawn_outline_section,
    drawn_outline_set,
    evaluate,
    food_region_section,
    grams_section,
    main,
    markdown_report,
    mask_section,
    operating_point,
    predict_dataset,
    real_mask_section,
    region_curve_section,
    write_outputs,
)
from model.evaluate_common import EvalConfig, EvaluationError
from model.infer import naming
from model.infer.menu_match import MatchConfig
from model.infer.runtime import Item, PostConfig, Prediction, TrayModel

REPO = Path(__file__).resolve().parents[2]
def _item(box: tuple[float, float, float, float], label: str, score: float, **kw: object) -> Item:
    """A prediction item with the fields the evaluator reads."""
    return Item(box=box, label=label, label_index=0, score=score, class_scores=np.ones(1),
                mask=kw.pop("mask", None), polygon=None, area_px=0.0,  # type: ignore[arg-type]
                embedding=np.ones(4, np.float32), **kw)  # type: ignore[arg-type]


def _oracle(ds: CocoDataset, shift: float = 0.0) -> dict[int, Prediction]:
    """Predictions that repeat the annotations (boxes moved right by `shift` pixels)."""
    names = ds.category_names()
    preds = {im.id: Prediction(im.width, im.height, []) for im in ds.images}
    for a in ds.annotations:
        x, y, w, h = a.bbox
        preds[a.image_id].items.append(
            _item((x + shift, y, x + w + shift, y + h), names[a.category_id], 0.9, grams=a.grams)
        )
    return preds


def test_detection_section_known_answers(mealtray_ds: CocoDataset) -> None:
    cfg = EvalConfig()
    exact = detection_section(mealtray_ds, _oracle(mealtray_ds), cfg)
    # Every annotation predicted exactly: every class AP 1, mAP 1, and all detections correct
    # at confidence 0.9 -> ECE = |1.0 - 0.9| = 0.1.
    assert exact["map"] == pytest.approx(1.0)
    n_gt = sum(c["n_gt"] for c in exact["per_class"].values())
    assert n_gt == len(mealtray_ds.annotations) == 25  # label rows: 2+2+3+3+3+4+4+4 = 25
    assert exact["calibration"]["ece"] == pytest.approx(0.1)
    # A box shifted by its full width never overlaps its annotation: every AP is 0.
    wide = max(a.bbox[2] for a in mealtray_ds.annotations)
    assert detection_section(mealtray_ds, _oracle(mealtray_ds, wide + 1), cfg)["map"] == 0.0


def test_grams_section_known_answers(ecustfd_ds: CocoDataset) -> None:
    preds = _oracle(ecustfd_ds)
    for pred in preds.values():
        for it in pred.items:
            it.grams = it.grams * 1.1 if it.grams is not None else None  # every food +10%
    weighed = [a for a in ecustfd_ds.annotations if a.grams is not None]
    result = grams_section(ecustfd_ds, preds, 0.5)
    # |1.1 g - g| / g = 10% for every food; MAE in grams = 0.1 x mean true weight.
    assert result["overall"]["mae_pct"] == pytest.approx(10.0)
    assert result["overall"]["mae_g"] == pytest.approx(0.1 * np.mean([a.grams for a in weighed]))
    assert result["coverage"] == 1.0 and result["annotated"] == len(weighed)
    assert result["named_right"] == result["misnamed_as_miss"] == result["overall"]
    # Name the first weighed food's item wrongly: it leaves the named-right figure, and
    # counts as 0 g (100% off) in the misnamed-as-miss one.
    first = next(it for pred in preds.values() for it in pred.items if it.grams is not None)
    first.label = "not-" + first.label
    misnamed = grams_section(ecustfd_ds, preds, 0.5)
    n = len(weighed)
    assert misnamed["overall"] == result["overall"]
    assert misnamed["named_right"]["n"] == n - 1
    assert misnamed["named_right"]["mae_pct"] == pytest.approx(10.0)
    assert misnamed["misnamed_as_miss"]["n"] == n
    assert misnamed["misnamed_as_miss"]["mae_pct"] == pytest.approx((10.0 * (n - 1) + 100) / n)
    assert (misnamed["misnamed"], misnamed["unidentified"]) == (1, 0)
    assert misnamed["named_misnamed_as_miss"] == misnamed["misnamed_as_miss"]
    # A food the service leaves unidentified is not named right either: under the class
    # probability floor, or refused by an open-set check whose only prototype is another
    # direction than the items' embeddings (cosine 0 < 0.5).
    first.label = first.label.removeprefix("not-")
    first.class_scores = np.array([0.4])
    low = grams_section(ecustfd_ds, preds, 0.5)
    assert (low["misnamed"], low["unidentified"]) == (0, 1)
    assert low["misnamed_as_miss"] == misnamed["misnamed_as_miss"]
    assert low["named_right"] == misnamed["named_right"]
    # ...but it goes to review, out of the figure over the foods the service named.
    assert low["named_misnamed_as_miss"] == misnamed["named_right"]
    first.class_scores = np.ones(1)
    strict = naming.OpenSet(prototypes=np.array([[1.0, -1.0, 0.0, 0.0]], np.float32) / np.sqrt(2),
                            min_cos=np.array([0.5], np.float32), regions=(1,), quantile=0.05)
    refused = grams_section(ecustfd_ds, preds, 0.5, open_set=strict)
    assert (refused["misnamed"], refused["unidentified"]) == (0, n)
    assert refused["named_right"] is None and refused["named_misnamed_as_miss"] is None
    assert refused["misnamed_as_miss"]["mae_pct"] == pytest.approx(100.0)
    assert refused["overall"] == result["overall"]
    # Without grams on the items the foods are found but not weighed.
    for pred in preds.values():
        for it in pred.items:
            it.grams = None
    empty = grams_section(ecustfd_ds, preds, 0.5)
    assert empty["no_grams"] == len(weighed) and empty["overall"] is None


def test_mask_section_scores_real_masks_only(mealtray_ds: CocoDataset) -> None:
    # Give the first image's annotations polygon masks: the first a real ("gt") mask, the
    # second a "pseudo" one that must be ignored.
    im = mealtray_ds.images[0]
    anns = [a for a in mealtray_ds.annotations if a.image_id == im.id][:2]
    polys = []
    for a in anns:
        x, y, w, h = a.bbox
        polys.append([x, y, x + w, y, x + w / 2, y + h])  # a triangle inside the box
    ds = replace(
        mealtray_ds.subset([im.id]),
        annotations=[replace(anns[0], segmentation=[polys[0]], mask_source="gt"),
                     replace(anns[1], segmentation=[polys[1]], mask_source="pseudo")],
    )
    gt = annotation_mask(ds.annotations[0], im.height, im.width)
    assert gt is not None
    ys, xs = np.nonzero(gt)
    crop = gt[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    preds = {im.id: Prediction(im.width, im.height, [_item(box, "Plate", 0.9, mask=crop)])}
    result = mask_section(ds, preds)
    assert result is not None
    # The crop placed back at its box is exactly the ground truth: IoU 1 over 1 real mask.
    assert result["n_masks"] == 1 and result["mean_iou"] == pytest.approx(1.0)
    assert result["mask_sources"] == ["gt", "composed"]
    # No prediction: that mask counts with IoU 0.
    none = mask_section(ds, {im.id: Prediction(im.width, im.height, [])})
    assert none is not None and none["mean_iou"] == 0.0


def test_food_region_section_known_answers(ecustfd_ds: CocoDataset) -> None:
    # Every annotation predicted exactly, the coin as the coin: every food region found,
    # none false, none named wrong (each item's own label has probability 1).
    exact = food_region_section(ecustfd_ds, _oracle(ecustfd_ds), EvalConfig(), MatchConfig(),
                                PostConfig())
    names = ecustfd_ds.category_names()
    foods = sum(names[a.category_id] != "coin" for a in ecustfd_ds.annotations)
    assert (exact["annotated"], exact["found"], exact["recall"]) == (foods, foods, 1.0)
    assert exact["false_regions"] == 0 and exact["named_wrong"] == 0
    assert exact["named_right"] == foods and exact["score_min"] == 0.25
    assert exact["real_masks"] is None  # ECUSTFD's boxes have no drawn outline


def test_operating_point_equals_predicting_at_it(model_path: Path,
                                                 mealtray_ds: CocoDataset) -> None:
    # Cutting the evaluator's low-threshold run at the service's threshold gives the items
    # the service itself gets.
    model = TrayModel(model_path)
    low = predict_dataset(model, mealtray_ds, PostConfig(score_min=0.05, max_items=100))
    served = predict_dataset(model, mealtray_ds, PostConfig())
    cut = operating_point(low, PostConfig())
    for iid, pred in served.items():
        assert [(it.label, it.box, it.score) for it in cut[iid].items] == [
            (it.label, it.box, it.score) for it in pred.items]


def test_region_curve_section_meets_the_operating_point(model_path: Path,
                                                        mealtray_ds: CocoDataset) -> None:
    # Read at the service's threshold's own rate of false regions, the curve of the
    # low-threshold run gives at least the recall the service gets; read at a rate below
    # it, no more.
    model, cfg = TrayModel(model_path), EvalConfig()
    low = predict_dataset(model, mealtray_ds, PostConfig(score_min=0.05, max_items=100))
    served = food_region_section(mealtray_ds, operating_point(low, PostConfig()), cfg,
                                 MatchConfig(), PostConfig())
    rate = served["false_per_photo"]
    curve = region_curve_section(mealtray_ds, low, cfg, bounds=(rate, rate / 2))
    at_rate, below = curve["points"]
    assert curve["score_min"] == 0.05 and at_rate["false_per_photo"] == rate
    assert at_rate["recall"] >= served["recall"] > 0
    assert below["recall"] <= at_rate["recall"]


def test_real_mask_section_drawn_outlines_only(model_path: Path, fixtures_dir: Path) -> None:
    # The LabelMe fixture: apple, orange and coin drawn by hand; the coin is not food.
    drawn = import_labelme(fixtures_dir / "labelme")
    preds = predict_dataset(TrayModel(model_path), drawn, PostConfig())
    masks = real_mask_section(drawn, preds)
    assert masks is not None and masks["n_masks"] == 2 and masks["mask_sources"] == ["gt"]
    assert 0.5 < masks["mean_iou"] <= 1.0  # the shipped model outlines both fruits


def test_evaluate_fixture_photos_with_model(
    model_path: Path, mealtray_ds: CocoDataset, ecustfd_ds: CocoDataset, tmp_path: Path
) -> None:
    model = TrayModel(model_path)
    cfg = EvalConfig(menu_size=2, k_enrol=1, n_menus=5)
    result = evaluate(model, {"mealtray": mealtray_ds, "ecustfd": ecustfd_ds}, cfg)
    det = result["detection"]["mealtray"]
    assert det["images"] == len(mealtray_ds.images)
    aps = [c["ap"] for c in det["per_class"].values()]
    assert det["map"] == pytest.approx(np.mean(aps)) and all(0 <= ap <= 1 for ap in aps)
    for scale in ("detected_coin", "annotated_coin"):
        g = result["grams"][scale]
        assert g["annotated"] == sum(a.grams is not None for a in ecustfd_ds.annotations)
        weighed = (g["overall"] or {}).get("n", 0)
        assert g["not_detected"] + g["no_grams"] + weighed == g["annotated"]
    assert "menu" in result
    head = result["headline"]
    assert head["mealtray_map50"] == det["map"]
    groups = {group_of(im) for im in mealtray_ds.images}
    if len(groups) > 1:  # capture runs resampled
        assert det["map_ci_groups"] == len(groups)
        assert head["mealtray_map50_ci_low"] <= det["map"] <= head["mealtray_map50_ci_high"]
    assert head["composed_mask_iou"] is None  # no composed trays in this run
    json_path, md_path = write_outputs(result, tmp_path / "eval")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(result))
    assert md_path.read_text() == markdown_report(result)
    assert "## Detection: mealtray" in md_path.read_text()
    regions = result["food_regions"]
    assert set(regions) == {"mealtray", "ecustfd"}
    assert regions["mealtray"]["annotated"] == len(mealtray_ds.annotations)
    assert "## Food regions, class-agnostic" in md_path.read_text()
    # Right names kept and lost, per label: they add up to the totals, and the report lists
    # a set's losses where it has any.
    for name, s in regions.items():
        assert sum(s["named_right_per_label"].values()) == s["named_right"]
        lost = s["unidentified_right_per_label"]
        assert sum(lost.values()) == sum(s["unidentified_right_by"].values())
        line = f"{name}: found regions of the right class left unidentified"
        assert (line in md_path.read_text()) == bool(lost)
    # The recall at matched rates of false regions, for comparing models, beside it.
    points = regions["mealtray"]["curve"]["points"]
    assert [p["false_per_photo"] for p in points] == [0.1, 0.25, 0.5, 1.0]
    assert [p["recall"] for p in points] == sorted(p["recall"] for p in points)
    assert "| mealtray | " in md_path.read_text().split("Recall at a matched rate")[1]


def test_composed_trays_give_mask_iou(
    model_path: Path, ecustfd_ds: CocoDataset, tmp_path: Path
) -> None:
    # Two real ECUSTFD photos give the crops (pseudo masks); the composed trays' masks are
    # exact ("composed"), so the model's masks are scored against them.
    source = {"ecustfd": ecustfd_ds.subset([im.id for im in ecustfd_ds.images[:2]])}
    composed = composed_held_out(source, tmp_path / "composed", n_images=2, seed=0)
    assert {a.mask_source for a in composed.annotations} == {"composed"}
    result = evaluate(TrayModel(model_path), {"composed": composed}, EvalConfig())
    masks = result["masks"]["composed"]
    assert masks["n_masks"] == len(composed.annotations)
    assert 0.0 <= masks["mean_iou"] <= 1.0
    assert "grams" not in result and "menu" not in result


def test_cli_writes_reports_and_refuses_bad_input(
    model_path: Path, fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data" / "images"
    data.mkdir(parents=True)
    for name in ("mealtray", "ecustfd"):
        (data / name).symlink_to(fixtures_dir / name)
    out = tmp_path / "out"
    args = ["--model", str(model_path), "--data", str(data.parent), "--out", str(out),
            "--val-fraction", "0.5", "--m", "2", "--k", "1", "--menus", "3", "--composed", "0"]
    assert main(args) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert set(result["detection"]) == {"mealtray", "ecustfd"}
    assert result["config"]["menu_size"] == 2
    assert (out / "report.md").read_text().startswith("# Evaluation of")
    assert main([*args[:2], "--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "missing.onnx"), "--out", str(out)]) == 2
    assert "model file not found" in capsys.readouterr().err


def _outline_oracle(ds: CocoDataset) -> dict[int, Prediction]:
    """Predictions whose items are the drawn outlines themselves (box and mask)."""
    names = ds.category_names()
    preds = {im.id: Prediction(im.width, im.height, []) for im in ds.images}
    for a in ds.annotations:
        im = next(i for i in ds.images if i.id == a.image_id)
        m = annotation_mask(a, im.height, im.width)
        ys, xs = np.nonzero(m)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        preds[im.id].items.append(_item(box, names[a.category_id], 0.9,
                                        mask=m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]))
    return preds


def test_real_mask_section_known_answers(fixtures_dir: Path) -> None:
    drawn = import_labelme(fixtures_dir / "labelme")
    exact = real_mask_section(drawn, _outline_oracle(drawn))
    # Masks equal to the outlines: IoU 1 for the apple and the orange (the coin is not food);
    # the ellipses inscribed in their boxes cover round fruit well but not exactly.
    assert exact is not None and exact["mean_iou"] == pytest.approx(1.0)
    assert exact["per_label"] == {"apple": {"mean_iou": 1.0, "n": 1},
                                  "orange": {"mean_iou": 1.0, "n": 1}}
    assert exact["photos"] == 1 and 0.85 < exact["box_ellipse_mean_iou"] < 1.0
    # No item found: every outline scores 0, for the masks and the ellipses alike.
    empty = {iid: replace(p, items=[]) for iid, p in _outline_oracle(drawn).items()}
    missed = real_mask_section(drawn, empty)
    assert missed is not None and missed["mean_iou"] == 0 and missed["box_ellipse_mean_iou"] == 0


def _outline_dir(root: Path, fixtures_dir: Path, source: str, photo: str) -> Path:
    """An outlines folder as data/outlines holds them: the LabelMe fixture, its imagePath
    pointing at `photo` relative to the new file."""
    doc = json.loads((fixtures_dir / "labelme" / "mix001T(1).json").read_text())
    folder = root / source
    folder.mkdir(parents=True)
    doc["imagePath"] = os.path.relpath(photo, folder)
    (folder / "mix001T(1).json").write_text(json.dumps(doc))
    return root


def test_drawn_outline_set_and_section(model_path: Path, fixtures_dir: Path,
                                       ecustfd_ds: CocoDataset, tmp_path: Path) -> None:
    photo = fixtures_dir / "ecustfd" / "JPEGImages" / "mix001T(1).JPG"
    root = _outline_dir(tmp_path / "outlines", fixtures_dir, "ecustfd", str(photo))
    assert drawn_outline_set(root, "mealtray") is None  # no folder: no outlines
    outlines = drawn_outline_set(root, "ecustfd")
    assert outlines is not None and [Path(im.file_name).name for im in outlines.images] == [
        "mix001T(1).JPG"]
    model = TrayModel(model_path)
    section = drawn_outline_section(model, outlines, ecustfd_ds)
    assert section is not None and section["n_masks"] == 2 and section["photos"] == 1
    assert section["photos_not_held_out"] == 0 and 0.5 < section["mean_iou"] <= 1.0
    # The same photo on the trained-on side: counted, not scored.
    others = ecustfd_ds.subset([im.id for im in ecustfd_ds.images
                                if not im.file_name.endswith("mix001T(1).JPG")])
    assert drawn_outline_section(model, outlines, others) is None
    # A photo that is not there (no shared data beside the repo) is a clear error.
    gone = _outline_dir(tmp_path / "gone", fixtures_dir, "ecustfd", str(tmp_path / "x.JPG"))
    with pytest.raises(EvaluationError, match="photos of 1 outline files are missing"):
        drawn_outline_set(gone, "ecustfd")


def test_evaluate_reports_drawn_outlines(model_path: Path, fixtures_dir: Path,
                                         ecustfd_ds: CocoDataset, tmp_path: Path) -> None:
    photo = fixtures_dir / "ecustfd" / "JPEGImages" / "mix001T(1).JPG"
    outlines = drawn_outline_set(
        _outline_dir(tmp_path / "outlines", fixtures_dir, "ecustfd", str(photo)), "ecustfd")
    assert outlines is not None
    result = evaluate(TrayModel(model_path), {"ecustfd": ecustfd_ds},
                      EvalConfig(menu_size=2, k_enrol=1, n_menus=5), outlines={"ecustfd": outlines})
    drawn = result["food_regions"]["ecustfd"]["drawn_outlines"]
    assert drawn["n_masks"] == 2 and set(drawn["per_label"]) == {"apple", "orange"}
    report = markdown_report(result)
    assert "Mask IoU against food outlines drawn by hand" in report
    assert f"| ecustfd | 1 | 2 | {drawn['mean_iou']:.3f}" in report


def test_refined_masks_reach_grams_and_drawn_outlines(
        model_path: Path, fixtures_dir: Path, ecustfd_ds: CocoDataset, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # --refine-masks: the served predictions (grams, drawn outlines) refine their masks; the
    # low-threshold detection pass does not (boxes are the same either way).
    seen: list[tuple[int, bool]] = []
    real = evaluate_module.predict_dataset

    def spy(model: TrayModel, ds: CocoDataset, post: PostConfig, *a: object,
            **kw: object) -> dict[int, Prediction]:
        seen.append((len(ds.images), post.refine_masks))
        return real(model, ds, post, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluate_module, "predict_dataset", spy)
    photo = fixtures_dir / "ecustfd" / "JPEGImages" / "mix001T(1).JPG"
    outlines = drawn_outline_set(
        _outline_dir(tmp_path / "outlines", fixtures_dir, "ecustfd", str(photo)), "ecustfd")
    assert outlines is not None
    cfg = EvalConfig(menu_size=2, k_enrol=1, n_menus=5, refine_masks=True)
    result = evaluate(TrayModel(model_path), {"ecustfd": ecustfd_ds}, cfg,
                      outlines={"ecustfd": outlines})
    n = len(ecustfd_ds.images)
    assert seen == [(n, False), (1, True), (n, True), (n, True)]
    assert result["config"]["refine_masks"] is True
    assert result["food_regions"]["ecustfd"]["drawn_outlines"]["n_masks"] == 2
