"""POST /v1/analyze and /v1/analyze/batch: photos in, stored analyses out (idempotent)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from model.infer.runtime import full_size
from serve.analyses import analysis_payload, analysis_row, insert_analysis
from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found
from serve.core.settings import Settings
from serve.core.storage import ImageStore, record_image
from serve.core.uploads import UploadedFile, decode_depth, decode_photo, read_upload_form
from serve.db.access import load_canteen, load_user
from serve.db.base import utcnow
from serve.db.session import insert_rows, transaction
from serve.db.tables.analyses import Analysis
from serve.db.tables.core import IdempotencyRecord
from serve.deps import CurrentPrincipal, ModelDep
from serve.kiosks import kiosk_calibration
from serve.menu_adapter import CanteenMenu
from serve.menus import load_menu_context
from serve.model_registry import LoadedModel
from serve.pairing import link_analysis
from serve.pipeline import ImageRequest, ImageResult, analyze

router = APIRouter(prefix="/v1", tags=["analyze"])

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
    """OpenAPI body of a multipart analyze request (the form is parsed by hand, see uploads)."""
    props = {k: v for k, v in _FORM_FIELDS.items() if k not in ("image", "depth")}
    if many:
        props[file_field] = {"type": "array", "items": _FORM_FIELDS["image"]}
    else:
        props.update(image=_FORM_FIELDS["image"], depth=_FORM_FIELDS["depth"])
    schema = {"type": "object", "properties": props, "required": [file_field]}
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}


class AnalyzeFields(BaseModel):
    """The text fields of an analyze request."""

    model_config = ConfigDict(extra="forbid")
    menu_id: str | None = None
    kiosk_id: str | None = None
    user_id: str | None = None
    pair_id: str | None = None
    canteen_id: str | None = None
    meal_state: Literal["before", "after"] | None = None
    captured_at: datetime | None = None


@dataclass
class Context:
    """Everything resolved from the request before inference."""

    canteen_id: str | None
    fields: AnalyzeFields
    px_per_cm: float | None
    menu: CanteenMenu | None


def parse_fields(raw: dict[str, str]) -> AnalyzeFields:
    """Validate the form's text fields; 422 naming each bad one."""
    try:
        fields = AnalyzeFields.model_validate({k: v for k, v in raw.items() if v != ""})
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid_input", detail) from exc
    if fields.captured_at is not None:
        # Stored and answered in UTC (a time without offset is taken as UTC), so the first
        # answer and every later read show the same instant the same way.
        at = fields.captured_at
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        fields = fields.model_copy(update={"captured_at": at})
    return fields


def _tenant(session: Session, principal: Principal, fields: AnalyzeFields) -> str | None:
    """The canteen the analysis belongs to; an admin may name one or imply it by the user."""
    if not principal.is_admin:
        return principal.tenant_for_write(fields.canteen_id)
    if fields.canteen_id is not None:
        return load_canteen(session, principal, fields.canteen_id).id
    return None


def resolve_context(
    session: Session, principal: Principal, fields: AnalyzeFields, loaded: LoadedModel,
    settings: Settings,
) -> Context:
    """Check every id the request names against the caller's tenant (404 when not theirs)."""
    canteen_id = _tenant(session, principal, fields)
    if fields.user_id is not None:
        user = load_user(session, principal, fields.user_id)
        if canteen_id is not None and user.canteen_id != canteen_id:
            raise not_found("user", fields.user_id)
        canteen_id = user.canteen_id
    px_per_cm = None
    if fields.kiosk_id is not None:
        calibration = kiosk_calibration(session, canteen_id, fields.kiosk_id)
        canteen_id, px_per_cm = calibration.canteen_id, calibration.px_per_cm
    menu = None
    if fields.menu_id is not None:
        # Enrolments made under another model version are re-embedded here, so a model
        # swap never silently drops a canteen's enrolled examples.
        context = load_menu_context(session, principal, fields.menu_id, loaded,
                                    ImageStore(settings.image_dir), settings.max_pixels)
        if canteen_id is not None and context.canteen_id != canteen_id:
            raise not_found("menu", fields.menu_id)
        canteen_id = context.canteen_id
        menu = CanteenMenu(context)
    if fields.meal_state is not None and canteen_id is None:
        raise ApiError(422, "canteen_required", "meal_state needs a canteen (admin: canteen_id)")
    return Context(canteen_id, fields, px_per_cm, menu)


def request_hash(files: list[UploadedFile], fields: dict[str, str], route: str) -> str:
    """Fingerprint of a request, to tell a retry from a different request under the same key."""
    digest = hashlib.sha256(route.encode())
    for f in files:
        digest.update(f.field.encode() + b"\0" + hashlib.sha256(f.data).digest())
    digest.update(json.dumps(fields, sort_keys=True).encode())
    return digest.hexdigest()


def replay(
    factory: sessionmaker[Session], principal: Principal, key: str | None, fingerprint: str
) -> JSONResponse | None:
    """The first answer for a reused Idempotency-Key; 422 when the request differs."""
    if key is None:
        return None
    with factory() as session:
        record = session.scalar(select(IdempotencyRecord).where(
            IdempotencyRecord.api_key_id == principal.key_id, IdempotencyRecord.key == key))
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used for a different request")
    return JSONResponse(record.response, status_code=record.status_code,
                        headers={"Idempotent-Replayed": "true"})


def check_idempotency_key(key: str | None) -> str | None:
    """Keys are opaque strings of 1-200 printable characters."""
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise ApiError(422, "invalid_idempotency_key",
                       "Idempotency-Key must be 1-200 printable characters")
    return key


@dataclass(frozen=True)
class Photo:
    """A decoded upload with what is stored about it."""

    request: ImageRequest
    data: bytes
    content_type: str
    depth_data: bytes | None


def decode_upload(
    image: UploadedFile, depth: UploadedFile | None, ctx: Context, settings: Settings,
    fit: tuple[int, int],
) -> Photo:
    """Decode the photo (reduced to the model's input, see load_image) and depth map."""
    img, content_type = decode_photo(image.data, settings.max_pixels, fit=fit)
    depth_mm = decode_depth(depth.data, full_size(img)) if depth is not None else None
    req = ImageRequest(img, px_per_cm=ctx.px_per_cm, depth_mm=depth_mm, menu=ctx.menu)
    return Photo(req, image.data, content_type, depth.data if depth else None)


def store_analysis(
    session: Session, store: ImageStore, principal: Principal, ctx: Context, photo: Photo,
    result: ImageResult, settings: Settings,
) -> dict[str, Any]:
    """Write one analysis (image rows, analysis, items, before/after link) in the session."""
    sha = store.put(photo.data)
    width, height = full_size(photo.request.image)
    record_image(session, sha256=sha, kind="photo", content_type=photo.content_type,
                 size_bytes=len(photo.data), width=width, height=height)
    depth_sha = None
    if photo.depth_data is not None:
        depth_sha = store.put(photo.depth_data)
        record_image(session, sha256=depth_sha, kind="depth", content_type="depth",
                     size_bytes=len(photo.depth_data), width=width, height=height)
    fields = ctx.fields
    analysis = analysis_row(
        result, canteen_id=ctx.canteen_id, api_key_id=principal.key_id, user_id=fields.user_id,
        menu_id=fields.menu_id, kiosk_id=fields.kiosk_id, meal_state=fields.meal_state,
        captured_at=fields.captured_at or utcnow(), image_sha256=sha, depth_sha256=depth_sha,
    )
    insert_analysis(session, analysis)
    pair = None
    if fields.meal_state is not None:
        window = timedelta(minutes=settings.pair_window_minutes)
        stored = session.get_one(Analysis, analysis.id)
        pair = link_analysis(session, stored, pair_id=fields.pair_id, window=window)
    return analysis_payload(analysis, pair_id=pair.id if pair else None)


def save_idempotency(
    session: Session, principal: Principal, key: str | None, fingerprint: str,
    status: int, body: dict[str, Any],
) -> None:
    """Remember the answer under the key, in the same transaction as what it describes."""
    if key is not None:  # a concurrent twin fails here on the unique key (IntegrityError)
        insert_rows(session, [IdempotencyRecord(  # id and created_at: column defaults
            api_key_id=principal.key_id, key=key, request_hash=fingerprint,
            status_code=status, response=body)])


def run_model(request: Request, loaded: LoadedModel, photos: list[Photo]) -> list[ImageResult]:
    """The pipeline over decoded photos, with inference timings recorded."""
    settings: Settings = request.app.state.settings
    with request.app.state.inference_slots:
        results, timings = analyze(loaded.model, [p.request for p in photos],
                                   batch_size=settings.batch_size, top_k=settings.top_k)
    for t in timings:
        request.app.state.metrics.observe_inference(t.seconds, t.batch_size)
    return results


def _stored_or_replayed(
    factory: sessionmaker[Session], principal: Principal, key: str | None, fingerprint: str,
    write: Any,
) -> JSONResponse:
    """Run the write transaction; a concurrent retry that lost the race gets the first answer."""
    try:
        with transaction(factory) as session:
            status, body = write(session)
            save_idempotency(session, principal, key, fingerprint, status, body)
    except IntegrityError:
        replayed = replay(factory, principal, key, fingerprint) if key else None
        if replayed is None:
            raise
        return replayed
    return JSONResponse(body, status_code=status)


def _replay_or_context(
    request: Request, principal: Principal, loaded: LoadedModel,
    fields: AnalyzeFields, key: str | None, fingerprint: str,
) -> JSONResponse | Context:
    """The stored answer to a retried request, else the resolved context of a new one."""
    factory = request.app.state.session_factory
    replayed = replay(factory, principal, key, fingerprint)
    if replayed is not None:
        return replayed
    with transaction(factory) as session:  # may re-embed stale enrolments
        return resolve_context(session, principal, fields, loaded, request.app.state.settings)


def _analyze_single(
    request: Request, principal: Principal, loaded: LoadedModel, files: dict[str, UploadedFile],
    fields: AnalyzeFields, key: str | None, fingerprint: str,
) -> JSONResponse:
    """Resolve, decode, infer, then store one analysis atomically."""
    factory = request.app.state.session_factory
    settings: Settings = request.app.state.settings
    ctx = _replay_or_context(request, principal, loaded, fields, key, fingerprint)
    if isinstance(ctx, JSONResponse):
        return ctx
    photo = decode_upload(files["image"], files.get("depth"), ctx, settings,
                          loaded.model.meta.input_size)
    result = run_model(request, loaded, [photo])[0]
    store = ImageStore(settings.image_dir)
    return _stored_or_replayed(
        factory, principal, key, fingerprint,
        lambda s: (201, store_analysis(s, store, principal, ctx, photo, result, settings)),
    )


def _upload_files(form_files: dict[str, list[UploadedFile]], allowed: set[str]) -> None:
    """Reject file fields the route does not take."""
    unknown = sorted(set(form_files) - allowed)
    if unknown:
        raise ApiError(422, "invalid_input",
                       f"unexpected file field(s) {unknown}; expected {sorted(allowed)}")


@router.post("/analyze", status_code=201, openapi_extra=_form_schema("image", many=False))
async def analyze_photo(
    request: Request, principal: CurrentPrincipal, loaded: ModelDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Analyse one photo: items, grams, nutrients, totals; logged for user_id when given."""
    settings: Settings = request.app.state.settings
    key = check_idempotency_key(idempotency_key)
    form = await read_upload_form(request, max_file_bytes=settings.max_upload_bytes, max_files=2)
    _upload_files(form.files, {"image", "depth"})
    image, depth = form.file("image"), form.file("depth")
    if image is None:
        raise ApiError(422, "image_required", "send the photo as multipart field 'image'")
    fields = parse_fields(form.fields)
    files = {"image": image} | ({"depth": depth} if depth else {})
    fingerprint = request_hash(list(files.values()), form.fields, "analyze")
    return await run_in_threadpool(
        _analyze_single, request, principal, loaded, files, fields, key, fingerprint
    )


def _decode_all(
    images: list[UploadedFile], ctx: Context, settings: Settings, fit: tuple[int, int]
) -> tuple[list[tuple[int, Photo]], list[dict[str, Any]]]:
    """Decode each photo; a bad one becomes an error entry instead of failing the batch."""
    photos: list[tuple[int, Photo]] = []
    errors: list[dict[str, Any]] = []
    for index, upload in enumerate(images):
        try:
            photos.append((index, decode_upload(upload, None, ctx, settings, fit)))
        except ApiError as exc:
            errors.append({"index": index, "filename": upload.filename,
                           "status": exc.status_code, **exc.body()})
    return photos, errors


def _analyze_batch(
    request: Request, principal: Principal, loaded: LoadedModel, images: list[UploadedFile],
    fields: AnalyzeFields, key: str | None, fingerprint: str,
) -> JSONResponse:
    """Decode all, infer in batches, store every good photo in one transaction."""
    factory = request.app.state.session_factory
    settings: Settings = request.app.state.settings
    ctx = _replay_or_context(request, principal, loaded, fields, key, fingerprint)
    if isinstance(ctx, JSONResponse):
        return ctx
    photos, errors = _decode_all(images, ctx, settings, loaded.model.meta.input_size)
    results = run_model(request, loaded, [p for _, p in photos]) if photos else []
    store = ImageStore(settings.image_dir)

    def write(session: Session) -> tuple[int, dict[str, Any]]:
        """All good photos' analyses, answered in the order they were sent."""
        entries = [
            {"index": index, "filename": images[index].filename,
             "analysis": store_analysis(session, store, principal, ctx, photo, result, settings)}
            for (index, photo), result in zip(photos, results, strict=True)
        ]
        ordered = sorted(entries + errors, key=lambda e: int(e["index"]))
        return 200, {"results": ordered, "analysed": len(entries), "failed": len(errors)}

    return _stored_or_replayed(factory, principal, key, fingerprint, write)


@router.post("/analyze/batch", openapi_extra=_form_schema("images", many=True))
async def analyze_batch(
    request: Request, principal: CurrentPrincipal, loaded: ModelDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Analyse many photos (field 'images', repeated) in ONNX Runtime batches."""
    settings: Settings = request.app.state.settings
    key = check_idempotency_key(idempotency_key)
    form = await read_upload_form(request, max_file_bytes=settings.max_upload_bytes,
                                  max_files=settings.max_batch_images)
    _upload_files(form.files, {"images"})
    images = form.files.get("images", [])
    if not images:
        raise ApiError(422, "image_required", "send the photos as repeated field 'images'")
    fields = parse_fields(form.fields)
    fingerprint = request_hash(images, form.fields, "analyze/batch")
    return await run_in_threadpool(
        _analyze_batch, request, principal, loaded, images, fields, key, fingerprint
    )
