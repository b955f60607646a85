"""Menus per canteen, date and meal; their dishes; enrolled example photos per dish.

Admins and the canteen's kiosk keys write; app keys of the canteen may read.
"""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from serve.api import forms
from serve.core.errors import ApiError, documented, unprocessable
from serve.core.uploads import read_upload_form
from serve.db.session import transaction
from serve.db.tables.menus import Enrolment, Meal, Menu, MenuDish
from serve.deps import (
    CurrentPrincipal,
    ImageStoreDep,
    ModelDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
)
from serve.schemas.menus import (
    DishCreate,
    DishPublic,
    EnrolFromItem,
    EnrolmentPublic,
    MenuCreate,
    MenuPublic,
)
from serve.services import menus as service
from serve.services.enrolment import parse_box

router = APIRouter(prefix="/v1/menus", tags=["menus"])

_ENROLMENT_PARTS = {
    "image": forms.photo(),
    "box": {"type": "string", "description": "x0,y0,x1,y1 in pixels"},
    "mask": {"type": "string", "format": "binary",
             "description": "PNG, same size; non-black = dish"}}
_ENROLMENT_FORM = forms.multipart_body(_ENROLMENT_PARTS, required=["image"], photos=["image"])
_ENROLMENT_FORM["requestBody"]["content"]["application/json"] = {
    "schema": EnrolFromItem.model_json_schema()}
MAX_JSON_BYTES = 4096  # {"analysis_id", "item_id"}: anything longer is no such body


async def _item_reference(request: Request) -> EnrolFromItem:
    """The JSON body naming an analysed item; 413/422 when it is not one."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise ApiError(413, "body_too_large", f"a JSON enrolment body is at most "
                           f"{MAX_JSON_BYTES} bytes: {{\"analysis_id\": ..., \"item_id\": ...}}")
    try:
        return EnrolFromItem.model_validate_json(raw)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                           for e in exc.errors())
        raise ApiError(422, "invalid_input", detail) from exc


@router.post("", status_code=201, response_model=MenuPublic)
def create(body: MenuCreate, principal: CurrentPrincipal, session: SessionDep) -> Menu:
    """Create a menu, optionally with its dishes (409 if the meal already has one)."""
    return service.create_menu(session, principal, body)


@router.get("", response_model=list[MenuPublic])
def list_menus(principal: CurrentPrincipal, session: SessionDep, date: dt.date | None = None,
               meal: Meal | None = None, canteen_id: str | None = None) -> list[Menu]:
    """The menus the caller may see, filtered by date, meal and (admins) canteen."""
    return service.list_menus(session, principal, date=date,
                              meal=meal.value if meal is not None else None,
                              canteen_id=canteen_id)


@router.get("/{menu_id}", response_model=MenuPublic)
def get(menu_id: str, principal: CurrentPrincipal, session: SessionDep) -> Menu:
    """One menu with its dishes."""
    return service.get_menu(session, menu_id, principal)


@router.delete("/{menu_id}", status_code=204)
def delete(menu_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Delete a menu, its dishes and enrolments (analyses keep their results)."""
    with session.begin():
        session.delete(service.writable_menu(session, principal, menu_id))
    return Response(status_code=204)


@router.post("/{menu_id}/dishes", status_code=201, response_model=DishPublic)
def add_dish(menu_id: str, body: DishCreate, principal: CurrentPrincipal,
             session: SessionDep) -> MenuDish:
    """Add a dish at the end of the menu."""
    with session.begin():
        return service.add_dish(session, principal, menu_id, body)


@router.delete("/{menu_id}/dishes/{dish_id}", status_code=204)
def delete_dish(menu_id: str, dish_id: str, principal: CurrentPrincipal,
                session: SessionDep) -> Response:
    """Remove a dish and its enrolments."""
    with session.begin():
        menu = service.writable_menu(session, principal, menu_id)
        session.delete(service.dish_of(menu, dish_id))
    return Response(status_code=204)


@router.get("/{menu_id}/dishes/{dish_id}/enrolments", response_model=list[EnrolmentPublic])
def list_enrolments(menu_id: str, dish_id: str, principal: CurrentPrincipal,
                    session: SessionDep) -> list[Enrolment]:
    """A dish's enrolled examples."""
    return list(service.dish_of(service.get_menu(session, menu_id, principal),
                                dish_id).enrolments)


@router.post("/{menu_id}/dishes/{dish_id}/enrolments", status_code=201,
             response_model=EnrolmentPublic, openapi_extra=_ENROLMENT_FORM,
             responses={200: {"model": EnrolmentPublic,
                              "description": "the item was enrolled before: that example"},
                        **documented(410)})  # from an item whose photo was purged
async def add_enrolment(menu_id: str, dish_id: str, request: Request, response: Response,
                        principal: CurrentPrincipal, factory: SessionFactoryDep,
                        settings: SettingsDep, loaded: ModelDep,
                        store: ImageStoreDep) -> Enrolment:
    """Enrol an example of a dish: multipart `image` with optional `box` or `mask`, or JSON
    `{"analysis_id", "item_id"}` naming an analysed item of the canteen (its stored photo
    under its mask; 200 with the existing example when that item is already enrolled)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        ref = await _item_reference(request)

        def from_item() -> tuple[Enrolment, bool]:
            """Embedding and storage off the event loop, in one transaction."""
            with transaction(factory) as session:
                return service.enrol_from_item(
                    session, principal, menu_id, dish_id, analysis_id=ref.analysis_id,
                    item_id=ref.item_id, loaded=loaded, store=store,
                    max_pixels=settings.max_pixels)

        row, created = await run_in_threadpool(from_item)
        response.status_code = 201 if created else 200
        return row
    form = await read_upload_form(request, max_file_bytes=settings.max_upload_bytes,
                                  max_files=2)
    form.refuse_unknown(set(_ENROLMENT_PARTS))
    photo, mask = form.file("image"), form.file("mask")
    if photo is None:
        raise unprocessable("send the example photo in the multipart field 'image'")
    box = parse_box(form.fields["box"]) if form.fields.get("box") else None

    def work() -> Enrolment:
        """Inference and storage off the event loop, in one transaction."""
        with transaction(factory) as session:
            return service.add_enrolment(
                session, principal, menu_id, dish_id, loaded=loaded, store=store,
                photo=photo.data, box=box, mask=mask.data if mask is not None else None,
                max_pixels=settings.max_pixels, refine=settings.refine_masks)

    return await run_in_threadpool(work)


@router.delete("/{menu_id}/dishes/{dish_id}/enrolments/{enrolment_id}", status_code=204)
def delete_enrolment(menu_id: str, dish_id: str, enrolment_id: str,
                     principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Remove one enrolled example."""
    with session.begin():
        service.delete_enrolment(session, principal, menu_id, dish_id, enrolment_id)
    return Response(status_code=204)
