"""Alembic environment: the engine comes from serve.db.migrate (app startup) or the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

from serve.db.base import Base
from serve.db.session import make_engine

# Every module that defines tables on Base, so autogenerate sees the whole schema.
from serve.db.tables import analyses, core, kiosks, menus, pairs, webhooks  # noqa: F401

target_metadata = Base.metadata


def _engine() -> Engine:
    """The engine passed by serve.db.migrate.upgrade_database, else one built from the settings."""
    engine = context.config.attributes.get("engine")
    if engine is not None:
        return engine
    from serve.core.settings import get_settings

    return make_engine(get_settings().database_url)


def run_migrations_online() -> None:
    """Run migrations in one transaction (batch mode lets SQLite alter tables)."""
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
