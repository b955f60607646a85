"""Leave one source out: train the default recipe without one data source, then measure the
model on every photo of the source it never saw (issue 16, "Measure generalisation honestly").

    nice -n 19 .venv/bin/python benchmarks/leave_one_source_out.py --out var/loso/results \\
        [--sources mealtray ecustfd] [--epochs N] [--cache-views N] [--set KEY=VALUE ...]
        [--peaks class|food]

For each source (mealtray, ecustfd): the config's `data` without that source (so none of its
photos is trained on, and none of its crops is pasted into the composed trays, which are cut
from the remaining sources' training parts only: checked before training), trained with
`model.training.run.run` into OUT/without-SOURCE/ (its own feature and tray cache under
--cache-dir, not the default var/cache), exported to ONNX (`model.export`, no portion fit:
no grams are measured here), then evaluated on ALL photos of the left-out source:

- class-agnostic food-region recall at IoU 0.5, false regions per photo and the shares of
  found regions named with a wrong and with the right class, at the service's operating
  point (PostConfig) — `model.evaluate.food_region_section`. Named as the service names:
  class probability >= MatchConfig.min_class_score and the open-set check
  (`model.infer.naming`), fitted on the run's own training split after export; the table
  gives "class probability alone -> with the check";
- mask IoU against drawn outlines where the source has any (ECUSTFD: the LabelMe and mask-PNG
  fixtures, tests/fixtures/{labelme,maskpng}; both: the outlines drawn on held-out shared
  photos, data/outlines/<source>), beside the ellipse inscribed in each found box;
- menu-mode identification (`model.evaluate_menu`): menus of 5 dishes drawn from the left-out
  source's foods, k = 1 and 3 enrolled examples from other objects (capture runs for
  mealtray, whose "foods" are its 8 course classes).

The shipped model (--model, 1.4.0) is measured the same way on each source's usual held-out
split (its own seed and val_fraction). It trained on BOTH sources, so its rows are held-out
figures, not leave-one-out ones. Prints a Markdown table; writes OUT/loso.json (and
OUT/SOURCE.json as each source finishes). An existing OUT/without-SOURCE/model.onnx is reused
(--retrain to train again). The targets (issue 16): recall >= 0.9 at <= 0.5 false regions per
photo, menu mode >= 90% at k = 3. This benchmark only measures; it ships nothing.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from any folder

from model.data.coco import CocoDataset  # noqa: E402
from model.data.importers.labelme import import_labelme  # noqa: E402
from model.data.importers.maskpng import import_mask_png  # noqa: E402
from model.data.splits import training_split  # noqa: E402
from model.evaluate import (  # noqa: E402
    OUTLINES_DIR,
    drawn_outline_set,
    food_region_section,
    operating_point,
    predict_dataset,
    real_mask_section,
    region_curve_section,
    split_params,
)
from model.evaluate_common import EvalConfig, EvaluationError, fmt  # noqa: E402
from model.evaluate_menu import embed_annotations, menu_section  # noqa: E402
from model.infer import naming  # noqa: E402
from model.infer.menu_match import MatchConfig  # noqa: E402
from model.infer.runtime import PostConfig, TrayModel  # noqa: E402
from model.training.config import TrainConfig, load_config  # noqa: E402
from model.training.sources import (  # noqa: E402
    compose_training_trays,
    load_sources,
    trained_and_held_out,
)

SOURCES = ("mealtray", "ecustfd")
MENU_K = (1, 3)
MENU_SIZE = 5
# False regions per photo at which the recall is also read (model.metrics.region_curve):
# models compare fairly at a matched rate, and 0.5 is the target.
AT_FALSE = (0.25, 0.5)
DEFAULT_CONFIG = REPO / "model" / "configs" / "default.yaml"
SHIPPED = REPO / "model" / "artifacts" / "traylens.onnx"
FIXTURES = REPO / "tests" / "fixtures"
OUTLINES = REPO / OUTLINES_DIR
TARGETS = "recall >= 0.9 at <= 0.5 false regions per photo; menu mode >= 90% at k = 3"


def commit() -> str:
    """The code's git commit (+ "-dirty" with uncommitted changes), for the JSON's provenance."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def log(msg: str) -> None:
    """A timestamped progress line (the background run's log)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def drawn_outlines(source: str, fixtures: Path = FIXTURES,
                   outlines_dir: Path = OUTLINES) -> list[CocoDataset]:
    """Sets with outlines a person drew on this source's photos: the LabelMe and mask-PNG
    fixtures (ECUSTFD) and the outlines drawn on the shared photos (data/outlines/<source>,
    model.evaluate.drawn_outline_set)."""
    sets = []
    if source == "ecustfd":
        png = fixtures / "maskpng"
        sets += [import_labelme(fixtures / "labelme"),
                 import_mask_png(fixtures / "ecustfd" / "JPEGImages", png / "masks",
                                 png / "classes.txt")]
    drawn = drawn_outline_set(outlines_dir, source)
    return sets if drawn is None else [*sets, drawn]


def absolute_roots(data: Sequence[dict[str, Any]], base: Path = REPO) -> list[dict[str, Any]]:
    """The `data` entries with root/path made absolute (configs are relative to the repo)."""
    out = []
    for src in data:
        src = dict(src)
        for key in ("root", "path"):
            if key in src and not Path(src[key]).is_absolute():
                src[key] = str((base / src[key]).resolve())
        out.append(src)
    return out


def source_entry(data: Sequence[dict[str, Any]], source: str) -> dict[str, Any]:
    """The config's `data` entry of one source kind."""
    found = [d for d in data if d.get("kind") == source]
    if len(found) != 1:
        raise SystemExit(f"expected one {source!r} entry in data, found {len(found)}")
    return found[0]


def loso_config(config: Path, source: str, out: Path, cache_dir: Path,
                flags: dict[str, Any]) -> TrainConfig:
    """The recipe of `config` (+ flags) with `source` removed from `data`."""
    base = load_config(config, flags)
    data = [d for d in absolute_roots(base.data) if d.get("kind") != source]
    if len(data) == len(base.data) or not data:
        kinds = [d.get("kind") for d in base.data]
        raise SystemExit(f"cannot leave out {source!r}: data holds {kinds}")
    return load_config(config, {**flags, "data": data,
                                "output_dir": str(out / f"without-{source}"),
                                "cache_dir": str(cache_dir),
                                "version": f"{base.version}-without-{source}"})


def check_no_leak(cfg: TrainConfig, left_out: CocoDataset) -> dict[str, Any]:
    """The run's training photos and composed-tray crops hold nothing of `left_out`.

    Builds the trays exactly as training will (same parts, settings and cache key), so
    training then reuses them. Raises SystemExit on any overlap.
    """
    parts, _ = trained_and_held_out(cfg, load_sources(cfg.data))
    held = {Path(im.file_name).name for im in left_out.images}
    trained = {Path(im.file_name).name for ds in parts for im in ds.images}
    crops: set[str] = set()
    labels: set[str] = set()
    compose = cfg.compose
    if int(compose.get("images", 0)):
        trays = compose_training_trays(parts, int(compose["images"]),
                                       int(compose.get("per_label", 20)), cfg.seed,
                                       Path(cfg.cache_dir) if cfg.cache_dir else None)
        names = trays.category_names()
        crops = {str(a.object_id).split("#")[0] for a in trays.annotations}
        labels = {names[a.category_id] for a in trays.annotations}
    left_labels = set(left_out.category_names().values())
    if held & (trained | crops) or (labels & left_labels):
        raise SystemExit(f"left-out photos reach training: {sorted(held & (trained | crops))[:3]}"
                         f" {sorted(labels & left_labels)}")
    return {"training_photos": len(trained), "composed_trays_from_photos": len(crops),
            "composed_labels": sorted(labels), "overlap": 0}


def train_and_export(cfg: TrainConfig, retrain: bool) -> Path:
    """Train the run (unless its ONNX file exists) and export it; the ONNX path."""
    from model import export
    from model.training.run import run

    onnx = Path(cfg.output_dir) / "model.onnx"
    if onnx.is_file() and not retrain:
        log(f"reusing {onnx}")
        return onnx
    began = time.perf_counter()
    final = run(cfg)
    log(f"trained {cfg.output_dir} in {time.perf_counter() - began:.0f} s: "
        f"{json.dumps({k: v for k, v in final.items() if k != 'loss_history'})}")
    export.main(["--checkpoint", str(Path(cfg.output_dir) / "checkpoint.pt"), "--out", str(onnx),
                 "--no-calibrate"])
    return onnx


def with_open_set(onnx: Path, thresholds: str = "own") -> TrayModel:
    """The run's file with the open-set naming check fitted on its own training split (no
    left-out photo: the split its metadata records), as `model.export --fit-open-set
    --open-set-thresholds THRESHOLDS` does."""
    from model import export

    meta = export.read_meta(onnx)
    # Fit when the file has no check, or one fitted another way (files without the key: own).
    if not meta.open_set or meta.open_set.get("thresholds", "own") != thresholds:
        began = time.perf_counter()
        trained, calibration = export.recorded_sides(meta)
        export.fit_open_set_file(onnx, trained, thresholds=thresholds, calibration=calibration)
        log(f"open-set check fitted in {time.perf_counter() - began:.0f} s")
    return TrayModel(onnx)


def compared_checks(model: TrayModel, kinds: Sequence[str]) -> dict[str, naming.OpenSet]:
    """The open-set check fitted each way of `kinds` on the model's own training split (the
    one its metadata records), in one pass over its photos; the file is not changed."""
    from model import export

    if not kinds:
        return {}
    began = time.perf_counter()
    trained, calibration = export.recorded_sides(model.meta)
    fits = export.open_set_fits(model, trained, kinds, calibration=calibration)
    log(f"open-set checks {', '.join(kinds)} fitted in {time.perf_counter() - began:.0f} s")
    return fits


def measure(model: TrayModel, ds: CocoDataset, outlines: Sequence[CocoDataset],
            menus: int, menu_size: int, seed: int = 0,
            peaks: Literal["class", "food"] = "class",
            at_false: Sequence[float] = AT_FALSE,
            compare: dict[str, naming.OpenSet] | None = None) -> dict[str, Any]:
    """Food regions (at the operating point, and the recall at each rate of false regions
    per photo in `at_false`), drawn-outline mask IoU and menu mode (k = 1, 3) of a model on
    a set; `peaks`: PostConfig.peaks, where the found regions come from; `compare`: other
    open-set checks, whose naming of the same found regions is reported beside the file's."""
    post, match = PostConfig(peaks=peaks), MatchConfig()
    cfg = EvalConfig(menu_size=menu_size, n_menus=menus, seed=seed)
    began = time.perf_counter()
    low = predict_dataset(model, ds, replace(post, score_min=cfg.detection_score_min,
                                             max_items=100), batch_size=cfg.batch_size)
    preds = operating_point(low, post)
    out: dict[str, Any] = {"photos": len(ds.images),
                           "food_regions": food_region_section(ds, preds, cfg, match, post,
                                                                model.open_set),
                           "region_curve": region_curve_section(ds, low, cfg, at_false)}
    if model.open_set is not None:  # what naming by class probability alone would give
        out["food_regions_probability_only"] = food_region_section(ds, preds, cfg, match, post)
    if compare:
        out["food_regions_by_check"] = {
            kind: food_region_section(ds, preds, cfg, match, post, check)
            for kind, check in compare.items()}
    parts = [m for o in outlines
             if (m := real_mask_section(o, predict_dataset(model, o, post))) is not None]
    n = sum(p["n_masks"] for p in parts)
    out["drawn_outline_mask_iou"] = ({
        "mean_iou": sum(p["mean_iou"] * p["n_masks"] for p in parts) / n, "n_masks": n,
        "box_ellipse_mean_iou": sum(p["box_ellipse_mean_iou"] * p["n_masks"]
                                    for p in parts) / n,
        "photos": sum(len(o.images) for o in outlines), "per_set": parts} if n else None)
    samples = embed_annotations(model, ds)
    out["menu"] = {}
    for k in MENU_K:
        try:
            menu = menu_section(samples, EvalConfig(k_enrol=k, menu_size=menu_size,
                                                    n_menus=menus, seed=seed), match)
            out["menu"][f"k{k}"] = {"accuracy": menu["accuracy"], "method": match.method,
                                    "prototype": menu["prototype"]["accuracy"],
                                    "foods": menu["foods"], "m": menu_size, "n_menus": menus}
        except EvaluationError as exc:
            out["menu"][f"k{k}"] = {"not_evaluated": str(exc)}
    out["seconds"] = round(time.perf_counter() - began, 1)
    return out


def held_out(entry: dict[str, Any], model: TrayModel) -> CocoDataset:
    """The usual held-out split of one source for a model (its own seed and val_fraction;
    uncapped, as model.evaluate takes it)."""
    val_fraction, seed = split_params(model)
    return training_split(load_sources([entry])[0], val_fraction, seed)[1]


def outside_held_out_of(ds: CocoDataset, entry: dict[str, Any], model: TrayModel,
                        other_seeds: Sequence[int]) -> CocoDataset:
    """The photos of `ds` that the held-out splits of other split seeds (same val_fraction)
    do not hold: photos that no check judged on those splits has been measured on."""
    val_fraction, _ = split_params(model)
    full = load_sources([entry])[0]
    judged = {Path(im.file_name).name for seed in other_seeds
              for im in training_split(full, val_fraction, seed)[1].images}
    return ds.subset([im.id for im in ds.images if Path(im.file_name).name not in judged])


def in_training(model: TrayModel, entry: dict[str, Any], outlines: Sequence[CocoDataset]) -> int:
    """How many of the drawn-outline photos lie in the model's training split of the source."""
    val_fraction, seed = split_params(model)
    train = training_split(load_sources([entry])[0], val_fraction, seed)[0]
    names = {Path(im.file_name).name for im in train.images}
    return sum(Path(im.file_name).name in names for o in outlines for im in o.images)


def leave_out(source: str, args: argparse.Namespace, flags: dict[str, Any]) -> dict[str, Any]:
    """Train without `source`, export, measure on all of its photos."""
    cfg = loso_config(args.config, source, args.out, args.cache_dir, flags)
    entry = source_entry(absolute_roots(load_config(args.config, flags).data), source)
    left_out = load_sources([entry])[0]
    log(f"without {source}: trained on {[d['kind'] for d in cfg.data]}, evaluated on all "
        f"{len(left_out.images)} {source} photos")
    leak = check_no_leak(cfg, left_out)
    onnx = train_and_export(cfg, args.retrain)
    model = with_open_set(onnx, args.open_set_thresholds)
    result = measure(model, left_out, drawn_outlines(source, args.fixtures, args.outlines),
                     args.menus, args.menu_size, peaks=args.peaks, at_false=args.at_false,
                     compare=compared_checks(model, args.compare_open_set))
    return {"source": source, "model": str(onnx), "trained_on": [d["kind"] for d in cfg.data],
            "schedule": schedule(cfg), "leak_check": leak, "evaluated_on": "all photos",
            "open_set_thresholds": model.open_set and model.open_set.thresholds,
            **result}


def shipped(source: str, args: argparse.Namespace, flags: dict[str, Any]) -> dict[str, Any]:
    """The shipped model on the source's usual held-out split (it trained on both sources)."""
    model = TrayModel(args.model)
    entry = source_entry(absolute_roots(load_config(args.config, flags).data), source)
    ds = held_out(entry, model)
    if args.outside_held_out_of:
        ds = outside_held_out_of(ds, entry, model, args.outside_held_out_of)
    outlines = drawn_outlines(source, args.fixtures, args.outlines)
    log(f"shipped {model.meta.version} on the held-out {source} split: {len(ds.images)} photos")
    result = measure(model, ds, outlines, args.menus, args.menu_size, peaks=args.peaks,
                     at_false=args.at_false,
                     compare=compared_checks(model, args.compare_open_set))
    return {"source": source, "model": str(args.model), "version": model.meta.version,
            "trained_on": "both sources (held-out split, not leave-one-out)",
            "evaluated_on": "held-out split" if not args.outside_held_out_of else
            "held-out split, less the held-out splits of seeds "
            f"{', '.join(map(str, args.outside_held_out_of))}",
            "drawn_outline_photos_in_training": in_training(model, entry, outlines), **result}


def schedule(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that make a run long or short, as trained."""
    return {k: getattr(cfg, k) for k in ("epochs", "cache_views", "compose", "batch_size",
                                         "lr", "input_width", "input_height", "train_seed",
                                         "seed", "flip_test")}


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table: one row per (model, source)."""
    lines = ["| model | trained on | evaluated on | photos | food regions | recall@0.5 | "
             "false regions / photo | named wrong (of found) | named right (of found) | "
             "mask IoU, drawn outlines | menu k=1 | menu k=3 | recall at matched false "
             "regions / photo |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fr = r["food_regions"]
        alone = r.get("food_regions_probability_only")
        masks = r["drawn_outline_mask_iou"]
        iou = (f"{fmt(masks['mean_iou'])} ({masks['n_masks']} outlines; box ellipse "
               f"{fmt(masks.get('box_ellipse_mean_iou'))})" if masks else "none drawn")
        menus = [(r["menu"][f"k{k}"].get("accuracy") or {}).get("mean") for k in MENU_K]
        trained = ", ".join(r["trained_on"]) if isinstance(r["trained_on"], list) else "both"
        lines.append(
            f"| {_who(r)} | {trained} | {r['source']} {r['evaluated_on']} | {r['photos']} | "
            f"{fr['annotated']} | {fmt(fr['recall'])} | {fmt(fr['false_per_photo'])} | "
            f"{_named(fr, alone, 'named_wrong')} | {_named(fr, alone, 'named_right')} | {iou} | "
            f"{fmt(menus[0], True)} | {fmt(menus[1], True)} | {_matched(r)} |")
    return "\n".join(lines)


def compared_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per row and compared open-set check: how it names the same found regions."""
    lines = []
    for r in rows:
        for kind, fr in r.get("food_regions_by_check", {}).items():
            lines.append(f"- {_who(r)}, {r['source']}, {kind} check: of {fr['found']} found "
                         f"regions {fr['named_wrong']} named wrong, {fr['named_right']} named "
                         f"right, {fr['unidentified']} unidentified")
    return "\n".join(lines)


def _who(row: dict[str, Any]) -> str:
    """Which model a row is of: a left-out run's, or the shipped file's."""
    return f"without {row['source']}" if "version" not in row else f"shipped {row['version']}"


def _matched(row: dict[str, Any]) -> str:
    """The recall read at each rate of false regions per photo, with its score threshold."""
    curve = row.get("region_curve")
    if not curve:
        return "-"
    return "; ".join(f"{fmt(p['recall'])} at <= {p['false_per_photo']} (score >= "
                     f"{fmt(p['threshold'])})" for p in curve["points"])


def _named(fr: dict[str, Any], alone: dict[str, Any] | None, key: str) -> str:
    """A share of the found regions as the service names them; with the open-set check,
    "class probability alone -> with the check"."""
    def share(section: dict[str, Any]) -> str:
        return fmt(section[key] / section["found"] if section["found"] else None, True)
    return share(fr) if alone is None else f"{share(alone)} -> {share(fr)}"


def _value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with the value read as YAML (numbers, booleans, {maps})."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), yaml.safe_load(value)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--out", type=Path, required=True, help="runs and JSON results")
    p.add_argument("--cache-dir", type=Path, help="feature/tray cache (default OUT/cache)")
    p.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    p.add_argument("--epochs", type=int, help="shorter schedule (default: the config's)")
    p.add_argument("--cache-views", type=int, help="augmented views (default: the config's)")
    p.add_argument("--data", type=json.loads, help="JSON list replacing the config's data")
    p.add_argument("--set", type=_value, action="append", default=[], metavar="KEY=VALUE",
                   help="any other training setting (YAML value); repeatable")
    p.add_argument("--menus", type=int, default=500, help="random menus per k")
    p.add_argument("--peaks", choices=("class", "food"), default="class",
                   help="where found regions come from (PostConfig.peaks; default: the "
                        "service's, one class's heatmap)")
    p.add_argument("--menu-size", type=int, default=MENU_SIZE)
    p.add_argument("--at-false", type=float, nargs="+", default=list(AT_FALSE),
                   metavar="RATE", help="false regions per photo at which to read the recall "
                                        "(a threshold read off the set: for comparing models)")
    p.add_argument("--model", type=Path, default=SHIPPED, help="the shipped model")
    p.add_argument("--fixtures", type=Path, default=FIXTURES, help="drawn-outline fixtures")
    p.add_argument("--outlines", type=Path, default=OUTLINES,
                   help="outlines drawn on the shared photos, one folder per source")
    p.add_argument("--no-shipped", action="store_true", help="skip the shipped model's rows")
    p.add_argument("--shipped-only", action="store_true", help="only the shipped model's rows")
    p.add_argument("--retrain", action="store_true", help="train even if the ONNX file exists")
    p.add_argument("--outside-held-out-of", type=int, nargs="+", default=[], metavar="SEED",
                   help="with --shipped-only: only the held-out photos that the held-out splits "
                        "of these split seeds do not hold (a model trained on another seed, "
                        "judged on photos earlier checks were not measured on)")
    p.add_argument("--open-set-thresholds", choices=naming.THRESHOLDS, default="own",
                   help="how a left-out run's open-set check is fitted (model.export "
                        "--open-set-thresholds; calibration and conformal need a "
                        "calibration_fraction)")
    p.add_argument("--compare-open-set", nargs="+", choices=naming.THRESHOLDS, default=[],
                   metavar="THRESHOLDS",
                   help="other open-set checks, each fitted on the model's own training split "
                        "(the file is not changed), that name the same found regions: their "
                        "wrong, right and unidentified counts beside the file's")
    a = p.parse_args(argv)
    a.cache_dir = a.cache_dir or a.out / "cache"
    return a


def main(argv: Sequence[str] | None = None) -> int:
    """Run every left-out source (and the shipped model), print the table, write JSON."""
    a = parse(argv)
    flags: dict[str, Any] = dict(a.set)
    for key in ("epochs", "cache_views", "data"):
        if getattr(a, key) is not None:
            flags[key] = getattr(a, key)
    a.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    result: dict[str, Any] = {"config": str(a.config), "flags": flags, "targets": TARGETS,
                              "machine": platform.processor() or platform.machine(),
                              "commit": commit(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "leave_one_out": [], "shipped": []}
    for source in a.sources if not a.shipped_only else []:
        row = leave_out(source, a, flags)
        result["leave_one_out"].append(row)
        (a.out / f"without-{source}.json").write_text(json.dumps(row, indent=2, default=str))
    for source in a.sources if not a.no_shipped else []:
        row = shipped(source, a, flags)
        result["shipped"].append(row)
        (a.out / f"shipped-{source}.json").write_text(json.dumps(row, indent=2, default=str))
    result["seconds"] = round(time.perf_counter() - began, 1)
    (a.out / "loso.json").write_text(json.dumps(result, indent=2, default=str))
    rows = result["leave_one_out"] + result["shipped"]
    trained = ("no training (--shipped-only)" if a.shipped_only else
               f"flags {json.dumps(flags)}" if flags else "the full recipe")
    print(f"# Leave one source out ({result['machine']}, {result['started']}; {trained})\n")
    print(markdown(rows))
    if any(r.get("food_regions_by_check") for r in rows):
        print("\nThe same found regions named by other open-set checks:\n")
        print(compared_markdown(rows))
    print(f"\nTargets (issue 16): {TARGETS}. Shipped rows: the held-out split of a model "
          "trained on both sources, not leave-one-out. Menus of "
          f"{a.menu_size}, {a.menus} per k. Wall time {result['seconds']:.0f} s; "
          f"JSON in {a.out / 'loso.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

