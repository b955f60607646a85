"""Users whose meals are logged: kiosk keys manage their canteen's, app keys their own."""
from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from serve.core.errors import ApiError
from serve.db.access import load_canteen, load_user
from serve.db.tables.core import Role, User
from serve.deps import CurrentPrincipal, SessionDep
from serve.schemas import UserCreate, UserPublic, UserUpdate

router = APIRouter(prefix="/v1/users", tags=["users"])


def _duplicate_ref(ref: str | None) -> ApiError:
    """409 for an external_ref already used in the canteen."""
    return ApiError(409, "duplicate_user", f"a user with external_ref {ref!r} already exists")


@router.post("", status_code=201, response_model=UserPublic)
def create(body: UserCreate, principal: CurrentPrincipal, session: SessionDep) -> User:
    """Create a user in the caller's canteen (admins name one)."""
    canteen_id = principal.tenant_for_write(body.canteen_id)
    try:
        with session.begin():
            load_canteen(session, principal, canteen_id)
            row = User(
                canteen_id=canteen_id,
                app_key_id=principal.key_id if principal.role is Role.APP else None,
                **body.model_dump(exclude={"canteen_id"}),
            )
            session.add(row)
            session.flush()
            return row
    except IntegrityError as exc:
        raise _duplicate_ref(body.external_ref) from exc


@router.get("", response_model=list[UserPublic])
def list_users(
    principal: CurrentPrincipal, session: SessionDep, external_ref: str | None = None
) -> list[User]:
    """The users the caller may see, optionally by external_ref."""
    query = select(User).order_by(User.created_at)
    if principal.role is Role.APP:
        query = query.where(User.app_key_id == principal.key_id)
    elif not principal.is_admin:
        query = query.where(User.canteen_id == principal.canteen_id)
    if external_ref is not None:
        query = query.where(User.external_ref == external_ref)
    return list(session.scalars(query))


@router.get("/{user_id}", response_model=UserPublic)
def get(user_id: str, principal: CurrentPrincipal, session: SessionDep) -> User:
    """One user."""
    return load_user(session, principal, user_id)


@router.patch("/{user_id}", response_model=UserPublic)
def update(
    user_id: str, body: UserUpdate, principal: CurrentPrincipal, session: SessionDep
) -> User:
    """Change a user's fields (only those sent)."""
    try:
        with session.begin():
            row = load_user(session, principal, user_id)
            for name, value in body.model_dump(exclude_unset=True).items():
                setattr(row, name, value)
            return row
    except IntegrityError as exc:
        raise _duplicate_ref(body.external_ref) from exc


@router.delete("/{user_id}", status_code=204)
def delete(user_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Delete a user and, by cascade, their logged meals."""
    with session.begin():
        session.delete(load_user(session, principal, user_id))
    return Response(status_code=204)
