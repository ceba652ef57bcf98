"""/api/v1/tokens: API tokens (admin only). The secret is returned once, at creation."""

import uuid

import anyio
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, write
from app.api.responses import JSON
from app.models.token import TokenCreate, TokenCreated, TokenPublic
from app.services import tokens

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(data: TokenCreate, request: Request, principal: Admin):
    """The change feed records the creation (name, scopes, sources, expiry), never the secret."""
    created = write(request, principal,
                    lambda uow: tokens.create_token(uow, data.name, data.scopes, data.expires_at, data.sources))
    return JSON(created, status_code=201, headers={"Location": f"/api/v1/tokens/{created['id']}"})


@router.get("", response_model=list[TokenPublic])
def list_tokens(request: Request, principal: Admin):
    with request.app.state.engine.connect() as conn:
        return JSON(tokens.list_tokens(conn))


@router.delete("/{token_id}", status_code=204)
async def revoke_token(token_id: uuid.UUID, request: Request, principal: Admin):
    """Answers once no worker accepts the token any more: every worker's cached verification of it has
    expired by then (this waits the token cache time, KARTA_TOKEN_CACHE_SECONDS, after the commit)."""
    verifier: tokens.TokenVerifier = request.app.state.token_verifier
    await run_in_threadpool(write, request, principal, lambda uow: tokens.revoke_token(uow, token_id))
    verifier.forget(token_id)
    await anyio.sleep(tokens.revocation_settled(verifier.cache_seconds))
    return Response(status_code=204)
