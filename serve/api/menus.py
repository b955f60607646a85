"""Menus per canteen, date and meal; their dishes; enrolled example photos per dish.

Admins and the canteen's kiosk keys write; app keys of the canteen may read.
"""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found, unprocessable
from serve.core.storage import ImageStore
from serve.core.uploads import read_upload_form
from serve.db.access import load_canteen
from serve.db.session import transaction
from serve.db.tables.core import Role
from serve.db.tables.menus import Enrolment, Meal, Menu, MenuDish
from serve.deps import CurrentPrincipal, ModelDep, SessionDep, SessionFactoryDep, SettingsDep
from serve.menus import enrol, get_menu, parse_box
from serve.nutrients import require_food

router = APIRouter(prefix="/v1/menus", tags=["menus"])


class DishCreate(BaseModel):
    """A dish: a food from the nutrient database and its standard serving."""

    model_config = ConfigDict(extra="forbid")
    food_id: str = Field(min_length=1, max_length=64)
    name: str | None = Field(None, min_length=1, max_length=300)
    serving_g: float | None = Field(None, gt=0, le=5000,
                                    description="default: the food's typical serving")
    tray_slot: str | None = Field(None, min_length=1, max_length=32)


class MenuCreate(BaseModel):
    """A menu for one meal of one day; admins name the canteen."""

    model_config = ConfigDict(extra="forbid")
    canteen_id: str | None = None
    date: dt.date
    meal: Meal
    name: str | None = Field(None, min_length=1, max_length=200)
    dishes: list[DishCreate] = Field(default_factory=list, max_length=50)


class EnrolmentPublic(BaseModel):
    """An enrolled example (the embedding itself stays on the server)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    dish_id: str
    image_sha256: str
    mask_sha256: str | None
    region: str
    box: list[float] | None
    area_px: float
    area_from: str
    model_version: str
    created_at: dt.datetime


class DishPublic(BaseModel):
    """A dish as clients see it, with how many examples are enrolled."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    menu_id: str
    position: int
    food_id: str
    name: str | None
    serving_g: float
    tray_slot: str | None
    enrolments: list[EnrolmentPublic]


class MenuPublic(BaseModel):
    """A menu and its dishes."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    canteen_id: str
    date: dt.date
    meal: str
    name: str | None
    dishes: list[DishPublic]
    created_at: dt.datetime


def _writable_menu(session: SessionDep, principal: Principal, menu_id: str) -> Menu:
    """A menu the caller may change: admins and the canteen's kiosk keys."""
    principal.require_role(Role.KIOSK)
    return get_menu(session, menu_id, principal)


def _new_dish(menu: Menu, body: DishCreate, position: int) -> MenuDish:
    """A dish row; the food must exist and a serving must be known or given."""
    food = require_food(body.food_id)
    serving = body.serving_g or food.serving_g
    if serving is None or serving <= 0:
        raise unprocessable(f"food {food.food_id} has no typical serving: give serving_g",
                            code="serving_required")
    return MenuDish(menu_id=menu.id, position=position, food_id=food.food_id,
                    name=body.name or food.name, serving_g=float(serving),
                    tray_slot=body.tray_slot)


@router.post("", status_code=201, response_model=MenuPublic)
def create(body: MenuCreate, principal: CurrentPrincipal, session: SessionDep) -> Menu:
    """Create a menu, optionally with its dishes (409 if the meal already has one)."""
    principal.require_role(Role.KIOSK)
    canteen_id = principal.tenant_for_write(body.canteen_id)
    try:
        with session.begin():
            load_canteen(session, principal, canteen_id)
            menu = Menu(canteen_id=canteen_id, date=body.date, meal=body.meal.value,
                        name=body.name)
            session.add(menu)
            session.flush()
            for n, dish in enumerate(body.dishes):
                session.add(_new_dish(menu, dish, n))
            session.flush()
            session.refresh(menu)
            return menu
    except IntegrityError as exc:
        raise ApiError(409, "duplicate_menu", f"canteen {canteen_id} already has a "
                       f"{body.meal.value} menu on {body.date}") from exc


@router.get("", response_model=list[MenuPublic])
def list_menus(principal: CurrentPrincipal, session: SessionDep, date: dt.date | None = None,
               meal: Meal | None = None, canteen_id: str | None = None) -> list[Menu]:
    """The menus the caller may see, filtered by date, meal and (admins) canteen."""
    query = select(Menu).order_by(Menu.date, Menu.meal, Menu.id)
    if not principal.is_admin:
        query = query.where(Menu.canteen_id == principal.canteen_id)
    elif canteen_id is not None:
        query = query.where(Menu.canteen_id == canteen_id)
    if date is not None:
        query = query.where(Menu.date == date)
    if meal is not None:
        query = query.where(Menu.meal == meal.value)
    return list(session.scalars(query))


@router.get("/{menu_id}", response_model=MenuPublic)
def get(menu_id: str, principal: CurrentPrincipal, session: SessionDep) -> Menu:
    """One menu with its dishes."""
    return get_menu(session, menu_id, principal)


@router.delete("/{menu_id}", status_code=204)
def delete(menu_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Delete a menu, its dishes and enrolments (analyses keep their results)."""
    with session.begin():
        session.delete(_writable_menu(session, principal, menu_id))
    return Response(status_code=204)


@router.post("/{menu_id}/dishes", status_code=201, response_model=DishPublic)
def add_dish(menu_id: str, body: DishCreate, principal: CurrentPrincipal,
             session: SessionDep) -> MenuDish:
    """Add a dish at the end of the menu."""
    with session.begin():
        menu = _writable_menu(session, principal, menu_id)
        last = session.scalar(select(func.max(MenuDish.position))
                              .where(MenuDish.menu_id == menu.id))
        dish = _new_dish(menu, body, 0 if last is None else last + 1)
        session.add(dish)
        session.flush()
        session.refresh(dish)
        return dish


def _dish_of(menu: Menu, dish_id: str) -> MenuDish:
    """A dish of this menu; 404 otherwise."""
    dish = next((d for d in menu.dishes if d.id == dish_id), None)
    if dish is None:
        raise not_found("dish", dish_id)
    return dish


@router.delete("/{menu_id}/dishes/{dish_id}", status_code=204)
def delete_dish(menu_id: str, dish_id: str, principal: CurrentPrincipal,
                session: SessionDep) -> Response:
    """Remove a dish and its enrolments."""
    with session.begin():
        session.delete(_dish_of(_writable_menu(session, principal, menu_id), dish_id))
    return Response(status_code=204)


@router.get("/{menu_id}/dishes/{dish_id}/enrolments", response_model=list[EnrolmentPublic])
def list_enrolments(menu_id: str, dish_id: str, principal: CurrentPrincipal,
                    session: SessionDep) -> list[Enrolment]:
    """A dish's enrolled examples."""
    return list(_dish_of(get_menu(session, menu_id, principal), dish_id).enrolments)


@router.post("/{menu_id}/dishes/{dish_id}/enrolments", status_code=201,
             response_model=EnrolmentPublic,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["image"], "properties": {
                     "image": {"type": "string", "format": "binary"},
                     "box": {"type": "string", "description": "x0,y0,x1,y1 in pixels"},
                     "mask": {"type": "string", "format": "binary",
                              "description": "PNG, same size; non-black = dish"}}}}}}})
async def add_enrolment(menu_id: str, dish_id: str, request: Request,
                        principal: CurrentPrincipal, factory: SessionFactoryDep,
                        settings: SettingsDep, loaded: ModelDep) -> Enrolment:
    """Enrol an example photo of a dish: multipart `image`, optional `box` or `mask`."""
    form = await read_upload_form(request, max_file_bytes=settings.max_upload_bytes,
                                  max_files=2)
    photo, mask = form.file("image"), form.file("mask")
    if photo is None:
        raise unprocessable("send the example photo in the multipart field 'image'")
    box = parse_box(form.fields["box"]) if form.fields.get("box") else None
    store = ImageStore(settings.image_dir)

    def work() -> Enrolment:
        """Inference and storage off the event loop, in one transaction."""
        with transaction(factory) as session:
            dish = _dish_of(_writable_menu(session, principal, menu_id), dish_id)
            row, _ = enrol(session, dish=dish, loaded=loaded, store=store, photo=photo.data,
                           box=box, mask=mask.data if mask is not None else None,
                           max_pixels=settings.max_pixels)
            return row

    return await run_in_threadpool(work)


@router.delete("/{menu_id}/dishes/{dish_id}/enrolments/{enrolment_id}", status_code=204)
def delete_enrolment(menu_id: str, dish_id: str, enrolment_id: str,
                     principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Remove one enrolled example."""
    with session.begin():
        dish = _dish_of(_writable_menu(session, principal, menu_id), dish_id)
        row = next((e for e in dish.enrolments if e.id == enrolment_id), None)
        if row is None:
            raise not_found("enrolment", enrolment_id)
        session.delete(row)
    return Response(status_code=204)
