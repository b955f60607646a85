"""Command line: `python -m serve [--host H --port P]` runs the service; the commands of
COMMANDS do the rest (`python -m serve --help` lists them, each with its own --help):
`analyze IMAGE... [--menu menu.json] [--json]` runs the pipeline offline, `migrate` brings the
database schema up to date, `keys create|list|revoke` manages API keys, `purge-images`
applies the image retention setting, `worker` runs background tasks from the Redis queue.
Each takes the service's settings (TRAYLENS_*)."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from serve.core.settings import Settings, SettingsError, load_settings
from serve.db.tables.core import Role


def _serve_parser() -> argparse.ArgumentParser:
    """Options of the server command."""
    parser = argparse.ArgumentParser(
        prog="python -m serve", epilog=_commands_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the service (with no command), or one of the commands below.")
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
    if payload.get("no_food_found"):
        print(f"  NO FOOD FOUND: {payload['message']}")
        return
    kcal = payload["totals"]["nutrients"].get("energy_kcal")
    print(f"  total {payload['totals']['grams']:.0f} g, "
          f"{'?' if kcal is None else f'{kcal:.0f}'} kcal")


def run_analyze(argv: Sequence[str]) -> int:
    """The same pipeline as POST /v1/analyze, over files, printing a table or JSON."""
    from model.infer.images import ImageError, load_image
    from model.infer.runtime import ModelFileError, TrayModel
    from serve.services.analyses import analysis_payload, analysis_row
    from serve.services.menus import MenuFileError, menu_from_file
    from serve.services.pipeline import ImageRequest, analyze

    args = _analyze_parser().parse_args(argv)
    settings = load_settings()
    try:
        model = TrayModel(args.model or settings.model_path,
                          threads=settings.intra_op_threads or None)
        menu = (menu_from_file(model, args.menu, refine=settings.refine_masks) if args.menu
                else None)
        fit = model.meta.input_size  # the service's own decode (see load_image)
        images = [load_image(p, max_pixels=settings.max_pixels, fit=fit) for p in args.images]
    except (ModelFileError, MenuFileError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    requests = [ImageRequest(img, px_per_cm=args.px_per_cm, menu=menu) for img in images]
    results, _ = analyze(model, requests, batch_size=settings.batch_size, top_k=settings.top_k,
                         review_below=settings.review_below,
                         refine_masks=settings.refine_masks)
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
    from serve.core.storage import make_image_store, purge_expired, purge_orphans
    from serve.db.migrate import upgrade_database
    from serve.db.session import make_engine, make_session_factory, transaction

    argparse.ArgumentParser(prog="python -m serve purge-images").parse_args(argv)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    store = make_image_store(settings)
    with transaction(make_session_factory(engine)) as session:
        count = purge_expired(session, store, settings.image_retention_days)
        orphans = purge_orphans(session, store)
    print(f"purged {count} stored image(s) older than {settings.image_retention_days} days")
    print(f"removed {orphans} file(s) that no image row names")
    return 0


def run_worker(argv: Sequence[str]) -> int:
    """Serve the task queue (TRAYLENS_TASK_QUEUE=redis): webhook deliveries, weekly reports
    and the image purge, plus their schedule (docs/SCALING.md)."""
    import logging

    parser = argparse.ArgumentParser(prog="python -m serve worker",
                                     description="Run background tasks from the Redis queue.")
    parser.add_argument("--threads", type=int, default=4, help="tasks run at once")
    parser.add_argument("--no-schedule", action="store_true",
                        help="only work the queue; another process enqueues the periodic tasks")
    args = parser.parse_args(argv)
    settings = load_settings()
    if settings.task_queue != "redis":
        print("error: TRAYLENS_TASK_QUEUE is not 'redis': the service processes run the "
              "background tasks themselves", file=sys.stderr)
        return 2
    from serve.worker import run_worker as serve_queue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve_queue(settings, threads=args.threads, scheduler=not args.no_schedule)
    return 0


def _migrated_engine(settings: Settings) -> Engine:
    """The service's database (TRAYLENS_DATABASE_URL), migrated to the newest schema."""
    from serve.db.migrate import upgrade_database
    from serve.db.session import make_engine

    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    return engine


def run_migrate(argv: Sequence[str]) -> int:
    """Bring the database schema to the newest migration, then exit (run before the service)."""
    from sqlalchemy import text

    argparse.ArgumentParser(prog="python -m serve migrate",
                            description=_summary(run_migrate)).parse_args(argv)
    settings = load_settings()
    engine = _migrated_engine(settings)
    try:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    print(f"database {engine.url.render_as_string(hide_password=True)} "
          f"is at revision {revision}")
    return 0


def _keys_parser() -> argparse.ArgumentParser:
    """Options of `keys create|list|revoke`."""
    parser = argparse.ArgumentParser(
        prog="python -m serve keys",
        description="Manage API keys in the service's database (TRAYLENS_DATABASE_URL), "
                    "as an operator: no key is needed to run these.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
    create = sub.add_parser("create", help="create a key and print it (shown this once)",
                            description="Create a key. The key alone goes to stdout, so "
                            "KEY=$(python -m serve keys create --role admin) keeps it.")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--canteen", metavar="ID",
                        help="the canteen of a kiosk or app key (required for those)")
    create.add_argument("--name", help="a label for the key (default: '<role> key (cli)')")
    create.add_argument("--json", action="store_true",
                        help="print the whole answer of POST /v1/keys as JSON")
    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id shown by `keys list`")
    return parser


def run_keys(argv: Sequence[str]) -> int:
    """Create, list and revoke API keys (`keys create --role admin` makes the first admin)."""
    from pydantic import ValidationError

    from serve.core.errors import ApiError
    from serve.db.session import make_session_factory
    from serve.schemas.keys import KeyCreate, KeyPublic
    from serve.services import keys

    args = _keys_parser().parse_args(argv)
    engine = _migrated_engine(load_settings())
    factory = make_session_factory(engine)
    try:
        with factory() as session:
            if args.action == "create":
                body = KeyCreate(name=args.name or f"{args.role} key (cli)", role=Role(args.role),
                                 canteen_id=args.canteen)
                created = keys.new_key(session, keys.OPERATOR, body)
                if args.json:
                    print(created.model_dump_json(indent=2))
                else:
                    print(f"created {created.role.value} key {created.id} ({created.name}); "
                          "it is shown only now:", file=sys.stderr)
                    print(created.key)
            elif args.action == "list":
                rows = [KeyPublic.model_validate(r) for r in keys.list_keys(session)]
                if args.json:
                    print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
                else:
                    _print_keys(rows)
            else:
                row = keys.revoke_key(session, keys.OPERATOR, args.key_id)
                print(f"revoked key {row.id} ({row.name}, {row.role})")
    except ApiError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def _print_keys(rows: Sequence[Any]) -> None:
    """One line per key: id, role, canteen, prefix, created, revoked, name."""
    print(f"{'id':<32}  {'role':<6}  {'canteen':<32}  {'prefix':<10}  {'created':<19}  "
          f"{'revoked':<19}  name")
    for r in rows:
        revoked = r.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if r.revoked_at else "-"
        print(f"{r.id:<32}  {r.role.value:<6}  {r.canteen_id or '-':<32}  {r.prefix:<10}  "
              f"{r.created_at:%Y-%m-%d %H:%M:%S}  {revoked:<19}  {r.name}")


COMMANDS = {"analyze": run_analyze, "migrate": run_migrate, "keys": run_keys,
            "purge-images": run_purge, "worker": run_worker}


def _summary(command: Any) -> str:
    """The first paragraph of a command's docstring, on one line: its line in `--help`."""
    return " ".join((command.__doc__ or "").strip().split("\n\n")[0].split())


def _commands_help() -> str:
    """The epilog of `python -m serve --help`: every command of COMMANDS."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {_summary(fn)}" for name, fn in COMMANDS.items()]
    return ("commands (python -m serve COMMAND --help for each one's options):\n"
            + "\n".join(lines))


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
