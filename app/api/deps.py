"""Request dependencies: the caller's token and scope, database connections, units of work."""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from app.core import db
from app.models.token import Scope
from app.services.errors import KartaError, field_error
from app.services.history import UnitOfWork, in_unit_of_work
from app.services.registry import RegistryCache
from app.services.tokens import NOT_CACHED, Principal, TokenVerifier

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="A Karta API token: `karta token create` or POST /api/v1/tokens.")


class Unauthorized(KartaError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(KartaError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


async def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Send 'Authorization: Bearer <token>'. Create a token with `karta token create`.")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = verifier.cached(credentials.credentials)
    if principal is NOT_CACHED:
        # A database read (and maybe a write): never on the event loop, which serves every request.
        principal = await run_in_threadpool(verifier.verify, credentials.credentials)
    if principal is None:
        raise Unauthorized("The token is unknown, revoked or expired.")
    return principal


def _admitted(principal: Principal, scopes: tuple[Scope, ...]) -> Principal:
    if not any(principal.has(scope) for scope in scopes):
        wanted = " or ".join(scope.value for scope in scopes)
        raise Forbidden(f"This needs a token with scope '{wanted}'; token '{principal.name}' has "
                        f"{', '.join(sorted(principal.scopes)) or 'none'}.")
    return principal


def require(*scopes: Scope):
    """A dependency that admits tokens holding any one of `scopes` (admin holds every scope)."""

    # async so FastAPI runs it on the event loop: a cached token costs no thread hop; a cache miss
    # goes to the thread pool.
    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        return _admitted(await _authenticate(request, credentials), scopes)

    return Depends(dependency)


async def authorize(request: Request, *scopes: Scope) -> Principal:
    """What `require(*scopes)` does, for an endpoint FastAPI does not call (app/api/hot_routes.py):
    the same header parsing, token check and errors."""
    return _admitted(await _authenticate(request, await _bearer(request)), scopes)


Reader = Annotated[Principal, require(Scope.read)]
Writer = Annotated[Principal, require(Scope.write)]
Admin = Annotated[Principal, require(Scope.admin)]


@contextmanager
def read_transaction(request: Request) -> Iterator[Connection]:
    """A read-only transaction, opened inside the (threaded) endpoint rather than as a generator
    dependency: FastAPI would run such a dependency's enter and exit on two more thread hops.

    With read replicas, the request's route (app/api/read_routing.py) may send it to a replica: in a
    GET it may lag (X-Karta-Min-Seq bounds how far); in a request that writes it is the primary's."""
    with db.read_transaction(request.app.state.engine) as conn:
        yield conn


async def get_registry(request: Request) -> RegistryCache:
    return request.app.state.registry


def write(request: Request, actor: Principal, work: Callable[[UnitOfWork], T]) -> T:
    """Run `work(uow)` as one transaction, again if the database aborted it to break a deadlock."""
    done = in_unit_of_work(request.app.state.engine, actor.name, work, token_id=actor.token_id)
    request.app.state.service_maps.notify()  # committed: the service maps it touched, in their own transaction
    return done


_ENTITY_TAG = re.compile(r'^(W/)?"([\x21\x23-\x7e]*)"$')


def parse_if_match(if_match: str | None) -> int | None:
    """The CI version an If-Match names; None if absent or '*'; -1 (never a version, so 412) for a
    well-formed entity tag we never issued. A malformed one (`banana`: RFC 9110 entity tags are quoted)
    is a 400: the client has a bug, not a stale copy."""
    if if_match is None or if_match.strip() == "*":
        return None
    first = if_match.split(",")[0].strip()
    match = _ENTITY_TAG.match(first)
    if match is None:
        raise KartaError(f"If-Match {first[:50]!r} is not an entity tag: send the ETag as read, quotes included "
                         '(e.g. If-Match: "3").', errors=[field_error("header.If-Match", "not a quoted entity tag")])
    try:
        return int(match.group(2))
    except ValueError:
        return -1


RegistryDep = Annotated[RegistryCache, Depends(get_registry)]
IfMatch = Annotated[str | None, Header(description='The CI version from its ETag, e.g. "3"; 412 if it changed since.')]
