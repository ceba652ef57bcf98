"""/api/v1/webhooks: subscriptions to the change feed, delivered as signed HTTP POSTs (admin only).

The secret is write-only: accepted on create and PATCH, never returned or recorded."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import Admin, read_transaction, write
from app.api.responses import JSON
from app.models.webhook import (
    WebhookCreate,
    WebhookDeliveryPage,
    WebhookPublic,
    WebhookUpdate,
)
from app.services import webhooks

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=201, response_model=WebhookPublic)
def create_webhook(data: WebhookCreate, request: Request, principal: Admin):
    """Deliveries start with the changes committed after this one (its own creation record included
    when the filters take `webhook` records)."""
    sealed = request.app.state.webhook_secrets.seal(data.secret)
    created = write(request, principal, lambda uow: webhooks.create_webhook(
        uow, str(data.url), sealed, data.filters.model_dump()))
    return JSON(created, status_code=201, headers={"Location": f"/api/v1/webhooks/{created['id']}"})


@router.get("", response_model=list[WebhookPublic])
def list_webhooks(request: Request, principal: Admin):
    with read_transaction(request) as conn:
        return JSON(webhooks.list_webhooks(conn))


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: uuid.UUID, request: Request, principal: Admin):
    """`state` says whether it is delivered (active) or was disabled, and `disabled_reason` why."""
    with read_transaction(request) as conn:
        return JSON(webhooks.get_webhook(conn, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookPublic)
def update_webhook(webhook_id: uuid.UUID, data: WebhookUpdate, request: Request, principal: Admin):
    """Replaces the url, secret or filters given. `{"state": "active"}` re-enables a disabled
    subscription: its failures are reset and it resumes from its cursor, so the changes made meanwhile
    are delivered too. `{"state": "disabled"}` stops deliveries."""
    changes = data.model_dump(exclude_none=True, exclude={"secret"})
    if "url" in changes:
        changes["url"] = str(data.url)
    if data.secret is not None:
        changes["sealed_secret"] = request.app.state.webhook_secrets.seal(data.secret)
    return JSON(write(request, principal, lambda uow: webhooks.update_webhook(uow, webhook_id, changes)))


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: uuid.UUID, request: Request, principal: Admin):
    """Removes the subscription and its delivery log."""
    write(request, principal, lambda uow: webhooks.delete_webhook(uow, webhook_id))
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryPage)
def list_deliveries(webhook_id: uuid.UUID, request: Request, principal: Admin,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100):
    """The latest attempts, newest first (the log keeps KARTA_WEBHOOK_LOG_KEEP per subscription):
    when, which seqs, how many records, the status code or the error, how long it took."""
    with read_transaction(request) as conn:
        return JSON(webhooks.list_deliveries(conn, webhook_id, limit))
