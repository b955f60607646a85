"""The upload path of POST /v1/analyze and /v1/analyze/batch: resolve the request's tenant
and context, decode the photos, run the pipeline (services.pipeline), then store every
analysis with its images and before/after link in one transaction (idempotent)."""
from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from model.infer.images import full_size
from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found
from serve.core.memory import release_memory
from serve.core.metrics import ServiceMetrics
from serve.core.settings import Settings
from serve.core.storage import ImageStore, record_image
from serve.core.uploads import UploadedFile, decode_depth, decode_photo
from serve.db.access import load_canteen, load_user
from serve.db.base import utcnow
from serve.db.session import transaction
from serve.db.tables.analyses import Analysis
from serve.db.tables.core import User
from serve.schemas.analyze import CAPTURED_AT_RANGE, AnalyzeFields
from serve.services.analyses import analysis_payload, analysis_row, insert_analysis
from serve.services.idempotency import Answer, replay, stored_or_replayed
from serve.services.kiosks import kiosk_calibration
from serve.services.layout_mode import KioskLayoutMode, kiosk_layout_mode
from serve.services.menus import CanteenMenu, load_menu_context
from serve.services.model_registry import LoadedModel
from serve.services.pairing import link_analysis, load_pair
from serve.services.pipeline import ImageRequest, ImageResult, analyze


@dataclass(frozen=True)
class Env:
    """What the upload path uses of the running app."""

    factory: sessionmaker[Session]
    settings: Settings
    slots: threading.BoundedSemaphore  # queues model runs (see create_app)
    metrics: ServiceMetrics
    store: ImageStore
    decode_slots: threading.BoundedSemaphore | None = None  # bounds decodes in flight


@dataclass(frozen=True)
class AnalyzeRequest:
    """One analyze request as parsed from its form, before anything is resolved."""

    principal: Principal
    loaded: LoadedModel
    fields: AnalyzeFields
    key: str | None  # the Idempotency-Key
    fingerprint: str  # services.idempotency.request_hash


@dataclass
class Context:
    """Everything resolved from the request before inference."""

    canteen_id: str | None
    fields: AnalyzeFields
    px_per_cm: float | None
    menu: CanteenMenu | None
    layout: KioskLayoutMode | None = None  # the kiosk has a tray layout: layout mode


def parse_fields(raw: dict[str, str]) -> AnalyzeFields:
    """Validate the form's text fields; 422 naming each bad one."""
    try:
        fields = AnalyzeFields.model_validate({k: v for k, v in raw.items() if v != ""})
    except ValidationError as exc:
        errors = exc.errors()
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        out_of_range = all(e["type"] == CAPTURED_AT_RANGE for e in errors)
        raise ApiError(422, "invalid_captured_at" if out_of_range else "invalid_input",
                       detail) from exc
    # captured_at is in UTC now (AnalyzeFields; a time without offset is taken as UTC), so
    # the first answer and every later read show the same instant the same way.
    return fields


def _tenant(session: Session, principal: Principal, fields: AnalyzeFields) -> str | None:
    """The canteen the analysis belongs to; an admin may name one or imply it by the user."""
    if not principal.is_admin:
        return principal.tenant_for_write(fields.canteen_id)
    if fields.canteen_id is not None:
        return load_canteen(session, principal, fields.canteen_id).id
    return None


def consented_fields(user: User, fields: AnalyzeFields) -> AnalyzeFields:
    """What may be recorded of a person's tray (docs/API.md#consent): without diary consent
    the analysis is stored without the person; without canteen statistics either, also
    without before/after state, so the tray never enters a pair or a waste report."""
    if user.consent_diary:
        return fields
    drop: dict[str, Any] = {"user_id": None}
    if not user.consent_canteen_statistics:
        drop.update(meal_state=None, pair_id=None)
    return fields.model_copy(update=drop)


def resolve_context(
    session: Session, principal: Principal, fields: AnalyzeFields, loaded: LoadedModel,
    settings: Settings, store: ImageStore,
) -> Context:
    """Check every id the request names against the caller's tenant (404 when not theirs)."""
    canteen_id = _tenant(session, principal, fields)
    if fields.user_id is not None:
        user = load_user(session, principal, fields.user_id)
        if canteen_id is not None and user.canteen_id != canteen_id:
            raise not_found("user", fields.user_id)
        canteen_id = user.canteen_id
        fields = consented_fields(user, fields)
    px_per_cm, layout = None, None
    if fields.kiosk_id is not None:
        calibration = kiosk_calibration(session, canteen_id, fields.kiosk_id)
        canteen_id, px_per_cm = calibration.canteen_id, calibration.px_per_cm
        layout = kiosk_layout_mode(session, fields.kiosk_id, store,
                                   settings.max_pixels)
    menu = None
    if fields.menu_id is not None:
        # Enrolments made under another model version are re-embedded here, so a model
        # swap never silently drops a canteen's enrolled examples; those measured on the
        # other masks than the analysis will use are re-measured (settings.refine_masks).
        context = load_menu_context(session, principal, fields.menu_id, loaded,
                                    store, settings.max_pixels, refine=settings.refine_masks)
        if canteen_id is not None and context.canteen_id != canteen_id:
            raise not_found("menu", fields.menu_id)
        canteen_id = context.canteen_id
        menu = CanteenMenu(context)
    if fields.meal_state is not None and canteen_id is None:
        raise ApiError(422, "canteen_required", "meal_state needs a canteen (admin: canteen_id)")
    if fields.meal_state == "after" and fields.pair_id is not None:
        # A pair the caller cannot read (another tenant's, a sibling app's user's) is a 404
        # here too, like GET /v1/pairs/{id}, before anything is decoded or stored.
        load_pair(session, principal, fields.pair_id)
    return Context(canteen_id, fields, px_per_cm, menu, layout)


@dataclass(frozen=True)
class Photo:
    """A decoded upload with what is stored about it."""

    request: ImageRequest
    data: bytes
    content_type: str
    depth_data: bytes | None


def decode_upload(
    image: UploadedFile, depth: UploadedFile | None, ctx: Context, settings: Settings,
    fit: tuple[int, int], slots: threading.BoundedSemaphore | None = None,
) -> Photo:
    """Decode the photo (reduced to the model's input, see load_image) and depth map, at
    most `slots` decodes at once (a decode briefly holds the full-size photo)."""
    with slots or nullcontext():
        try:
            img, content_type = decode_photo(image.data, settings.max_pixels, fit=fit)
            depth_mm = decode_depth(depth.data, full_size(img)) if depth is not None else None
        finally:
            # The full-size decode is freed now; without a trim its pages stay in this
            # thread's malloc arena while the request waits for the model.
            release_memory()
    req = ImageRequest(img, px_per_cm=ctx.px_per_cm, depth_mm=depth_mm, menu=ctx.menu,
                       layout=ctx.layout)
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


def run_model(env: Env, loaded: LoadedModel, photos: list[Photo]) -> list[ImageResult]:
    """The pipeline over decoded photos, with inference timings recorded."""
    with env.slots:
        results, timings = analyze(loaded.model, [p.request for p in photos],
                                   batch_size=env.settings.batch_size, top_k=env.settings.top_k,
                                   review_below=env.settings.review_below,
                                   refine_masks=env.settings.refine_masks)
    for t in timings:
        env.metrics.observe_inference(t.seconds, t.batch_size)
    return results


def _replay_or_context(env: Env, req: AnalyzeRequest) -> Answer | Context:
    """The stored answer to a retried request, else the resolved context of a new one."""
    replayed = replay(env.factory, req.principal, req.key, req.fingerprint)
    if replayed is not None:
        return replayed
    with transaction(env.factory) as session:  # may re-embed stale enrolments
        return resolve_context(session, req.principal, req.fields, req.loaded, env.settings,
                               env.store)


def analyze_single(env: Env, req: AnalyzeRequest, image: UploadedFile,
                   depth: UploadedFile | None) -> Answer:
    """Resolve, decode, infer, then store one analysis atomically (201)."""
    ctx = _replay_or_context(env, req)
    if isinstance(ctx, Answer):
        return ctx
    try:
        photo = decode_upload(image, depth, ctx, env.settings,
                              req.loaded.model.meta.input_size, env.decode_slots)
        result = run_model(env, req.loaded, [photo])[0]
    finally:
        release_memory()  # the decode's and the run's freed pages go back to the OS
    return stored_or_replayed(
        env.factory, req.principal, req.key, req.fingerprint,
        lambda s: Answer(201, store_analysis(s, env.store, req.principal, ctx, photo, result,
                                             env.settings)),
    )


def _decode_all(
    images: list[UploadedFile], ctx: Context, env: Env, fit: tuple[int, int]
) -> tuple[list[tuple[int, Photo]], list[dict[str, Any]]]:
    """Decode each photo; a bad one becomes an error entry instead of failing the batch."""
    photos: list[tuple[int, Photo]] = []
    errors: list[dict[str, Any]] = []
    for index, upload in enumerate(images):
        try:
            photos.append((index, decode_upload(upload, None, ctx, env.settings, fit,
                                                env.decode_slots)))
        except ApiError as exc:
            errors.append({"index": index, "filename": upload.filename,
                           "status": exc.status_code, **exc.body()})
    return photos, errors


def analyze_batch(env: Env, req: AnalyzeRequest, images: list[UploadedFile]) -> Answer:
    """Decode all, infer in batches, store every good photo in one transaction (200)."""
    ctx = _replay_or_context(env, req)
    if isinstance(ctx, Answer):
        return ctx
    try:
        photos, errors = _decode_all(images, ctx, env, req.loaded.model.meta.input_size)
        results = run_model(env, req.loaded, [p for _, p in photos]) if photos else []
    finally:
        release_memory()

    def write(session: Session) -> Answer:
        """All good photos' analyses, answered in the order they were sent."""
        entries = [
            {"index": index, "filename": images[index].filename,
             "analysis": store_analysis(session, env.store, req.principal, ctx, photo, result,
                                        env.settings)}
            for (index, photo), result in zip(photos, results, strict=True)
        ]
        ordered = sorted(entries + errors, key=lambda e: int(e["index"]))
        return Answer(200, {"results": ordered, "analysed": len(entries), "failed": len(errors)})

    return stored_or_replayed(env.factory, req.principal, req.key, req.fingerprint, write)
