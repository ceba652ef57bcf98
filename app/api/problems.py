"""Exception handlers: every error leaves as application/problem+json saying what to fix.

Malformed JSON is a 400; a body or query that parses but has wrong types or values is a 422 listing
each offending field. Database errors are classified by SQLSTATE or SQLite result code
(app.core.db_errors): a unique key taken by a concurrent request is a 409, a transient fault a 503
with Retry-After, a value the database cannot hold a 422. Anything else is logged with the request's
id and answered with a 500 problem carrying that id (never a stack trace).
"""

import logging
import re
import sqlite3
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import problem, problem_from_error
from app.core import metrics
from app.core.db_errors import DatabaseFault, classify
from app.services.errors import KartaError, Unavailable

log = logging.getLogger("karta.api")
REQUEST_ID_HEADER = "X-Request-Id"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()  # as ASGI carries header names
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
RETRY_AFTER_SECONDS = "2"

_HTTP_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                406: "Not acceptable", 408: "Request timeout", 413: "Payload too large", 415: "Unsupported media type"}


def _field_path(loc: tuple) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id") or "-"


class RequestIdMiddleware:
    """Gives every request an id (the client's X-Request-Id when it is a sane token, else a new one),
    echoed in the response header and in 500 problems and the log lines about them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(_HEADER_KEY, b"").decode("latin-1")
        rid = sent if _CLIENT_REQUEST_ID.match(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == _HEADER_KEY for name, _ in headers):
                    message["headers"] = [*headers, (_HEADER_KEY, rid.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _internal_error(request: Request) -> object:
    # Sent by Starlette's outermost error middleware, past the request-id middleware: the header too.
    rid = request_id(request)
    return problem(500, "Internal error", f"Karta failed unexpectedly; the error is in the server log under request "
                   f"id {rid}.", slug="internal-error", instance=request.url.path, request_id=rid,
                   headers={REQUEST_ID_HEADER: rid})


def install(app: FastAPI) -> None:
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(KartaError)
    async def karta_error(request: Request, exc: KartaError):
        response = problem_from_error(exc, instance=request.url.path)
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(exc.extensions.get("retry_after", RETRY_AFTER_SECONDS))
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if malformed is not None:
            reason = malformed.get("ctx", {}).get("error", "invalid JSON")
            return problem(400, "Malformed JSON", f"The request body is not valid JSON: {reason}.",
                           slug="malformed-json", instance=request.url.path)
        fields = [{"field": _field_path(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in errors]
        first = fields[0] if fields else {"field": "body", "message": "invalid"}
        return problem(422, "Invalid input", f"{first['field']}: {first['message']}", slug="invalid-input",
                       instance=request.url.path, errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        title = _HTTP_TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 400 and "parsing the body" in detail:
            return problem(400, "Malformed JSON", "The request body is not valid JSON (or not UTF-8, or nested too deeply).",
                           slug="malformed-json", instance=request.url.path)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No such endpoint: {request.method} {request.url.path}. See /docs."
        return problem(exc.status_code, title, detail, slug=title.lower().replace(" ", "-"),
                       instance=request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(sqlite3.Error)  # raised by the driver outside SQLAlchemy (a raw cursor)
    async def database_error(request: Request, exc: Exception):
        kind = classify(exc)
        metrics.database_error(kind)
        error = getattr(exc, "orig", None) or exc
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        if kind is DatabaseFault.unique:
            return problem(409, "Conflict", "A concurrent request created the same thing first (a name or key "
                           "must be unique); read it, or choose another.", slug="conflict", instance=request.url.path)
        if kind is DatabaseFault.retry:
            log.error("database unavailable on %s %s [%s]: %s", request.method, request.url.path, request_id(request),
                      reason)
            return problem(503, "Database unavailable", "The database is busy or did not answer. Nothing was applied, "
                           "unless the connection broke while the change was committing: read before sending a "
                           "creation again. Try again shortly.", slug="database-unavailable", instance=request.url.path,
                           headers={"Retry-After": RETRY_AFTER_SECONDS})
        if kind is DatabaseFault.value:
            # e.g. a NUL character in a query parameter, which PostgreSQL cannot hold in text
            return problem(422, "Invalid input", f"The database cannot store or compare a value sent: {reason}.",
                           slug="invalid-input", instance=request.url.path, errors=[])
        log.error("database fault on %s %s [%s]", request.method, request.url.path, request_id(request),
                  exc_info=exc)
        return _internal_error(request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unexpected error on %s %s [%s]", request.method, request.url.path, request_id(request),
                  exc_info=exc)
        return _internal_error(request)
