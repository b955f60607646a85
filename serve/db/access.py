"""Scoped loaders: fetch a row by id only if the caller may see it (404 otherwise)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from serve.core.auth import Principal
from serve.core.errors import not_found
from serve.db.tables.analyses import Analysis, AnalysisItem
from serve.db.tables.core import Canteen, User


def load_canteen(session: Session, principal: Principal, canteen_id: str) -> Canteen:
    """A canteen the caller belongs to (admins: any)."""
    row = session.get(Canteen, canteen_id)
    if row is None or not principal.can_see_canteen(row.id):
        raise not_found("canteen", canteen_id)
    return row


def load_user(session: Session, principal: Principal, user_id: str) -> User:
    """A user the caller may see: kiosk keys their canteen's, app keys their own."""
    row = session.get(User, user_id)
    if row is None or not principal.can_see_user(row):
        raise not_found("user", user_id)
    return row


def load_analysis(session: Session, principal: Principal, analysis_id: str, *,
                  for_update: bool = False) -> Analysis:
    """An analysis the caller may see; `for_update` locks its row until the transaction ends
    (PostgreSQL; SQLite has one writer at a time anyway): changes to its items take it, so
    they never interleave with a re-analysis replacing them (services.reanalysis)."""
    row = session.get(Analysis, analysis_id, with_for_update=for_update)
    user = session.get(User, row.user_id) if row is not None and row.user_id else None
    if row is None or not principal.can_see_analysis(row, user):
        raise not_found("analysis", analysis_id)
    return row


def load_item(
    session: Session, principal: Principal, analysis_id: str, item_id: str, *,
    for_update: bool = False,
) -> AnalysisItem:
    """One item of an analysis the caller may see (`for_update`: as for load_analysis)."""
    analysis = load_analysis(session, principal, analysis_id, for_update=for_update)
    for item in analysis.items:
        if item.id == item_id:
            return item
    raise not_found("item", item_id)
