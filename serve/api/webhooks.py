"""Webhooks: receivers of signed, retried event deliveries, and their delivery log."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from serve.db.tables.webhooks import Webhook, WebhookDelivery
from serve.deps import CurrentPrincipal, SessionDep, SessionFactoryDep, SettingsDep
from serve.schemas.webhooks import DeliveryPublic, WebhookCreate, WebhookPublic
from serve.services import webhooks as service

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=201, response_model=WebhookPublic)
def create(body: WebhookCreate, principal: CurrentPrincipal, session: SessionDep) -> Webhook:
    """Register a receiver for the caller's canteen (an app key: for its own users)."""
    return service.create_webhook(session, principal, url=body.url, events=list(body.events),
                                  secret=body.secret, canteen_id=body.canteen_id)


@router.get("", response_model=list[WebhookPublic])
def list_webhooks(principal: CurrentPrincipal, session: SessionDep,
                  canteen_id: str | None = None) -> list[Webhook]:
    """The webhooks the caller may see."""
    return service.list_webhooks(session, principal, canteen_id)


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get(webhook_id: str, principal: CurrentPrincipal, session: SessionDep) -> Webhook:
    """One webhook."""
    return service.load_webhook(session, principal, webhook_id)


@router.delete("/{webhook_id}", status_code=204)
def delete(webhook_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Remove a webhook with its delivery log (pending deliveries are dropped)."""
    service.delete_webhook(session, principal, webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/test", status_code=201, response_model=DeliveryPublic)
def test(webhook_id: str, principal: CurrentPrincipal, factory: SessionFactoryDep,
         settings: SettingsDep) -> WebhookDelivery:
    """Send a `webhook.test` delivery now; answers the delivery after its first try (a
    failed try is retried like any other delivery)."""
    return service.send_test(factory, principal, webhook_id, settings)


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryPublic])
def deliveries(webhook_id: str, principal: CurrentPrincipal, session: SessionDep,
               status: Literal["pending", "delivered", "failed"] | None = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[WebhookDelivery]:
    """The webhook's deliveries, newest first."""
    return service.list_deliveries(session, principal, webhook_id, status=status, limit=limit)
