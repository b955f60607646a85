"""POST /v1/analyze and /v1/analyze/batch: photos in, stored analyses out (idempotent)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool

from serve.api.forms import multipart_body, photo
from serve.core.auth import Principal
from serve.core.errors import ApiError
from serve.core.responses import ApiJSONResponse
from serve.core.uploads import UploadedFile, UploadForm, read_upload_form
from serve.deps import AnalyzeEnvDep, CurrentPrincipal, ModelDep
from serve.schemas.analyses import AnalysisPublic
from serve.schemas.analyze import BatchPublic
from serve.services import analyze as service
from serve.services.idempotency import Answer, check_idempotency_key, request_hash
from serve.services.model_registry import LoadedModel

router = APIRouter(prefix="/v1", tags=["analyze"])

IdempotencyKey = Annotated[str | None, Header()]
_FORM_FIELDS = {
    "menu_id": {"type": "string"}, "kiosk_id": {"type": "string"},
    "user_id": {"type": "string"}, "pair_id": {"type": "string"},
    "canteen_id": {"type": "string", "description": "admin keys only"},
    "meal_state": {"type": "string", "enum": ["before", "after"]},
    "captured_at": {"type": "string", "format": "date-time"},
}


_DEPTH = {"type": "string", "format": "binary",
          "description": "optional depth map in mm: 16-bit PNG or .npy, same size"}


def _form_schema(file_field: str, many: bool) -> dict[str, Any]:
    """OpenAPI body of a multipart analyze request (parsed by hand: core/uploads)."""
    files = ({file_field: {"type": "array", "items": photo(), "minItems": 1}} if many
             else {file_field: photo(), "depth": _DEPTH})
    return multipart_body({**_FORM_FIELDS, **files}, required=[file_field], photos=[file_field])


async def _read_form(request: Request, env: service.Env, idempotency_key: str | None,
                     allowed: set[str], max_files: int) -> tuple[str | None, UploadForm]:
    """The checked Idempotency-Key and the form, whose file fields must be `allowed`."""
    key = check_idempotency_key(idempotency_key)
    form = await read_upload_form(request, max_file_bytes=env.settings.max_upload_bytes,
                                  max_files=max_files)
    unknown = sorted(set(form.files) - allowed)
    if unknown:
        raise ApiError(422, "invalid_input",
                       f"unexpected file field(s) {unknown}; expected {sorted(allowed)}")
    return key, form


def _response(answer: Answer) -> ApiJSONResponse:
    """The JSON answer; a stored first answer says it is a replay."""
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return ApiJSONResponse(answer.body, status_code=answer.status, headers=headers)


def _analyze_request(principal: Principal, loaded: LoadedModel, form: UploadForm,
                     files: list[UploadedFile], key: str | None,
                     route: str) -> service.AnalyzeRequest:
    """The parsed request: its text fields validated, its fingerprint for Idempotency-Key."""
    fields = service.parse_fields(form.fields)
    return service.AnalyzeRequest(principal, loaded, fields, key,
                                  request_hash(files, form.fields, route))


@router.post("/analyze", status_code=201, response_model=AnalysisPublic,
             openapi_extra=_form_schema("image", many=False))
async def analyze_photo(request: Request, principal: CurrentPrincipal, loaded: ModelDep,
                        env: AnalyzeEnvDep, idempotency_key: IdempotencyKey = None
                        ) -> ApiJSONResponse:
    """Analyse one photo: items, grams, nutrients, totals; logged for user_id when given."""
    key, form = await _read_form(request, env, idempotency_key, {"image", "depth"}, 2)
    image, depth = form.file("image"), form.file("depth")
    if image is None:
        raise ApiError(422, "image_required", "send the photo as multipart field 'image'")
    files = [image] + ([depth] if depth else [])
    req = _analyze_request(principal, loaded, form, files, key, "analyze")
    return _response(await run_in_threadpool(service.analyze_single, env, req, image, depth))


@router.post("/analyze/batch", response_model=BatchPublic,
             openapi_extra=_form_schema("images", many=True))
async def analyze_batch(request: Request, principal: CurrentPrincipal, loaded: ModelDep,
                        env: AnalyzeEnvDep, idempotency_key: IdempotencyKey = None
                        ) -> ApiJSONResponse:
    """Analyse many photos (field 'images', repeated) in ONNX Runtime batches."""
    key, form = await _read_form(request, env, idempotency_key, {"images"},
                                 env.settings.max_batch_images)
    images = form.files.get("images", [])
    if not images:
        raise ApiError(422, "image_required", "send the photos as repeated field 'images'")
    req = _analyze_request(principal, loaded, form, images, key, "analyze/batch")
    return _response(await run_in_threadpool(service.analyze_batch, env, req, images))
