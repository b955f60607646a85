"""Users whose meals are logged: kiosk keys manage their canteen's, app keys their own."""
from __future__ import annotations

from fastapi import APIRouter, Response

from serve.db.access import load_user
from serve.db.tables.core import User
from serve.deps import CurrentPrincipal, SessionDep
from serve.schemas.users import UserCreate, UserPublic, UserUpdate
from serve.services import users as service

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.post("", status_code=201, response_model=UserPublic)
def create(body: UserCreate, principal: CurrentPrincipal, session: SessionDep) -> User:
    """Create a user in the caller's canteen (admins name one)."""
    return service.create_user(session, principal, body)


@router.get("", response_model=list[UserPublic])
def list_users(
    principal: CurrentPrincipal, session: SessionDep, external_ref: str | None = None
) -> list[User]:
    """The users the caller may see, optionally by external_ref."""
    return service.list_users(session, principal, external_ref)


@router.get("/{user_id}", response_model=UserPublic)
def get(user_id: str, principal: CurrentPrincipal, session: SessionDep) -> User:
    """One user."""
    return load_user(session, principal, user_id)


@router.patch("/{user_id}", response_model=UserPublic)
def update(
    user_id: str, body: UserUpdate, principal: CurrentPrincipal, session: SessionDep
) -> User:
    """Change a user's fields (only those sent)."""
    return service.update_user(session, principal, user_id, body)


@router.delete("/{user_id}", status_code=204)
def delete(user_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Delete a user and, by cascade, their logged meals."""
    with session.begin():
        session.delete(load_user(session, principal, user_id))
    return Response(status_code=204)
