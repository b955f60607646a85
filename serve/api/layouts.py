"""Kiosk tray layouts: the empty-tray reference photo and its compartments (who may manage
the kiosk's calibration may manage its layout; another tenant's kiosk is a 404)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from serve.api.forms import multipart_body, photo
from serve.core.errors import unprocessable
from serve.core.uploads import read_upload_form
from serve.deps import (
    CurrentPrincipal,
    ImageStoreDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
)
from serve.schemas.layouts import LayoutPublic, ProposalPublic
from serve.services import layouts as service

router = APIRouter(prefix="/v1/kiosks", tags=["kiosks"])

_LAYOUT_PARTS = {
    "reference": photo("the kiosk camera's photo of the EMPTY tray"),
    "compartments": {"type": "string", "minLength": 1, "description":
                     'JSON [{"slot": "rice", "polygon": [[x, y], ...]}, ...] in the '
                     "reference photo's pixels"},
    "tray_width_cm": {"type": "number"}, "tray_height_cm": {"type": "number"}}
_LAYOUT_FORM = multipart_body(_LAYOUT_PARTS, required=["reference", "compartments"],
                              photos=["reference"])
_PROPOSE_FORM = multipart_body(
    {"reference": photo("optional: without it the stored reference is used")},
    photos=["reference"], body_required=False)


@router.put("/{kiosk_id}/layout", response_model=LayoutPublic, openapi_extra=_LAYOUT_FORM)
async def put_layout(kiosk_id: str, request: Request, principal: CurrentPrincipal,
                     factory: SessionFactoryDep, settings: SettingsDep,
                     store: ImageStoreDep) -> dict[str, Any]:
    """Create or replace the kiosk's tray layout (multipart: reference, compartments)."""
    form = await read_upload_form(request, max_file_bytes=settings.max_upload_bytes,
                                  max_files=1)
    form.refuse_unknown(set(_LAYOUT_PARTS))
    reference = form.file("reference")
    if reference is None:
        raise unprocessable("send the empty-tray photo in the multipart field 'reference'",
                            code="reference_required")
    if not form.fields.get("compartments"):
        raise unprocessable("send the compartments as JSON in the multipart field "
                            "'compartments'", code="invalid_layout")
    body = service.LayoutInput(reference.data, form.fields["compartments"],
                               form.fields.get("tray_width_cm"), form.fields.get("tray_height_cm"))

    def work() -> dict[str, Any]:
        """Decoding and feature extraction off the event loop."""
        with factory() as session:
            row = service.put_layout(session, principal, kiosk_id, body, store=store,
                                     max_pixels=settings.max_pixels)
            return service.layout_public(session, row)

    return await run_in_threadpool(work)


@router.get("/{kiosk_id}/layout", response_model=LayoutPublic)
def get_layout(kiosk_id: str, principal: CurrentPrincipal, session: SessionDep
               ) -> dict[str, Any]:
    """The kiosk's tray layout (404 when it has none)."""
    return service.layout_public(session, service.load_layout(session, principal, kiosk_id))


@router.get("/{kiosk_id}/layout/reference", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}})
def get_reference(kiosk_id: str, principal: CurrentPrincipal, session: SessionDep,
                  store: ImageStoreDep) -> Response:
    """The layout's empty-tray reference photo, as uploaded."""
    row = service.load_layout(session, principal, kiosk_id)
    data, content_type = service.reference_bytes(session, store, row)
    return Response(data, media_type=content_type,
                    headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/{kiosk_id}/layout", status_code=204)
def delete_layout(kiosk_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Remove the kiosk's tray layout: its photos are analysed without compartments again."""
    service.delete_layout(session, principal, kiosk_id)
    return Response(status_code=204)


@router.post("/{kiosk_id}/layout/propose", response_model=ProposalPublic,
             openapi_extra=_PROPOSE_FORM)
async def propose_layout(kiosk_id: str, request: Request, principal: CurrentPrincipal,
                         factory: SessionFactoryDep, settings: SettingsDep,
                         store: ImageStoreDep) -> dict[str, Any]:
    """Suggested compartments of a reference photo (sent, else the stored one); not stored."""
    reference = None
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        form = await read_upload_form(request, max_file_bytes=settings.max_upload_bytes,
                                      max_files=1)
        form.refuse_unknown({"reference"})
        upload = form.file("reference")
        reference = upload.data if upload is not None else None

    def work() -> dict[str, Any]:
        """Edge analysis off the event loop."""
        with factory() as session:
            return service.propose(session, principal, kiosk_id, reference, store=store,
                                   max_pixels=settings.max_pixels)

    return await run_in_threadpool(work)
