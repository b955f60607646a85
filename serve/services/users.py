"""Users whose meals are logged: kiosk keys manage their canteen's, app keys their own."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.core.auth import Principal
from serve.core.errors import ApiError
from serve.core.storage import ImageStore
from serve.db.access import load_canteen, load_user
from serve.db.tables.core import Role, User
from serve.schemas.users import UserCreate, UserUpdate
from serve.services.common import unique_write
from serve.services.privacy import Erased, erase_meals, record_consent, remove_files


def _duplicate_ref(ref: str | None) -> ApiError:
    """409 for an external_ref already used in the canteen."""
    return ApiError(409, "duplicate_user", f"a user with external_ref {ref!r} already exists")


def create_user(session: Session, principal: Principal, body: UserCreate) -> User:
    """A user in the caller's canteen (admins name one); app keys own the users they make."""
    canteen_id = principal.tenant_for_write(body.canteen_id)

    def write(session: Session) -> User:
        """The user row, in a canteen the caller may see."""
        load_canteen(session, principal, canteen_id)
        row = User(canteen_id=canteen_id,
                   app_key_id=principal.key_id if principal.role is Role.APP else None,
                   consent_diary=True, consent_canteen_statistics=True,
                   **body.model_dump(exclude={"canteen_id", "consent"}))
        session.add(row)
        session.flush()
        consent = body.consent
        record_consent(session, principal, row,
                       diary=consent.diary if consent else None,
                       canteen_statistics=consent.canteen_statistics if consent else None,
                       source="given" if consent else "default")
        return row

    return unique_write(session, write, _duplicate_ref(body.external_ref))


def list_users(session: Session, principal: Principal, external_ref: str | None) -> list[User]:
    """The users the caller may see, optionally by external_ref."""
    query = select(User).order_by(User.created_at)
    if principal.role is Role.APP:
        query = query.where(User.app_key_id == principal.key_id)
    elif not principal.is_admin:
        query = query.where(User.canteen_id == principal.canteen_id)
    if external_ref is not None:
        query = query.where(User.external_ref == external_ref)
    return list(session.scalars(query))


def update_user(session: Session, principal: Principal, user_id: str, body: UserUpdate,
                store: ImageStore) -> User:
    """Change the fields the client sent (409 when the external_ref is taken).

    Withdrawing diary consent erases the person's stored meals in the same transaction
    (services.privacy.erase_meals) and their photo files after it.
    """
    erased = Erased()

    def write(session: Session) -> User:
        """Set each sent field on a user the caller may see."""
        nonlocal erased
        row = load_user(session, principal, user_id)
        for name, value in body.model_dump(exclude_unset=True, exclude={"consent"}).items():
            setattr(row, name, value)
        if body.consent is not None:
            sent = body.consent
            if record_consent(session, principal, row, diary=sent.diary,
                              canteen_statistics=sent.canteen_statistics, source="given"):
                erased = erase_meals(session, row.id)
        return row

    row = unique_write(session, write, _duplicate_ref(body.external_ref))
    remove_files(session, store, erased.images)
    return row
