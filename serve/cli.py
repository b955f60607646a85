"""Command line: `python -m serve [--host H --port P]` runs the service;
`python -m serve analyze IMAGE... [--menu menu.json] [--json]` runs the pipeline offline;
`python -m serve purge-images` applies the image retention setting."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serve.core.settings import SettingsError, load_settings


def _serve_parser() -> argparse.ArgumentParser:
    """Options of the server command."""
    parser = argparse.ArgumentParser(prog="python -m serve", description="Run the service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--log-level", default="info")
    return parser


def _analyze_parser() -> argparse.ArgumentParser:
    """Options of the offline analysis command."""
    parser = argparse.ArgumentParser(
        prog="python -m serve analyze", description="Analyse photos without a server."
    )
    parser.add_argument("images", nargs="+", type=Path, help="JPEG, PNG or WebP files")
    parser.add_argument("--menu", type=Path, help="menu.json: dishes with food_id, serving_g,"
                        " optional example photos (see docs/API.md)")
    parser.add_argument("--px-per-cm", type=float, help="known camera scale (kiosk calibration)")
    parser.add_argument("--model", type=Path, help="ONNX file (default TRAYLENS_MODEL_PATH)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def run_server(argv: Sequence[str]) -> int:
    """Start uvicorn with the app factory (settings are validated first, failing fast)."""
    args = _serve_parser().parse_args(argv)
    load_settings()
    import uvicorn

    uvicorn.run("serve.main:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level)
    return 0


def _print_table(path: Path, payload: dict[str, Any]) -> None:
    """A short human-readable summary of one photo."""
    print(f"{path}  ({payload['image']['width']}x{payload['image']['height']}, "
          f"scale: {payload['scale']['source'] or 'none'})")
    for item in payload["items"]:
        grams = item["grams"]
        amount = f"{grams['value']:.0f} g [{grams['low']:.0f}-{grams['high']:.0f}] " \
                 f"({grams['source']})" if grams else "? g"
        name = item["names"]["en"] or item["names"]["ko"] or item["label"]
        name = name if len(name) <= 40 else name[:39] + "…"
        print(f"  {name:<40} {item['confidence']:.2f}  {amount}")
    kcal = payload["totals"]["nutrients"].get("energy_kcal")
    print(f"  total {payload['totals']['grams']:.0f} g, "
          f"{'?' if kcal is None else f'{kcal:.0f}'} kcal")


def run_analyze(argv: Sequence[str]) -> int:
    """The same pipeline as POST /v1/analyze, over files, printing a table or JSON."""
    from model.infer.runtime import ImageError, ModelFileError, TrayModel, load_image
    from serve.services.analyses import analysis_payload, analysis_row
    from serve.services.menus import MenuFileError, menu_from_file
    from serve.services.pipeline import ImageRequest, analyze

    args = _analyze_parser().parse_args(argv)
    settings = load_settings()
    try:
        model = TrayModel(args.model or settings.model_path,
                          threads=settings.intra_op_threads or None)
        menu = menu_from_file(model, args.menu) if args.menu else None
        fit = model.meta.input_size  # the service's own decode (see load_image)
        images = [load_image(p, max_pixels=settings.max_pixels, fit=fit) for p in args.images]
    except (ModelFileError, MenuFileError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    requests = [ImageRequest(img, px_per_cm=args.px_per_cm, menu=menu) for img in images]
    results, _ = analyze(model, requests, batch_size=settings.batch_size, top_k=settings.top_k,
                         review_below=settings.review_below)
    payloads = []
    for path, result in zip(args.images, results, strict=True):
        payload = analysis_payload(analysis_row(result, image_sha256=None))
        payloads.append({"file": str(path), **payload})
    if args.json:
        json.dump(payloads if len(payloads) > 1 else payloads[0], sys.stdout,
                  ensure_ascii=False, indent=2)
        print()
    else:
        for path, payload in zip(args.images, payloads, strict=True):
            _print_table(path, payload)
    return 0


def run_purge(argv: Sequence[str]) -> int:
    """Delete stored photos older than TRAYLENS_IMAGE_RETENTION_DAYS, and files no image row
    names (left by a crash during an erasure; see core.storage.purge_orphans)."""
    from serve.core.storage import ImageStore, purge_expired, purge_orphans
    from serve.db.migrate import upgrade_database
    from serve.db.session import make_engine, make_session_factory, transaction

    argparse.ArgumentParser(prog="python -m serve purge-images").parse_args(argv)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    with transaction(make_session_factory(engine)) as session:
        count = purge_expired(session, ImageStore(settings.image_dir),
                              settings.image_retention_days)
        orphans = purge_orphans(session, ImageStore(settings.image_dir))
    print(f"purged {count} stored image(s) older than {settings.image_retention_days} days")
    print(f"removed {orphans} file(s) that no image row names")
    return 0


COMMANDS = {"analyze": run_analyze, "purge-images": run_purge}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch: a known command name first, else the server options."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            return COMMANDS[args[0]](args[1:])
        return run_server(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
