"""Export a trained checkpoint to ONNX with its metadata, check it, and measure parity.

  python -m model.export --checkpoint var/train/default/checkpoint.pt \
      --out model/artifacts/traylens.onnx

Several checkpoints (runs that differ only in train_seed) export as one ensemble: the
backbone runs once and the members' heads are averaged (model.network.ensemble_maps).
`--onnx FILE` exports an exported file's weights again (model.training.from_onnx), e.g. with
the backbone descriptor's outputs added (`--backbone-descriptor true`); its four maps are
checked equal to the source file's on the parity images.

Dynamo exporter, opset 18, dynamic batch; onnx.checker; ONNX Runtime vs torch on real
images with an explicit tolerance; the portion calibration is fitted by running the exported
file itself (runtime post-processing, coin scale) over the training objects with grams.
`--open-set` also fits the open-set naming check (model.infer.naming) over the training
regions the file finds; `--fit-open-set` fits only that check into an existing file, on the
training split its metadata records.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from model.data.splits import group_of
from model.evaluate_common import best_match, xyxy
from model.infer import naming, portion
from model.infer.images import load_image
from model.infer.runtime import META_KEY, Item, ModelMeta, PostConfig, TrayModel, preprocess
from model.network import BACKBONE_STRIDES, TrayNet

OPSET = 18
# fp32 ORT vs eager torch: different kernels and summation order; measured ~1e-4 on real photos.
PARITY_ATOL = 2e-3


class ExportError(RuntimeError):
    """The exported file failed a check (checker, parity)."""


def network_meta(model: TrayNet, meta: ModelMeta) -> ModelMeta:
    """The metadata fields the network decides: the item embedding's size (every member's
    embedding, plus the backbone maps' channels) and the backbone descriptor."""
    descriptor = ({"strides": list(BACKBONE_STRIDES), "channels": model.backbone_channels()}
                  if model.backbone_outputs else {})
    return replace(meta, backbone_descriptor=descriptor,
                   embedding_dim=model.output_embedding_dim + sum(descriptor.get("channels", [])))


def export_onnx(model: TrayNet, meta: ModelMeta, out: str | Path) -> Path:
    """Trace with the dynamo exporter (dynamic batch), embed metadata (its network fields set
    from the model), run onnx.checker."""
    meta = network_meta(model, meta)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    width, height = meta.input_size
    example = torch.zeros(2, 3, height, width)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.onnx.export(
        model, (example,), dynamo=True, opset_version=OPSET, input_names=["image"],
        output_names=list(model.output_names), dynamic_shapes={"x": {0: batch}}, verbose=False,
    )
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    program.optimize()
    proto = program.model_proto
    write_meta(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    return out


def write_meta(proto: onnx.ModelProto, meta: ModelMeta) -> None:
    """Store the metadata JSON under META_KEY (replacing an older entry)."""
    kept = [p for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    proto.producer_name = "traylens"
    proto.model_version = abs(hash(meta.version)) % (2**31)


def read_meta(path: str | Path) -> ModelMeta:
    """Metadata of an ONNX file without starting a session."""
    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == META_KEY:
            return ModelMeta.from_json(p.value)
    raise ExportError(f"{path} has no {META_KEY!r} metadata")


def update_meta(path: str | Path, **changes: Any) -> ModelMeta:
    """Rewrite some metadata fields (metrics, portion...) in place; returns the new meta."""
    proto = onnx.load(str(path))
    meta = replace(read_meta(path), **changes)
    write_meta(proto, meta)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return meta


def parity(model: TrayNet, onnx_path: str | Path, images: Sequence[Path]) -> dict[str, float]:
    """Max |ORT - torch| per output on real images (one batch)."""
    rt = TrayModel(onnx_path)
    pics = [load_image(p) for p in images]
    batch, _ = preprocess(pics, rt.meta)
    with torch.no_grad():
        ref = [t.numpy() for t in model.eval()(torch.from_numpy(batch))]
    got, _ = rt.run(pics)
    pairs = zip(model.output_names, got, ref, strict=True)
    return {name: float(np.abs(a - b).max()) for name, a, b in pairs}


def file_parity(source: str | Path, onnx_path: str | Path, images: Sequence[Path],
                ) -> dict[str, float]:
    """Max |new - source| per map the two files share (ONNX Runtime both), on real images."""
    old, new = TrayModel(source), TrayModel(onnx_path)
    pics = [load_image(p) for p in images]
    names = [o.name for o in old.session.get_outputs()]
    pairs = zip(names, old.run(pics)[0], new.run(pics)[0], strict=False)
    return {name: float(np.abs(a - b).max()) for name, a, b in pairs}


def check_parity(diffs: dict[str, float], atol: float = PARITY_ATOL) -> None:
    """Raise when any output differs by more than atol."""
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    if bad:
        raise ExportError(f"ONNX Runtime differs from torch beyond {atol}: {bad}")


def found_items(rt: TrayModel, coco: Any, rec: Any, anns: Sequence[Any], cfg: PostConfig,
                usable: Callable[[Item], bool] = lambda item: True,
                ) -> list[tuple[Any, Item]]:
    """(annotation, the item over it) for each annotation of one photo that the model, run
    as the service runs it, finds: its best-overlapping usable item at box IoU >= 0.5."""
    img = load_image(coco.image_path(rec), fit=rt.meta.input_size)  # as the service does
    items = [i for i in rt.predict([img], cfg=cfg)[0].items if usable(i)]
    return [(a, item) for a in anns if (item := best_match(xyxy(a), items, 0.5)) is not None]


def portion_samples(rt: TrayModel, coco: Any, cfg: PostConfig | None = None,
                    ) -> tuple[list[str], list[float], list[float]]:
    """(label, predicted mask area cm2, true grams) for each annotated object the model finds.

    The model's own coin scale and mask are used, so the fit absorbs their biases exactly
    as they occur at inference. Only items with an area (a scale and a mask) are matched;
    objects the model misses (IoU < 0.5) are left out.
    """
    cfg = cfg or PostConfig(score_min=0.1)
    by_image = coco.annotations_by_image()
    names = coco.category_names()
    labels, areas, grams = [], [], []
    for rec in coco.images:
        anns = [a for a in by_image.get(rec.id, []) if a.grams]
        if not anns:
            continue
        for a, item in found_items(rt, coco, rec, anns, cfg, lambda i: bool(i.area_cm2)):
            labels.append(names[a.category_id])
            areas.append(float(item.area_cm2))  # type: ignore[arg-type]
            grams.append(float(a.grams))
    return labels, areas, grams


def food_densities(meta: ModelMeta) -> dict[str, float | None]:
    """g/ml per label from nutrition_db (for depth maps); None where unknown."""
    try:
        from nutrition_db import get_food
    except ImportError:
        return {}
    out: dict[str, float | None] = {}
    for label, fid in zip(meta.labels, meta.food_ids, strict=True):
        if fid:
            try:
                out[label] = get_food(fid).density_g_per_ml
            except Exception:  # unknown id: the label map and table disagree; no density
                out[label] = None
    return out


def calibrate(onnx_path: str | Path, coco: Any) -> dict[str, portion.ClassFit]:
    """Fit grams-from-area per label on `coco`'s objects and write it into the file."""
    rt = TrayModel(onnx_path)
    labels, areas, grams = portion_samples(rt, coco)
    table = portion.fit_calibration(labels, areas, grams, food_densities(rt.meta))
    update_meta(onnx_path, portion=portion.calibration_to_json(table))
    return table


def open_set_samples(rt: TrayModel, parts: Sequence[Any], max_per_class: int, seed: int = 0,
                     ) -> tuple[list[int], np.ndarray, list[str]]:
    """(annotated class index, embedding, group) of training regions the model finds, as the
    service finds them (its operating point, IoU >= 0.5 with the annotation, whatever label
    the item got): at most max_per_class per class, photos visited in a seeded order. The
    group is the photo's split group (object, capture run) within its part."""
    index = {name: i for i, name in enumerate(rt.meta.labels)}
    counts = np.zeros(len(index), np.int64)
    rng = np.random.default_rng(seed)
    labels: list[int] = []
    vecs: list[np.ndarray] = []
    groups: list[str] = []
    for part, coco in enumerate(parts):
        names, by_image = coco.category_names(), coco.annotations_by_image()
        for k in rng.permutation(len(coco.images)):
            rec = coco.images[int(k)]
            wanted = [a for a in by_image.get(rec.id, [])
                      if names[a.category_id] in index
                      and counts[index[names[a.category_id]]] < max_per_class]
            for a, item in found_items(rt, coco, rec, wanted, PostConfig()) if wanted else []:
                c = index[names[a.category_id]]
                if counts[c] < max_per_class:
                    labels.append(c)
                    vecs.append(item.embedding)
                    groups.append(f"{part}/{group_of(rec)}")
                    counts[c] += 1
    return labels, np.asarray(vecs, np.float32).reshape(-1, rt.meta.embedding_dim), groups


def fit_open_set_file(onnx_path: str | Path, parts: Sequence[Any],
                      max_per_class: int = naming.OPEN_SET_MAX_REGIONS,
                      thresholds: str = "own",
                      calibration: Sequence[Any] = ()) -> naming.OpenSet:
    """Fit the open-set naming check (model.infer.naming) on training parts; write it in.
    thresholds: naming.THRESHOLDS, where each class's threshold cosines come from;
    "calibration" and "conformal" use the regions of `calibration` (parts held out of
    training)."""
    fitted = open_set_fits(TrayModel(onnx_path), parts, (thresholds,), max_per_class,
                           calibration)[thresholds]
    update_meta(onnx_path, open_set=fitted.to_json())
    return fitted


def open_set_fits(rt: TrayModel, parts: Sequence[Any], kinds: Sequence[str],
                  max_per_class: int = naming.OPEN_SET_MAX_REGIONS,
                  calibration: Sequence[Any] = ()) -> dict[str, naming.OpenSet]:
    """The open-set check fitted each way of `kinds` (naming.THRESHOLDS) on the same training
    regions of `parts` (one pass over the photos); nothing is written."""
    if bad := [k for k in kinds if k not in naming.THRESHOLDS]:
        raise ExportError(f"open-set thresholds must be one of {naming.THRESHOLDS}, "
                          f"got {bad}")
    held_out = any(k in ("calibration", "conformal") for k in kinds)
    if held_out and not any(p.images for p in calibration):
        raise ExportError("open-set thresholds from calibration or conformal need "
                          "calibration photos: train with calibration_fraction > 0")
    labels, vecs, groups = open_set_samples(rt, parts, max_per_class)
    held = open_set_samples(rt, calibration, max_per_class)[:2] if held_out else None
    # open_set_samples' groups are "part/group": the part is the region's data source.
    sources = [g.split("/", 1)[0] for g in groups]
    fits = {}
    for kind in kinds:
        knn = kind in naming.BANK_THRESHOLDS
        try:
            fits[kind] = naming.fit_open_set(
                labels, vecs, len(rt.meta.labels),
                groups=groups if kind == "groups" or knn else None,
                calibration=held if kind in ("calibration", "conformal") else None,
                conformal=kind == "conformal", knn=knn,
                sources=sources if kind in ("pooled", "borrowed") else None,
                borrow=kind == "borrowed")
        except naming.OpenSetError as exc:
            raise ExportError(f"cannot fit {kind} open-set thresholds: {exc}") from exc
    return fits


def recorded_sides(meta: ModelMeta) -> tuple[list[Any], list[Any]]:
    """(trained on, calibration) of the split a file's metadata records."""
    from model.training.sources import load_sources, split_with_calibration

    try:
        data, seed, val_fraction = (meta.training[k] for k in ("data", "seed", "val_fraction"))
    except KeyError as exc:
        raise ExportError(f"the metadata records no training split ({exc})") from exc
    trained, calibration, _ = split_with_calibration(
        load_sources(data), val_fraction,
        float(meta.training.get("calibration_fraction", 0.0)), seed)
    return trained, calibration


def record_metrics(onnx_path: str | Path, metrics_json: str | Path) -> ModelMeta:
    """Carry `python -m model.evaluate`'s held-out headline inside the ONNX file."""
    result = json.loads(Path(metrics_json).read_text(encoding="utf-8"))
    evaluated = Path(result["model"]["file"]).name
    return update_meta(onnx_path, metrics={"evaluated_file": evaluated,
                                           "held_out": result["headline"]})


def reexport(source: str | Path, out: str | Path, *, version: str | None = None,
             flip_test: bool | None = None, backbone_descriptor: bool | None = None,
             images: Sequence[Path] = ()) -> dict[str, Any]:
    """Export an exported file's weights again (model.training.from_onnx) with other export
    options. The portion fit is carried (the same weights find the same masks), the held-out
    metrics are not (evaluate the new file), nor an open-set check fitted on another
    embedding. A changed graph needs a new version: the service re-embeds enrolments by it."""
    from model.training.from_onnx import network_from_onnx
    from model.training.meta import parent_provenance

    net, meta, _ = network_from_onnx(source)
    if flip_test is not None:
        net.flip_test = flip_test
    if backbone_descriptor is not None:
        net.backbone_outputs = backbone_descriptor
    changed = (net.flip_test, net.backbone_outputs) != (meta.flip_test,
                                                        bool(meta.backbone_strides))
    version = version or meta.version
    if changed and version == meta.version:
        raise ExportError(f"the new graph differs from {source}'s: give it a version other "
                          f"than {meta.version} (enrolments are re-embedded by version)")
    new = replace(meta, version=version, flip_test=net.flip_test, metrics={},
                  training={**meta.training, "exported_from": parent_provenance(source)})
    if network_meta(net, new).embedding_dim != meta.embedding_dim:
        new = replace(new, open_set={})
    path = export_onnx(net, new, out)
    report: dict[str, Any] = {"onnx": str(path), "bytes": path.stat().st_size,
                              "version": version, "from": new.training["exported_from"]}
    if images:
        report["parity_max_abs"] = diffs = parity(net, path, images)
        check_parity(diffs)
        report["source_parity_max_abs"] = same = file_parity(source, path, images)
        if net.flip_test == meta.flip_test:
            check_parity(same)
    return report


def open_set_choice(asked: bool, thresholds: str | None, configured: str | None) -> str | None:
    """The open-set check an export from a checkpoint fits: the run's `open_set` setting, or
    `own` when only --open-set asks; --open-set-thresholds wins (and asks); None: no check."""
    if not asked and thresholds is None and configured is None:
        return None
    return thresholds or configured or "own"


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry: export checkpoints (checked, calibrated) or record an evaluation's metrics."""
    from model.training.checkpoints import ensemble_from_checkpoints
    from model.training.meta import meta_for

    p = argparse.ArgumentParser(prog="python -m model.export", description=__doc__)
    p.add_argument("--checkpoint", nargs="+",
                   help="training checkpoint to export; several (runs differing only in "
                        "train_seed) make one ensemble file")
    p.add_argument("--onnx", type=Path,
                   help="an exported file whose weights to export again (instead of "
                        "--checkpoint), with other --flip-test/--backbone-descriptor options")
    p.add_argument("--out", required=True)
    p.add_argument("--parity-images", nargs="*", type=Path, default=[])
    p.add_argument("--no-calibrate", action="store_true", help="skip the portion fit")
    p.add_argument("--open-set", action="store_true",
                   help="also fit the open-set naming check (model.infer.naming) on the "
                        "training split (default: when the checkpoint's open_set setting "
                        "names one, as the shipped recipe's borrowed does, or "
                        "--open-set-thresholds is given)")
    p.add_argument("--flip-test", choices=("true", "false"),
                   help="average each photo with its mirror in the graph (default: the "
                        "checkpoint's flip_test; about twice the network time)")
    p.add_argument("--backbone-descriptor", choices=("true", "false"),
                   help="also output the frozen backbone's stride-16/32 maps, pooled beside "
                        "the embedding (default: the checkpoint's or file's setting)")
    p.add_argument("--version", help="model version in the metadata (default: the "
                                     "checkpoint's; a changed --flip-test is a new model; with "
                                     "--fit-open-set, the file's new version: it names otherwise)")
    p.add_argument("--record-metrics", type=Path, metavar="METRICS_JSON",
                   help="only write this evaluation's headline into --out's metadata")
    p.add_argument("--fit-open-set", action="store_true",
                   help="only fit the open-set naming check into --out, on the training split "
                        "its metadata records")
    p.add_argument("--open-set-thresholds", choices=naming.THRESHOLDS,
                   help="each class's threshold from its own regions' cosines (own, the "
                        "default unless the checkpoint's open_set setting names one), from "
                        "their cosines to its other objects' and capture runs' prototype "
                        "(groups: on 1.5.0 it kept 85%% of the right held-out ECUSTFD names, "
                        "own 82%%; docs/MODEL_CARD.md), or from the regions of the "
                        "photos a calibration_fraction run held out of training (calibration), "
                        "or own less one split-conformal margin set on those (conformal); knn "
                        "keeps the regions themselves and asks for the nearest one of the "
                        "named class, its threshold from each region's nearest region of the "
                        "class's other objects and capture runs; pooled is knn with each "
                        "threshold capped at its data source's, borrowed only the thresholds "
                        "of classes seen on one object or capture run (docs/MODEL_CARD.md)")
    a = p.parse_args(argv)
    if a.record_metrics is not None:
        print(json.dumps(record_metrics(a.out, a.record_metrics).metrics, indent=1))
        return
    if a.fit_open_set:
        meta = read_meta(a.out)
        trained, calibration = recorded_sides(meta)
        fitted = fit_open_set_file(a.out, trained, thresholds=a.open_set_thresholds or "own",
                                   calibration=calibration)
        if a.version is not None:
            update_meta(a.out, version=a.version)
        print(json.dumps({"onnx": a.out, "open_set_regions": dict(
            zip(meta.labels, fitted.regions, strict=True))}, indent=1))
        return
    flip = None if a.flip_test is None else a.flip_test == "true"
    backbone = None if a.backbone_descriptor is None else a.backbone_descriptor == "true"
    if a.onnx is not None:
        print(json.dumps(reexport(a.onnx, a.out, version=a.version, flip_test=flip,
                                  backbone_descriptor=backbone, images=a.parity_images),
                         indent=1))
        return
    if a.checkpoint is None:
        p.error("--checkpoint or --onnx is required to export")
    model, ckpt, seeds = ensemble_from_checkpoints(a.checkpoint)
    cfg = ckpt["config"]  # a TrainConfig, converted on load from older checkpoints too
    if flip is not None:
        model.flip_test = flip
        cfg = replace(cfg, flip_test=flip)
    if backbone is not None:
        model.backbone_outputs = backbone
        cfg = replace(cfg, backbone_descriptor=backbone)
    if a.version is not None:
        cfg = replace(cfg, version=a.version)
    saved = ModelMeta.from_json(json.dumps(ckpt["meta"]))
    meta = meta_for(cfg, saved.labels, saved.food_ids, saved.fingerprint,
                    parent=saved.training.get("init_from"))
    if model.members > 1:
        meta = replace(meta, training={**meta.training, "ensemble_train_seeds": seeds})
    out = export_onnx(model, meta, a.out)
    report: dict[str, Any] = {"onnx": str(out), "bytes": out.stat().st_size}
    if a.parity_images:
        report["parity_max_abs"] = diffs = parity(model, out, a.parity_images)
        check_parity(diffs)
    open_set = open_set_choice(a.open_set, a.open_set_thresholds, cfg.open_set)
    if not a.no_calibrate or open_set is not None:
        train_parts, calibration = recorded_sides(meta)
    if not a.no_calibrate:
        fits = {}
        for part in train_parts:
            fits.update(calibrate(out, part))
        update_meta(out, portion=portion.calibration_to_json(fits))
        report["portion_classes"] = sorted(fits)
    if open_set is not None:
        report["open_set_regions"] = fit_open_set_file(
            out, train_parts, thresholds=open_set, calibration=calibration).regions
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
