"""API keys: admins create, list and revoke them; any key can ask who it is."""
from __future__ import annotations

from fastapi import APIRouter

from serve.core.errors import documented
from serve.db.tables.core import ApiKey
from serve.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from serve.schemas.keys import KeyCreate, KeyCreated, KeyPublic
from serve.services import keys as service

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=KeyCreated)
def create(body: KeyCreate, admin: AdminPrincipal, session: SessionDep) -> KeyCreated:
    """Create a key; the plaintext is in this answer only."""
    return service.new_key(session, admin, body)


@router.get("", response_model=list[KeyPublic])
def list_keys(_: AdminPrincipal, session: SessionDep) -> list[ApiKey]:
    """Every key (without secrets)."""
    return service.list_keys(session)


@router.get("/me", response_model=KeyPublic)
def whoami(principal: CurrentPrincipal, session: SessionDep) -> ApiKey:
    """The calling key."""
    return service.own_key(session, principal)


@router.delete("/{key_id}", response_model=KeyPublic, responses=documented(409))  # own key
def revoke(key_id: str, admin: AdminPrincipal, session: SessionDep) -> ApiKey:
    """Revoke a key; it stops working at once. An admin cannot revoke their own key."""
    return service.revoke_key(session, admin, key_id)
