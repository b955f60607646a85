"""The served model: what it is, and (admins) loading a new ONNX file or rolling back live,
which also starts re-analysing the last days' stored photos with it."""
from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from serve.api.forms import multipart_body
from serve.core.errors import ApiError
from serve.core.uploads import read_upload_form
from serve.deps import (
    AdminPrincipal,
    CurrentPrincipal,
    MetricsDep,
    RegistryDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    TaskSendDep,
)
from serve.schemas.models import ActiveModel, ModelInfo, ReanalysisProgress
from serve.services import model_admin as service
from serve.services import reanalysis

router = APIRouter(prefix="/v1/model", tags=["model"])


@router.get("", response_model=ActiveModel)
def get_model(_: CurrentPrincipal, registry: RegistryDep) -> dict[str, Any]:
    """The active model and the ones a rollback would return to (newest last)."""
    return service.active_info(registry)


@router.post("", status_code=201, response_model=ModelInfo, openapi_extra=multipart_body(
    {"model": {"type": "string", "format": "binary", "description": "the ONNX file"}},
    required=["model"]))
async def upload_model(
    request: Request, _: AdminPrincipal, settings: SettingsDep, registry: RegistryDep,
    factory: SessionFactoryDep, metrics: MetricsDep, send: TaskSendDep, force: bool = False,
) -> dict[str, Any]:
    """Load a new ONNX file (multipart field 'model'); requests in flight finish on the old one.

    Gated: 409 model_not_better (with the comparison) when its held-out metrics are worse
    than the active model's or missing; `?force=true` activates it anyway (recorded).
    Once active, the re-analysis of recent stored photos with it is enqueued.
    """
    form = await read_upload_form(
        request, max_file_bytes=int(settings.max_model_mb * 1048576), max_files=1
    )
    form.refuse_unknown({"model"})
    upload = form.file("model")
    if upload is None or not upload.data:
        raise ApiError(422, "model_required", "send the ONNX file as multipart field 'model'")
    return await run_in_threadpool(lambda: service.install(
        upload.data, settings=settings, registry=registry, factory=factory, metrics=metrics,
        force=force, on_activated=partial(reanalysis.start, send, settings)))


@router.post("/rollback", response_model=ModelInfo)
async def rollback(
    _: AdminPrincipal, registry: RegistryDep, factory: SessionFactoryDep, metrics: MetricsDep,
    settings: SettingsDep, send: TaskSendDep,
) -> dict[str, Any]:
    """Return to the model that was active before the last load (and re-analyse recent
    photos with it, like any activation)."""
    return await run_in_threadpool(lambda: service.rollback(
        registry=registry, factory=factory, metrics=metrics,
        on_activated=partial(reanalysis.start, send, settings)))


@router.get("/reanalysis", response_model=ReanalysisProgress)
def reanalysis_progress(
    _: AdminPrincipal, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Where re-analysing the recent stored photos with the active model stands."""
    return reanalysis.progress(session, settings)


@router.post("/reanalysis", status_code=202, response_model=ReanalysisProgress)
def start_reanalysis(
    _: AdminPrincipal, session: SessionDep, settings: SettingsDep, send: TaskSendDep
) -> dict[str, Any]:
    """Enqueue a run of the re-analysis now (as an activation does: to resume, or after
    raising the lookback); 409 reanalysis_off when the lookback is 0."""
    return reanalysis.request_run(session, settings, send)
