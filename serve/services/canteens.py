"""Canteens (tenants): admins create them; kiosk and app keys see their own."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.core.auth import Principal
from serve.db.tables.core import Canteen
from serve.schemas.canteens import CanteenCreate


def create_canteen(session: Session, body: CanteenCreate) -> Canteen:
    """A new tenant."""
    with session.begin():
        row = Canteen(name=body.name, timezone=body.timezone)
        session.add(row)
        session.flush()
        return row


def list_canteens(session: Session, principal: Principal) -> list[Canteen]:
    """All canteens for admins; a kiosk or app key's own otherwise."""
    query = select(Canteen).order_by(Canteen.created_at)
    if not principal.is_admin:
        query = query.where(Canteen.id == principal.canteen_id)
    return list(session.scalars(query))
