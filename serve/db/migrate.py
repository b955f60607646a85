"""Alembic migrations (serve/db/migrations), run at startup one process at a time."""
from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    """Alembic configuration pointing at serve/db/migrations, bound to this engine."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser treats % as interpolation; URL-encoded options (search_path) contain it.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["engine"] = engine
    return cfg


# Any fixed 64-bit number: the PostgreSQL advisory lock that serialises migrations.
MIGRATION_LOCK_KEY = 0x7472_6179_6C65_6E73


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold a lock across processes (uvicorn workers, replicas) while migrating."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade_database(engine: Engine) -> None:
    """Bring the schema to the newest migration (run at every startup, one process at a time)."""
    with migration_lock(engine):
        command.upgrade(alembic_config(engine), "head")
