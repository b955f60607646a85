"""Command line: search, nutrients, stats, build, labels, n5k-check (thin over the library)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nutrition_db.errors import InvalidAmountError, UnknownFoodError
from nutrition_db.schema import NUTRIENTS, Food


def _food_json(food: Food) -> dict[str, object]:
    """A Food as a JSON-ready dict."""
    return dataclasses.asdict(food)


def _print_json(data: object) -> None:
    """Pretty JSON on stdout, Korean kept readable."""
    print(json.dumps(data, ensure_ascii=False, indent=2))


def cmd_search(args: argparse.Namespace) -> int:
    """Prints the best matches for a query."""
    from nutrition_db.table import search
    foods = search(args.query, limit=args.limit)
    if args.json:
        _print_json([_food_json(f) for f in foods])
        return 0
    for f in foods:
        kcal = f.nutrients.get("energy_kcal")
        kcal_text = "?" if kcal is None else f"{kcal:.4g}"
        print(f"{f.food_id}\t{f.name}\t{kcal_text} kcal/100 g\t{f.trust}\t{f.category or ''}")
    if not foods:
        print(f"no food matches {args.query!r}", file=sys.stderr)
    return 0


def cmd_nutrients(args: argparse.Namespace) -> int:
    """Prints the nutrients of an amount of one food."""
    from nutrition_db.table import get_food, nutrients_for
    values = nutrients_for(args.food_id, args.grams)
    food = get_food(args.food_id)
    if args.json:
        _print_json({"food_id": food.food_id, "name": food.name, "grams": args.grams,
                     "trust": food.trust, "basis_note": food.basis_note, "nutrients": values})
        return 0
    print(f"{food.food_id}  {food.name}  {args.grams:g} g  ({food.trust}; {food.basis_note})")
    for n in NUTRIENTS:
        value = values[n.key]
        print(f"  {n.name_en:<14} {'unknown' if value is None else f'{value:.4g}'} {n.unit}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Prints row counts and nutrient coverage."""
    from nutrition_db.table import stats
    data = stats()
    if args.json:
        _print_json(data)
        return 0
    print(f"{data['foods']} foods: " + ", ".join(f"{k} {v}" for k, v in data["by_source"].items()))
    for key, cov in data["nutrient_coverage"].items():
        print(f"  {key:<18} {cov['all']:.1%}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Rebuilds the table from the raw sources."""
    from nutrition_db.build import build
    count = build(args.raw, args.out, progress=True)
    print(f"wrote {count} foods to {args.out}")
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """Validates the label map and prints it."""
    from nutrition_db.labels import label_map, validate_label_map
    lm = label_map()
    validate_label_map(lm)
    for i, e in enumerate(lm.entries):
        print(f"{i}\t{e.label}\t{e.kind}\t{e.food_id or '-'}")
    return 0


def cmd_n5k_check(args: argparse.Namespace) -> int:
    """Prints the Nutrition5k recomputation error summary."""
    from nutrition_db.n5k_check import check_dishes
    rows = [dataclasses.asdict(s) for s in check_dishes(args.raw, not args.skip_zero_totals)]
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print("  ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in r.items()))
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per task."""
    from nutrition_db.paths import RAW_DIR, TABLE_PATH
    p = argparse.ArgumentParser(prog="python -m nutrition_db", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="find foods by Korean or English name")
    s.add_argument("query")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)
    n = sub.add_parser("nutrients", help="nutrients in an amount of one food")
    n.add_argument("food_id")
    n.add_argument("--grams", type=float, required=True)
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=cmd_nutrients)
    st = sub.add_parser("stats", help="row counts by source and nutrient coverage")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stats)
    b = sub.add_parser("build", help="rebuild the table from the raw sources")
    b.add_argument("--raw", type=Path, default=RAW_DIR)
    b.add_argument("--out", type=Path, default=TABLE_PATH)
    b.set_defaults(func=cmd_build)
    sub.add_parser("labels", help="validate and list the label map").set_defaults(
        func=cmd_labels)
    k = sub.add_parser("n5k-check", help="Nutrition5k dishes recomputed vs published totals")
    k.add_argument("--raw", type=Path, default=RAW_DIR)
    k.add_argument("--skip-zero-totals", action="store_true")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_n5k_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; bad input prints one clear line on stderr and exits non-zero."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UnknownFoodError, InvalidAmountError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped early (`... | head`): point stdout at devnull so the exit flush
        # does not fail again, and end quietly as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
