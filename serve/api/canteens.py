"""Canteens (tenants): admins create them; kiosk and app keys see their own."""
from __future__ import annotations

from fastapi import APIRouter

from serve.db.access import load_canteen
from serve.db.tables.core import Canteen
from serve.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from serve.schemas.canteens import CanteenCreate, CanteenPublic
from serve.services import canteens as service

router = APIRouter(prefix="/v1/canteens", tags=["canteens"])


@router.post("", status_code=201, response_model=CanteenPublic)
def create(body: CanteenCreate, _: AdminPrincipal, session: SessionDep) -> Canteen:
    """Create a tenant."""
    return service.create_canteen(session, body)


@router.get("", response_model=list[CanteenPublic])
def list_canteens(principal: CurrentPrincipal, session: SessionDep) -> list[Canteen]:
    """All canteens for admins; a kiosk or app key's own otherwise."""
    return service.list_canteens(session, principal)


@router.get("/{canteen_id}", response_model=CanteenPublic)
def get(canteen_id: str, principal: CurrentPrincipal, session: SessionDep) -> Canteen:
    """One canteen the caller belongs to."""
    return load_canteen(session, principal, canteen_id)
