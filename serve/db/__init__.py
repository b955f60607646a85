"""Database layer: engine and sessions, tables by domain, access rules, Alembic migrations."""
