"""serve.db.session: the Core insert helper of the hot write path, on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.db.base import new_id
from serve.db.session import insert_rows, make_engine, make_session_factory, set_columns
from serve.db.tables.core import Canteen
from tests.serve.conftest import Service


def test_set_columns_holds_only_what_was_set() -> None:
    canteen = Canteen(id="c1", name="north")
    assert set_columns(canteen) == {"id": "c1", "name": "north"}


def test_insert_rows_applies_column_defaults_and_keeps_objects_transient(
    service: Service,
) -> None:
    engine = make_engine(service.settings.database_url)
    factory = make_session_factory(engine)
    rows = [Canteen(id=new_id(), name=f"core-{i}") for i in range(3)]
    with factory() as session, session.begin():
        insert_rows(session, rows)
        assert not session.new and all(r not in session for r in rows)
    with factory() as session:
        stored = session.scalars(select(Canteen).where(Canteen.id.in_([r.id for r in rows]))
                                 .order_by(Canteen.name)).all()
    assert [c.name for c in stored] == ["core-0", "core-1", "core-2"]
    assert all(c.timezone == "UTC" and c.created_at is not None for c in stored)  # defaults
    engine.dispose()


def test_insert_rows_refuses_rows_that_set_different_columns(service: Service) -> None:
    engine = make_engine(service.settings.database_url)
    with Session(engine) as session, session.begin():
        rows = [Canteen(id=new_id(), name="a"), Canteen(id=new_id(), name="b", timezone="UTC")]
        with pytest.raises(ValueError, match="different columns"):
            insert_rows(session, rows)
        insert_rows(session, [])  # nothing to do
    engine.dispose()
