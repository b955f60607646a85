"""API keys (stored hashed), the authenticated principal and tenant/user scoping rules."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.core.errors import ApiError, forbidden, not_found
from serve.db.tables.analyses import Analysis
from serve.db.tables.core import ApiKey, Role, User

KEY_PREFIX = "tl_"


def hash_key(key: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a fast hash is safe and lookups stay O(1)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    """A new random API key (shown to the caller once, never stored)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, role and tenant."""

    key_id: str
    role: Role
    canteen_id: str | None

    @property
    def is_admin(self) -> bool:
        """Admins see every tenant."""
        return self.role is Role.ADMIN

    def require_admin(self) -> None:
        """Only admin keys may pass."""
        if not self.is_admin:
            raise forbidden("this needs an admin key")

    def require_role(self, *roles: Role) -> None:
        """Admins and the listed roles may pass."""
        if not self.is_admin and self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise forbidden(f"this needs an admin key or a key with role: {allowed}")

    def can_see_canteen(self, canteen_id: str | None) -> bool:
        """Admins see all; kiosk and app keys only their own tenant."""
        return self.is_admin or (canteen_id is not None and canteen_id == self.canteen_id)

    def can_see_user(self, user: User) -> bool:
        """Kiosks see their canteen's users; an app key only the users it created."""
        if self.is_admin:
            return True
        if self.role is Role.APP:
            return user.app_key_id == self.key_id
        return user.canteen_id == self.canteen_id

    def can_see_analysis(self, analysis: Analysis, user: User | None) -> bool:
        """Kiosks see their canteen's analyses; apps the ones they sent or of their users."""
        if self.is_admin:
            return True
        if self.role is Role.APP:
            own_user = user is not None and user.app_key_id == self.key_id
            return analysis.api_key_id == self.key_id or own_user
        return analysis.canteen_id == self.canteen_id

    def tenant_for_write(self, canteen_id: str | None) -> str:
        """The canteen a new record belongs to: the key's own, or one an admin names."""
        if self.is_admin:
            if canteen_id is None:
                raise ApiError(422, "canteen_required", "admin requests must name a canteen_id")
            return canteen_id
        if canteen_id is not None and canteen_id != self.canteen_id:
            raise not_found("canteen", canteen_id)
        assert self.canteen_id is not None  # guaranteed by the api_keys CHECK constraint
        return self.canteen_id


def unauthorized(detail: str) -> ApiError:
    """401 with the header that tells clients which scheme to use."""
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def parse_bearer(header: str | None) -> str:
    """The key from an `Authorization: Bearer KEY` header."""
    if not header:
        raise unauthorized("missing Authorization header (expected 'Bearer KEY')")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authorization header must be 'Bearer KEY'")
    return token.strip()


def authenticate(session: Session, key: str) -> Principal:
    """The principal for a key; 401 when unknown or revoked."""
    # Looking up by hash means the secret itself is never compared byte by byte (no timing leak).
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None:
        raise unauthorized("unknown API key")
    if row.revoked_at is not None:
        raise unauthorized("this API key was revoked")
    return Principal(key_id=row.id, role=Role(row.role), canteen_id=row.canteen_id)


def create_key(
    session: Session, *, name: str, role: Role, canteen_id: str | None, key: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key (hashed) and return the row with the plaintext key, shown once."""
    if role is not Role.ADMIN and canteen_id is None:
        raise ApiError(422, "canteen_required", f"a {role.value} key must belong to a canteen")
    plaintext = key or generate_key()
    row = ApiKey(
        name=name,
        role=role.value,
        canteen_id=canteen_id if role is not Role.ADMIN else None,
        key_hash=hash_key(plaintext),
        prefix=plaintext[:10],
    )
    session.add(row)
    session.flush()
    return row, plaintext


def bootstrap_admin(session: Session, key: str) -> bool:
    """Create the first admin key from settings on a fresh install; True when created."""
    has_admin = session.scalar(select(ApiKey.id).where(ApiKey.role == Role.ADMIN.value).limit(1))
    if has_admin is not None:
        return False
    create_key(session, name="bootstrap admin", role=Role.ADMIN, canteen_id=None, key=key)
    return True
