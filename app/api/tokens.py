"""/api/v1/tokens: API tokens (admin only). The secret is returned once, at creation."""

import uuid

from fastapi import APIRouter, Request, Response

from app.api.deps import Admin
from app.api.responses import JSON
from app.core.db import write_transaction
from app.models.token import TokenCreate, TokenCreated, TokenPublic
from app.services import tokens

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(data: TokenCreate, request: Request, principal: Admin):
    with write_transaction(request.app.state.engine) as conn:
        created = tokens.create_token(conn, data.name, data.scopes, data.expires_at)
    return JSON(created, status_code=201)


@router.get("", response_model=list[TokenPublic])
def list_tokens(request: Request, principal: Admin):
    with request.app.state.engine.connect() as conn:
        return JSON(tokens.list_tokens(conn))


@router.delete("/{token_id}", status_code=204)
def revoke_token(token_id: uuid.UUID, request: Request, principal: Admin):
    """Revokes at once in this worker, and in the others within the token cache time."""
    with write_transaction(request.app.state.engine) as conn:
        tokens.revoke_token(conn, token_id)
    request.app.state.token_verifier.forget()
    return Response(status_code=204)
