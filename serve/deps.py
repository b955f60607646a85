"""FastAPI dependencies: settings, DB session, the active model, metrics, the inference
queue, the image store and the calling principal. Routes take them through the Annotated
aliases at the bottom, never from request.app.state.

The ones that only read app state are `async def`: FastAPI runs a plain `def` dependency in
the thread pool, a hop that costs more than the work. Those that touch the database stay
plain functions, off the event loop.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from serve.core.auth import Principal, authenticate, parse_bearer
from serve.core.metrics import ServiceMetrics
from serve.core.settings import Settings
from serve.core.storage import ImageStore
from serve.services.analyze import Env as AnalyzeEnv
from serve.services.model_registry import LoadedModel, ModelRegistry


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings (set by create_app)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    """The app's session factory (built in the lifespan)."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


def get_session(
    factory: Annotated[sessionmaker[Session], Depends(get_session_factory)],
) -> Iterator[Session]:
    """A session per request; writers open their own transaction with session.begin()."""
    with factory() as session:
        yield session


async def get_engine(request: Request) -> Engine:
    """The app's database engine (built in the lifespan)."""
    engine: Engine = request.app.state.engine
    return engine


async def get_metrics(request: Request) -> ServiceMetrics:
    """The app's Prometheus metrics."""
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def get_inference_slots(request: Request) -> threading.BoundedSemaphore:
    """The semaphore that queues model runs (see create_app)."""
    slots: threading.BoundedSemaphore = request.app.state.inference_slots
    return slots


async def get_decode_slots(request: Request) -> threading.BoundedSemaphore:
    """The semaphore that bounds photo decodes in flight (see create_app)."""
    slots: threading.BoundedSemaphore = request.app.state.decode_slots
    return slots



async def get_image_store(request: Request) -> ImageStore:
    """The app's content-addressed photo store (core.storage.make_image_store, built once)."""
    store: ImageStore = request.app.state.image_store
    return store


async def get_analyze_env(
    factory: Annotated[sessionmaker[Session], Depends(get_session_factory)],
    settings: Annotated[Settings, Depends(get_settings_dep)],
    slots: Annotated[threading.BoundedSemaphore, Depends(get_inference_slots)],
    metrics: Annotated[ServiceMetrics, Depends(get_metrics)],
    store: Annotated[ImageStore, Depends(get_image_store)],
    decode_slots: Annotated[threading.BoundedSemaphore, Depends(get_decode_slots)],
) -> AnalyzeEnv:
    """What the analyze upload path uses of the running app."""
    return AnalyzeEnv(factory, settings, slots, metrics, store, decode_slots)


async def get_task_send(request: Request) -> Callable[[str], None]:
    """Enqueue a background task run: the in-process runner's, or the Redis queue's."""
    send: Callable[[str], None] = request.app.state.tasks.send
    return send


async def get_registry(request: Request) -> ModelRegistry:
    """The app's model registry."""
    registry: ModelRegistry = request.app.state.models
    return registry


async def get_model(registry: Annotated[ModelRegistry, Depends(get_registry)]) -> LoadedModel:
    """The active model, taken once per request so a hot swap cannot change it mid-request."""
    return registry.active


def get_principal(
    factory: Annotated[sessionmaker[Session], Depends(get_session_factory)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """The caller from `Authorization: Bearer KEY`; 401 otherwise."""
    key = parse_bearer(authorization)
    with factory() as session:
        return authenticate(session, key)


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """The caller, who must hold an admin key (403 otherwise)."""
    principal.require_admin()
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[Engine, Depends(get_engine)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
InferenceSlotsDep = Annotated[threading.BoundedSemaphore, Depends(get_inference_slots)]
ImageStoreDep = Annotated[ImageStore, Depends(get_image_store)]
AnalyzeEnvDep = Annotated[AnalyzeEnv, Depends(get_analyze_env)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
SessionDep = Annotated[Session, Depends(get_session)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
TaskSendDep = Annotated[Callable[[str], None], Depends(get_task_send)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
AdminPrincipal = Annotated[Principal, Depends(get_admin)]
