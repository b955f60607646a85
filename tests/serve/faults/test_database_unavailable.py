"""In process: an unreachable database answers 503 database_unavailable with Retry-After
(one exception handler, serve.main), /readyz says not ready, and the service serves again
once the database is back, without a restart."""
from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from benchmarks.serve_speed import free_port
from serve.db.session import make_engine, make_session_factory
from serve.main import create_app
from serve.services.model_registry import LoadedModel
from tests.serve.conftest import ADMIN_KEY, make_settings

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_unreachable_database_is_503_with_retry_after(tmp_path: Path,
                                                      loaded_model: LoadedModel) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'ok.db'}", tmp_path, loaded_model,
                             db_retry_after_seconds=7)
    with TestClient(create_app(settings, model=loaded_model), raise_server_exceptions=False
                    ) as client:
        app = client.app
        assert client.get("/v1/keys/me", headers=ADMIN).status_code == 200
        working = app.state.engine, app.state.session_factory  # type: ignore[attr-defined]
        # A PostgreSQL nobody listens on: every connection is refused (psycopg's
        # OperationalError, wrapped by SQLAlchemy).
        down = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
        app.state.engine = down  # type: ignore[attr-defined]
        app.state.session_factory = make_session_factory(down)  # type: ignore[attr-defined]
        try:
            for method, path in [("GET", "/v1/keys/me"), ("GET", "/v1/analyses"),
                                 ("POST", "/v1/canteens")]:
                answer = client.request(method, path, headers=ADMIN,
                                        json={"name": "x"} if method == "POST" else None)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.json()["error"] == "database_unavailable"
                assert answer.headers["Retry-After"] == "7"
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"].startswith("error")
        finally:
            down.dispose()
            app.state.engine, app.state.session_factory = working  # type: ignore[attr-defined]
        assert client.get("/v1/keys/me", headers=ADMIN).status_code == 200
        assert client.get("/readyz").status_code == 200
