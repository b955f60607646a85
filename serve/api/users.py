"""Users whose meals are logged: kiosk keys manage their canteen's, app keys their own."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from serve.db.access import load_user
from serve.db.tables.core import User
from serve.deps import CurrentPrincipal, ImageStoreDep, SessionDep
from serve.schemas.privacy import ExportFormat, UserExport
from serve.schemas.users import ConsentRecord, UserCreate, UserPublic, UserUpdate
from serve.services import export, privacy
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
    user_id: str, body: UserUpdate, principal: CurrentPrincipal, session: SessionDep,
    store: ImageStoreDep,
) -> User:
    """Change a user's fields (only those sent); consent.diary false erases their meals."""
    return service.update_user(session, principal, user_id, body, store)


@router.get("/{user_id}/consent", response_model=ConsentRecord)
def consent(user_id: str, principal: CurrentPrincipal, session: SessionDep) -> ConsentRecord:
    """The user's current consent and every change of it (when, through which key)."""
    user = load_user(session, principal, user_id)
    history = privacy.consent_history(session, user)
    return ConsentRecord.model_validate(
        {"user_id": user.id, "consent": user.consent, "history": history},
        from_attributes=True)


@router.delete("/{user_id}", status_code=204)
def delete(user_id: str, principal: CurrentPrincipal, session: SessionDep,
           store: ImageStoreDep) -> Response:
    """Delete a user and at once every meal, item, pair and photo of theirs."""
    privacy.delete_user(session, store, principal, user_id)
    return Response(status_code=204)


@router.get("/{user_id}/export", response_model=UserExport, responses={200: {"content": {
    "text/csv": {"schema": {"type": "string"}},
    "application/fhir+json": {"schema": {"type": "object"}}}}})
def export_user(
    user_id: str, principal: CurrentPrincipal, session: SessionDep,
    format: Annotated[ExportFormat, Query(
        description="json: everything; csv: one row per item; fhir: FHIR R5 Bundle of "
                    "NutritionIntake")] = "json",
) -> UserExport | Response:
    """Everything held about one person, as JSON, CSV or a FHIR R5 Bundle."""
    data = export.user_export(session, load_user(session, principal, user_id))
    if format == "csv":
        return _download(export.export_csv(data), "text/csv; charset=utf-8", user_id, "csv")
    if format == "fhir":
        return _download(export.export_fhir(data), "application/fhir+json", user_id,
                         "fhir.json")
    return data


def _download(body: str, media_type: str, user_id: str, suffix: str) -> Response:
    """An export body as a file download."""
    name = f"traylens-user-{user_id}.{suffix}"  # user_id: a known id (load_user found it)
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
