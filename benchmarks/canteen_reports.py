"""How long the canteen reports take on a month of trays: waste by dish for the whole
canteen and one person's ISO week, on SQLite and (when reachable) PostgreSQL.

    python benchmarks/canteen_reports.py [--trays 3000] [--postgres URL] [--embedding-dim N]

Builds a throwaway database with synthetic pairs made of real MFDS food ids, mask areas and
embeddings (the numbers only exercise the queries, the matching and the arithmetic), then
times each report three times and prints the best run. Figures go to docs/BENCHMARKS.md,
"Canteen reports".
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from model.infer.runtime import TrayModel
from serve.core.settings import SHIPPED_MODEL
from serve.core.storage import record_image
from serve.db.migrate import upgrade_database
from serve.db.session import make_engine, make_session_factory
from serve.db.tables.analyses import Analysis, AnalysisItem
from serve.db.tables.core import Canteen, User
from serve.db.tables.pairs import MealPair
from serve.services.diary import days_report
from serve.services.pipeline import EMBEDDING_DECIMALS
from serve.services.waste import canteen_waste

FOODS = ("mfds:D301-022000000-0001", "mfds:D105-216010000-0001", "mfds:D315-670000000-0001",
         "mfds:D306-285000000-0003")
START = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC)


def looks(dim: int) -> list[list[float]]:
    """One stored embedding per food (`dim` floats rounded as the pipeline keeps them):
    pairing reads and compares them, so the reports pay for it as they would in a canteen."""
    return [[round(random.Random(n).uniform(-0.125, 0.125), EMBEDDING_DECIMALS)
             for _ in range(dim)] for n in range(len(FOODS))]


def shipped_embedding_dim() -> int:
    """The length of the shipped model's item embeddings (its metadata)."""
    return TrayModel(SHIPPED_MODEL).meta.embedding_dim


def _analysis(canteen: str, user: str, at: dt.datetime, state: str,
              grams: list[float], look: list[list[float]]) -> Analysis:
    """One stored tray photo with an item per food."""
    a = Analysis(canteen_id=canteen, user_id=user, meal_state=state, captured_at=at,
                 image_sha256="0" * 64, image_width=1024, image_height=768, model_version="b")
    a.items = [AnalysisItem(position=n, label=f, food_id=f, confidence=0.9, grams=g,
                            box=[n * 250.0, 100.0, n * 250.0 + 200, 300.0],
                            area_px=g * 100.0, embedding=look[n])
               for n, (f, g) in enumerate(zip(FOODS, grams, strict=True))]
    return a


def populate(factory: sessionmaker[Session], trays: int, users: int,
             dim: int) -> tuple[str, str]:
    """A canteen with `trays` closed pairs over 28 days; returns (canteen id, a user id)."""
    rng = random.Random(0)
    look = looks(dim)
    with factory.begin() as s:
        record_image(s, sha256="0" * 64, kind="photo", content_type="image/jpeg",
                     size_bytes=1, width=1024, height=768)
        canteen = Canteen(name="bench", timezone="Asia/Seoul")
        s.add(canteen)
        s.flush()
        people = [User(canteen_id=canteen.id, sex="female", birth_year=1990)
                  for _ in range(users)]
        s.add_all(people)
        s.flush()
        for n in range(trays):
            user, at = people[n % users], START + dt.timedelta(days=n * 28 // trays)
            served = [rng.uniform(50, 400) for _ in FOODS]
            before = _analysis(canteen.id, user.id, at, "before", served, look)
            after = _analysis(canteen.id, user.id, at + dt.timedelta(minutes=20), "after",
                              [g * rng.uniform(0, 0.6) for g in served], look)
            s.add_all([before, after])
            s.flush()
            s.add(MealPair(canteen_id=canteen.id, user_id=user.id, before_analysis_id=before.id,
                           after_analysis_id=after.id, before_at=at,
                           after_at=at + dt.timedelta(minutes=20)))
        return canteen.id, people[0].id


def best_of(fn: Callable[[], object], runs: int = 3) -> float:
    """Fastest of a few runs, in milliseconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times)


def measure(url: str, trays: int, users: int, dim: int) -> None:
    """Populate one database and print the report timings."""
    engine = make_engine(url)
    upgrade_database(engine)
    factory = make_session_factory(engine)
    canteen, user_id = populate(factory, trays, users, dim)
    first, last = START.date(), START.date() + dt.timedelta(days=27)

    def waste() -> object:
        with factory() as s:
            return canteen_waste(s, canteen, first, last)

    def week() -> object:
        with factory() as s:
            user = s.get(User, user_id)
            assert user is not None
            return days_report(s, user, first, first + dt.timedelta(days=6), "kdri2020")

    w_ms, k_ms = best_of(waste), best_of(week)
    kind = make_url(url).get_backend_name()
    print(f"{kind:10s} {dim}-d embeddings, waste over {trays} trays / 28 days: {w_ms:8.1f} ms "
          f"({w_ms / trays:.2f} ms per tray); one user's week "
          f"({trays // users * 7 // 28} trays): {k_ms:6.1f} ms")
    engine.dispose()


def main() -> None:
    """Run on SQLite, then on PostgreSQL in a throwaway schema when reachable."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trays", type=int, default=3000)
    ap.add_argument("--users", type=int, default=150)
    ap.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/traylens_test")
    ap.add_argument("--embedding-dim", type=int, nargs="+",
                    help="stored embedding lengths to time (default: the shipped model's)")
    args = ap.parse_args()
    dims = args.embedding_dim or [shipped_embedding_dim()]
    for dim in dims:
        with tempfile.TemporaryDirectory() as tmp:
            measure(f"sqlite:///{Path(tmp) / 'bench.db'}", args.trays, args.users, dim)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    base = make_engine(args.postgres)
    try:
        with base.begin() as conn:
            conn.execute(text(f'create schema "{schema}"'))
    except Exception as exc:  # no server: the SQLite figure stands alone
        print(f"postgresql skipped: {exc.__class__.__name__}")
        return
    try:
        url = make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
        for dim in dims:
            measure(url.render_as_string(hide_password=False), args.trays, args.users, dim)
            with base.begin() as conn:  # a fresh schema for the next length
                conn.execute(text(f'drop schema "{schema}" cascade'))
                conn.execute(text(f'create schema "{schema}"'))
    finally:
        with base.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))


if __name__ == "__main__":
    main()
