"""API keys: admins create, list and revoke them; any key can ask who it is."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.core.auth import Principal, create_key
from serve.core.errors import ApiError, not_found
from serve.db.access import load_canteen
from serve.db.base import utcnow
from serve.db.tables.core import ApiKey, Role
from serve.schemas.keys import KeyCreate, KeyCreated, KeyPublic

# The command line's operator (`python -m serve keys ...`): an admin who holds no key, so it
# may revoke any key, the last admin key included (and create a new one).
OPERATOR = Principal(key_id="", role=Role.ADMIN, canteen_id=None)


def new_key(session: Session, admin: Principal, body: KeyCreate) -> KeyCreated:
    """A new key; the plaintext is in this answer only."""
    with session.begin():
        if body.canteen_id is not None:
            load_canteen(session, admin, body.canteen_id)
        row, plaintext = create_key(
            session, name=body.name, role=body.role, canteen_id=body.canteen_id
        )
        return KeyCreated(**KeyPublic.model_validate(row).model_dump(), key=plaintext)


def list_keys(session: Session) -> list[ApiKey]:
    """Every key (without secrets)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def has_active_admin(session: Session) -> bool:
    """Whether any admin key that is not revoked exists (else nobody can administer)."""
    found = session.scalar(select(ApiKey.id).where(
        ApiKey.role == Role.ADMIN.value, ApiKey.revoked_at.is_(None)).limit(1))
    return found is not None


def own_key(session: Session, principal: Principal) -> ApiKey:
    """The calling key's row."""
    row = session.get(ApiKey, principal.key_id)
    if row is None:
        raise not_found("key", principal.key_id)
    return row


def revoke_key(session: Session, admin: Principal, key_id: str) -> ApiKey:
    """Revoke a key at once; an admin cannot revoke their own key (409)."""
    with session.begin():
        row = session.get(ApiKey, key_id)
        if row is None:
            raise not_found("key", key_id)
        if row.id == admin.key_id:
            raise ApiError(409, "own_key", "revoking your own admin key would lock you out")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return row
