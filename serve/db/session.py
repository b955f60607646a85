"""Engine, session factory, transactions and the Core insert helper of the hot write path."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, insert, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from serve.db.base import Base


def set_columns(obj: Base) -> dict[str, Any]:
    """The column values set on a transient ORM object (what a flush would insert).

    Unset columns are left out, so an INSERT applies their defaults as the ORM would.
    """
    columns = inspect(type(obj)).columns
    return {columns[key].key: value for key, value in inspect(obj).dict.items()
            if key in columns}


def insert_rows(session: Session, rows: list[Any]) -> None:
    """INSERT transient ORM objects of one class with one Core statement.

    Cheaper than the unit of work for the hot write path: no identity map, no per-object
    flush bookkeeping. The objects stay transient; the caller sets their ids beforehand, and
    builds them alike (one executemany needs the same columns in every row).
    """
    if not rows:
        return
    values = [set_columns(r) for r in rows]
    if any(v.keys() != values[0].keys() for v in values):
        raise ValueError("insert_rows: the rows set different columns")
    table = inspect(type(rows[0])).local_table
    session.connection().execute(insert(table), values)


def insert_or_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT one row unless it collides with a unique key; True when inserted.

    ON CONFLICT DO NOTHING (SQLite and PostgreSQL) rather than catching IntegrityError, which
    would abort the surrounding transaction on PostgreSQL - the caller's own.
    """
    # Whether a row went in is read from RETURNING: the rowcount of INSERT ... ON CONFLICT
    # is not to be trusted (psycopg reports -1 through Core, the ORM path 1 even when the
    # conflict inserted nothing).
    table: Table = model.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        stmt = pg_insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        stmt = sqlite_insert(table).values(values).on_conflict_do_nothing()
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        stmt = insert(table).values(values)
    inserted = session.connection().execute(stmt.returning(*table.primary_key.columns))
    return inserted.first() is not None


PG_CONNECT_TIMEOUT_S = 5  # unless the URL sets connect_timeout
PG_POOL_TIMEOUT_S = 10  # waiting for a free pooled connection


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run while a writer commits; foreign keys are off by default in SQLite."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for a SQLite or PostgreSQL URL; SQLite gets WAL and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # No pre-ping: a SQLite file connection cannot go stale the way a server's can, and
        # the ping is one more statement on every checkout of every request.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Pre-ping replaces connections the server dropped (a restart, a failover); the connect
    # timeout bounds how long a request waits for an unreachable server before its 503.
    connect_args = {} if "connect_timeout" in parsed.query else {
        "connect_timeout": PG_CONNECT_TIMEOUT_S}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         pool_timeout=PG_POOL_TIMEOUT_S, connect_args=connect_args)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (responses are built after)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back everything on any error."""
    with factory() as session, session.begin():
        yield session
