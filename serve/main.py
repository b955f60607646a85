"""Assembles the FastAPI app: settings, lifespan (migrations, admin bootstrap, model), the
routers of serve.api (one static list, serve.api.api_router)."""
from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from nutrition_db.table import table
from serve.api import api_router
from serve.core.auth import bootstrap_admin
from serve.core.errors import ERROR_DESCRIPTIONS, ApiError
from serve.core.metrics import MetricsMiddleware, ServiceMetrics
from serve.core.responses import ApiJSONResponse
from serve.core.settings import Settings, get_settings
from serve.core.storage import make_image_store
from serve.core.textguard import RefuseNulMiddleware
from serve.db.migrate import upgrade_database
from serve.db.session import make_engine, make_session_factory, transaction
from serve.schemas.base import ErrorPublic
from serve.services.keys import has_active_admin
from serve.services.model_admin import ModelSync, startup_model
from serve.services.model_registry import LoadedModel, ModelRegistry, load_model
from serve.services.reanalysis import registry_models
from serve.services.tasks import InProcessRunner, TaskEnv
from serve.worker import QueueSender

log = logging.getLogger("traylens")

def _bootstrap(factory: sessionmaker[Session], key: str) -> None:
    """The first admin key on a fresh install; of workers starting together, one creates it
    and the others meet its unique hash and find it there."""
    try:
        with transaction(factory) as session:
            if bootstrap_admin(session, key):
                log.warning("created the bootstrap admin key from TRAYLENS_BOOTSTRAP_ADMIN_KEY")
    except IntegrityError:
        log.info("bootstrap admin key created by another worker")


def _warn_without_admin(factory: sessionmaker[Session]) -> None:
    """Nobody can administer a service without an admin key: say how to make one."""
    with factory() as session:
        if has_active_admin(session):
            return
    log.warning("no usable admin API key (none exists or all are revoked), so nobody can "
                "administer this service: create one "
                "with `python -m serve keys create --role admin` (or start once with "
                "TRAYLENS_BOOTSTRAP_ADMIN_KEY set)")


def _start(app: FastAPI, settings: Settings, preloaded: LoadedModel | None) -> None:
    """Create directories, migrate the database, bootstrap the admin key, load the model."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    factory = make_session_factory(engine)
    if settings.bootstrap_admin_key is not None:
        _bootstrap(factory, settings.bootstrap_admin_key.get_secret_value())
    _warn_without_admin(factory)
    try:
        deployed = preloaded or load_model(
            settings.model_path, intra_op_threads=settings.intra_op_threads
        )
    except ApiError as exc:  # fail fast: a service without its model must not start
        raise RuntimeError(f"cannot start: {exc.detail} (set TRAYLENS_MODEL_PATH)") from exc
    table()  # read the nutrient table now, not in the first request (about 2 s)
    registry = ModelRegistry()
    loaded = startup_model(factory, deployed, settings.intra_op_threads)
    registry.activate(loaded)
    app.state.metrics.set_model(loaded.version, loaded.sha256)
    app.state.engine = engine
    app.state.session_factory = factory
    app.state.image_store = make_image_store(settings)
    app.state.models = registry


def _background(app: FastAPI, settings: Settings) -> InProcessRunner | QueueSender:
    """Where this process's background work goes, started; `app.state.tasks.send(name)`
    enqueues a run (a model activation's re-analysis)."""
    if settings.task_queue == "redis":
        tasks: InProcessRunner | QueueSender = QueueSender(settings)
    else:
        tasks = InProcessRunner(TaskEnv(
            app.state.session_factory, settings, app.state.image_store,
            models=registry_models(app.state.models), slots=app.state.inference_slots))
        tasks.start()
    app.state.tasks = tasks
    return tasks


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Startup and shutdown of one app instance (and its model sync thread)."""
    settings: Settings = app.state.settings
    _start(app, settings, app.state.preloaded_model)
    sync = None
    if settings.model_sync_seconds > 0:
        sync = ModelSync(settings.model_sync_seconds, app.state.session_factory,
                         app.state.models, app.state.metrics, settings.intra_op_threads)
        sync.start()
    tasks = _background(app, settings)  # here, or in `python -m serve worker` processes
    try:
        yield
    finally:
        tasks.stop()
        if sync is not None:
            sync.stop()
        app.state.engine.dispose()
        app.state.metrics.process_exit()


def _json_error(status: int, code: str, detail: str, headers: dict[str, str] | None = None
                ) -> JSONResponse:
    """The one error body shape."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    """One readable line per invalid field."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON {"error", "detail"}; unexpected ones are logged, not leaked."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        """The service's own errors, with their status and code (and any extra fields)."""
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        """Schema violations of JSON bodies, queries and paths."""
        return _json_error(422, "invalid_input", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Routing errors (unknown path, wrong method) and plain HTTPExceptions."""
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error")  # 400: FastAPI's "error parsing the body"
        headers = dict(exc.headers) if exc.headers else None
        return _json_error(exc.status_code, code, str(exc.detail), headers)

    retry_after = str(app.state.settings.db_retry_after_seconds)

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """The database is down, restarting or unreachable (a connection refused or cut, the
        pool exhausted): a clear 503 the client may retry, not a 500. The engine's pre-ping
        replaces dead connections, so the service recovers by itself when the database does."""
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    exc.__class__.__name__)
        return _json_error(503, "database_unavailable",
                           "the database is unavailable; retry later", {"Retry-After": retry_after})

    for unavailable in (OperationalError, InterfaceError, PoolTimeoutError,
                        psycopg.OperationalError, psycopg.InterfaceError):
        app.add_exception_handler(unavailable, database_unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """A bug: logged with its traceback; the client gets no internals."""
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _json_error(500, "internal_error", "internal error; the server logged it")


def _error_codes(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The 4xx statuses an operation may answer: those of its kind (every /v1 route needs a
    key; an id in the path or a query filter naming one may be unknown; a body may be
    malformed) and those its route declares (core.errors.documented)."""
    codes = {422} | {int(c) for c in operation.get("responses", {}) if c.startswith("4")}
    if path.startswith("/v1"):
        codes |= {401, 403}
        ids_in_query = any(p.get("in") == "query" and p.get("name", "").endswith("_id")
                           for p in operation.get("parameters", []))
        if "{" in path or method != "get" or ids_in_query:
            codes.add(404)
        if method in ("post", "put", "patch"):
            codes.add(409)
    content = operation.get("requestBody", {}).get("content", {})
    if content:
        codes.add(400)
    if "multipart/form-data" in content:
        codes |= {413, 415}
    return codes


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the service's error body ({"error", "detail"}) as the
    schema of every 4xx, FastAPI's validation-array schema (never answered) removed."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["ErrorPublic"] = ErrorPublic.model_json_schema(
        ref_template="#/components/schemas/{model}")
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in sorted(_error_codes(path, method, operation)):
                responses[str(code)] = {"description": ERROR_DESCRIPTIONS[code],
                                        "content": error}
    return schema


def _install_openapi(app: FastAPI) -> None:
    """app.openapi() documents the errors (document_errors) once, then caches."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, *, model: LoadedModel | None = None) -> FastAPI:
    """A new app; `model` lets tests share one loaded model between apps."""
    app = FastAPI(
        title="TrayLens",
        version="0.1.0",
        summary="Meal-photo nutrition analysis for canteen kiosks and diet apps",
        lifespan=_lifespan,
        default_response_class=ApiJSONResponse,
    )
    app.state.settings = settings or get_settings()
    app.state.preloaded_model = model
    app.state.metrics = ServiceMetrics()
    # Concurrent ORT runs would fight over the same cores: queue them instead.
    app.state.inference_slots = threading.BoundedSemaphore(app.state.settings.inference_concurrency)
    # Each decode may briefly hold a full-size photo: bound them, so that 16 clients sending
    # big PNGs at once cannot hold 16 of them (issue 18; docs/RELIABILITY.md).
    app.state.decode_slots = threading.BoundedSemaphore(app.state.settings.decode_concurrency)
    app.add_middleware(RefuseNulMiddleware)  # inside metrics: refusals are counted
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    _install_error_handlers(app)
    _install_openapi(app)
    app.include_router(api_router)
    return app
