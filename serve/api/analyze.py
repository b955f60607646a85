"""POST /v1/analyze and /v1/analyze/batch: photos in, stored analyses out (idempotent)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from serve.core.errors import ApiError
from serve.core.uploads import read_upload_form
from serve.deps import (
    CurrentPrincipal,
    ImageStoreDep,
    InferenceSlotsDep,
    MetricsDep,
    ModelDep,
    SessionFactoryDep,
    SettingsDep,
)
from serve.schemas.analyses import AnalysisPublic
from serve.schemas.analyze import BatchPublic
from serve.services import analyze as service
from serve.services.idempotency import Answer, check_idempotency_key, request_hash

router = APIRouter(prefix="/v1", tags=["analyze"])

IdempotencyKey = Annotated[str | None, Header()]
_FORM_FIELDS = {
    "image": {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP"},
    "depth": {"type": "string", "format": "binary",
              "description": "optional depth map in mm: 16-bit PNG or .npy, same size"},
    "menu_id": {"type": "string"}, "kiosk_id": {"type": "string"},
    "user_id": {"type": "string"}, "pair_id": {"type": "string"},
    "canteen_id": {"type": "string", "description": "admin keys only"},
    "meal_state": {"type": "string", "enum": ["before", "after"]},
    "captured_at": {"type": "string", "format": "date-time"},
}


def _form_schema(file_field: str, many: bool) -> dict[str, Any]:
    """OpenAPI body of a multipart analyze request (parsed by hand: core/uploads)."""
    props = {k: v for k, v in _FORM_FIELDS.items() if k not in ("image", "depth")}
    if many:
        props[file_field] = {"type": "array", "items": _FORM_FIELDS["image"]}
    else:
        props.update(image=_FORM_FIELDS["image"], depth=_FORM_FIELDS["depth"])
    schema = {"type": "object", "properties": props, "required": [file_field]}
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}


def _upload_files(form_files: dict[str, Any], allowed: set[str]) -> None:
    """Reject file fields the route does not take."""
    unknown = sorted(set(form_files) - allowed)
    if unknown:
        raise ApiError(422, "invalid_input",
                       f"unexpected file field(s) {unknown}; expected {sorted(allowed)}")


def _response(answer: Answer) -> JSONResponse:
    """The JSON answer; a stored first answer says it is a replay."""
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


@router.post("/analyze", status_code=201, response_model=AnalysisPublic,
             openapi_extra=_form_schema("image", many=False))
async def analyze_photo(
    request: Request, principal: CurrentPrincipal, loaded: ModelDep, settings: SettingsDep,
    factory: SessionFactoryDep, slots: InferenceSlotsDep, metrics: MetricsDep,
    store: ImageStoreDep, idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Analyse one photo: items, grams, nutrients, totals; logged for user_id when given."""
    key = check_idempotency_key(idempotency_key)
    form = await read_upload_form(request, max_file_bytes=settings.max_upload_bytes, max_files=2)
    _upload_files(form.files, {"image", "depth"})
    image, depth = form.file("image"), form.file("depth")
    if image is None:
        raise ApiError(422, "image_required", "send the photo as multipart field 'image'")
    fields = service.parse_fields(form.fields)
    files = [image] + ([depth] if depth else [])
    req = service.AnalyzeRequest(principal, loaded, fields, key,
                          request_hash(files, form.fields, "analyze"))
    env = service.Env(factory, settings, slots, metrics, store)
    return _response(await run_in_threadpool(service.analyze_single, env, req, image, depth))


@router.post("/analyze/batch", response_model=BatchPublic,
             openapi_extra=_form_schema("images", many=True))
async def analyze_batch(
    request: Request, principal: CurrentPrincipal, loaded: ModelDep, settings: SettingsDep,
    factory: SessionFactoryDep, slots: InferenceSlotsDep, metrics: MetricsDep,
    store: ImageStoreDep, idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Analyse many photos (field 'images', repeated) in ONNX Runtime batches."""
    key = check_idempotency_key(idempotency_key)
    form = await read_upload_form(request, max_file_bytes=settings.max_upload_bytes,
                                  max_files=settings.max_batch_images)
    _upload_files(form.files, {"images"})
    images = form.files.get("images", [])
    if not images:
        raise ApiError(422, "image_required", "send the photos as repeated field 'images'")
    fields = service.parse_fields(form.fields)
    req = service.AnalyzeRequest(principal, loaded, fields, key,
                          request_hash(images, form.fields, "analyze/batch"))
    env = service.Env(factory, settings, slots, metrics, store)
    return _response(await run_in_threadpool(service.analyze_batch, env, req, images))
