"""The served model: what it is, and (admins) loading a new ONNX file or rolling back live."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from serve.core.errors import ApiError
from serve.core.settings import Settings
from serve.core.storage import sha256_hex
from serve.core.uploads import read_upload_form
from serve.db.session import transaction
from serve.deps import AdminPrincipal, CurrentPrincipal, RegistryDep
from serve.model_registry import LoadedModel, load_model
from serve.model_sync import record_active

router = APIRouter(prefix="/v1/model", tags=["model"])


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """Version, labels with their food ids, metrics and provenance of a loaded model."""
    meta = loaded.model.meta
    return {
        "version": meta.version,
        "sha256": loaded.sha256,
        "loaded_at": loaded.loaded_at.isoformat(),
        "fingerprint": meta.fingerprint,
        "input_size": list(meta.input_size),
        "labels": [{"index": i, "label": label, "food_id": food_id}
                   for i, (label, food_id) in enumerate(zip(meta.labels, meta.food_ids,
                                                            strict=True))],
        "metrics": meta.metrics,
        "embedding_dim": meta.embedding_dim,
        "flip_test": meta.flip_test,  # each photo is also run mirrored (twice the network time)
        "portion_calibrated_labels": sorted(meta.portion),
    }


@router.get("")
def get_model(_: CurrentPrincipal, registry: RegistryDep) -> dict[str, Any]:
    """The active model and the ones a rollback would return to (newest last)."""
    info = model_info(registry.active)
    info["previous"] = [{"version": m.version, "sha256": m.sha256} for m in registry.history]
    return info


def _install(request: Request, data: bytes) -> dict[str, Any]:
    """Save the upload under its hash, load and test it, then swap it in atomically."""
    settings: Settings = request.app.state.settings
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    path = settings.model_dir / f"{sha256_hex(data)}.onnx"
    if not path.exists():
        tmp = path.with_suffix(".uploading")
        tmp.write_bytes(data)
        tmp.replace(path)
    loaded = load_model(path, intra_op_threads=settings.intra_op_threads)
    _activate(request, loaded)
    return model_info(loaded)


def _activate(request: Request, loaded: LoadedModel) -> None:
    """Make a model active, record it and expose it in /metrics."""
    request.app.state.models.activate(loaded)
    _record(request, loaded)


def _record(request: Request, loaded: LoadedModel) -> None:
    """Record the active model (other workers follow it; it survives restarts)."""
    with transaction(request.app.state.session_factory) as session:
        record_active(session, loaded)
    request.app.state.metrics.set_model(loaded.version, loaded.sha256)


@router.post("", status_code=201)
async def upload_model(request: Request, _: AdminPrincipal) -> dict[str, Any]:
    """Load a new ONNX file (multipart field 'model'); requests in flight finish on the old one."""
    settings: Settings = request.app.state.settings
    form = await read_upload_form(
        request, max_file_bytes=int(settings.max_model_mb * 1048576), max_files=1
    )
    upload = form.file("model")
    if upload is None or not upload.data:
        raise ApiError(422, "model_required", "send the ONNX file as multipart field 'model'")
    return await run_in_threadpool(_install, request, upload.data)


def _rollback(request: Request) -> dict[str, Any]:
    """Return to the previous model and record it."""
    loaded = request.app.state.models.rollback()
    _record(request, loaded)
    return model_info(loaded)


@router.post("/rollback")
async def rollback(request: Request, _: AdminPrincipal) -> dict[str, Any]:
    """Return to the model that was active before the last load."""
    return await run_in_threadpool(_rollback, request)
