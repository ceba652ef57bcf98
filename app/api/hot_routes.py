"""The reads that carry the most load, answered ahead of FastAPI's routing.

`GET /api/v1/cis/{id}` is the read every tool makes (a CMDB lookup per alert, per playbook host, per
ticket). Of the CPU one cost a worker, FastAPI's per-request work around the endpoint (solving the
dependencies and validating the parameters ~19%, matching the path through the included routers ~5%)
was more than the statement's execution (BENCHMARKS.md, "The single-CI read ahead of FastAPI's
routing"). So the path is also declared as a plain Starlette route, first in the application's routes,
that does what FastAPI's route does by the same calls: the token checked by `app.api.deps.authorize`
(what the `Reader` dependency runs), the answer made by `app.api.cis.ci_detail`, errors raised as
exceptions for the same handlers to answer, under the same middleware (request id, metrics under the
same route template, read routing, security headers).

FastAPI's route stays behind it: it is the one the OpenAPI description documents, and it answers what
the plain route does not match (an id in another spelling, which it reads the same way, or refuses with
422 as before). FastAPI's `dependency_overrides` do not reach the plain route."""

import uuid

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.api import cis
from app.api.deps import authorize
from app.models.token import Scope as TokenScope


async def _ci_detail(request: Request) -> Response:
    await authorize(request, TokenScope.read)
    return await cis.ci_detail(request, request.path_params["ci_id"])


class _CanonicalUUID(Convertor):
    """An id as FastAPI's route takes it and as Karta writes it: 8-4-4-4-12 hex digits, or 32 in a row
    (Starlette's own uuid convertor also takes some hyphens without the others, which FastAPI refused
    with 422: such a path goes on to FastAPI's route, as do braces and urn:uuid:)."""

    # (?!\n): the route's pattern ends in `$`, which also matches before a final newline (%0A)
    regex = "(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})(?!\n)"

    def convert(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_string(self, value: uuid.UUID) -> str:
        return str(value)


register_url_convertor("karta_uuid", _CanonicalUUID())


class _HotRoute(Route):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI's router (APIRouter.app) sets scope["route"] for its own routes only; the request
        # metrics label the request with its template from there
        scope["route"] = self
        await super().handle(scope, receive, send)


def routes() -> list[Route]:
    detail = _HotRoute("/api/v1/cis/{ci_id:karta_uuid}", _ci_detail, methods=["GET"])
    detail.methods.discard("HEAD")  # Starlette adds HEAD to a GET route; FastAPI's route answers HEAD with 405
    return [detail]


def install(app) -> None:
    """Put the routes first: Starlette's router takes the first route that matches."""
    app.router.routes[:0] = routes()
