"""API keys: admins create, list and revoke them; any key can ask who it is."""
from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from serve.core.auth import create_key
from serve.core.errors import ApiError, not_found
from serve.db.access import load_canteen
from serve.db.base import utcnow
from serve.db.tables.core import ApiKey
from serve.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from serve.schemas import KeyCreate, KeyCreated, KeyPublic

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=KeyCreated)
def create(body: KeyCreate, admin: AdminPrincipal, session: SessionDep) -> KeyCreated:
    """Create a key; the plaintext is in this answer only."""
    with session.begin():
        if body.canteen_id is not None:
            load_canteen(session, admin, body.canteen_id)
        row, plaintext = create_key(
            session, name=body.name, role=body.role, canteen_id=body.canteen_id
        )
        return KeyCreated(**KeyPublic.model_validate(row).model_dump(), key=plaintext)


@router.get("", response_model=list[KeyPublic])
def list_keys(_: AdminPrincipal, session: SessionDep) -> list[ApiKey]:
    """Every key (without secrets)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


@router.get("/me", response_model=KeyPublic)
def whoami(principal: CurrentPrincipal, session: SessionDep) -> ApiKey:
    """The calling key."""
    row = session.get(ApiKey, principal.key_id)
    if row is None:
        raise not_found("key", principal.key_id)
    return row


@router.delete("/{key_id}", response_model=KeyPublic)
def revoke(key_id: str, admin: AdminPrincipal, session: SessionDep) -> ApiKey:
    """Revoke a key; it stops working at once. An admin cannot revoke their own key."""
    with session.begin():
        row = session.get(ApiKey, key_id)
        if row is None:
            raise not_found("key", key_id)
        if row.id == admin.key_id:
            raise ApiError(409, "own_key", "revoking your own admin key would lock you out")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return row

