"""Exception handlers: every error leaves as application/problem+json saying what to fix.

Malformed JSON is a 400; a body or query that parses but has wrong types or values is a 422 listing
each offending field. Anything unexpected is logged and answered with a 500 problem (never a stack trace).
"""

import logging
import re
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.responses import problem, problem_from_error
from app.services.errors import KartaError

log = logging.getLogger("karta.api")
# Errors that mean "try again later" rather than "this request cannot be answered".
_UNAVAILABLE = re.compile(r"deadlock|locked|busy|connection|server closed|terminat|timeout|could not connect|"
                          r"too many clients|shutting down|disk i/o|unable to open|could not serialize", re.IGNORECASE)

_HTTP_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                406: "Not acceptable", 413: "Payload too large", 415: "Unsupported media type"}


def _field_path(loc: tuple) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(KartaError)
    async def karta_error(request: Request, exc: KartaError):
        return problem_from_error(exc, instance=request.url.path)

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

    @app.exception_handler(DataError)
    async def unstorable_value(request: Request, exc: DataError):
        # e.g. a NUL character in a query parameter, which PostgreSQL cannot hold in text
        reason = str(exc.orig).splitlines()[0] if exc.orig else "invalid value"
        return problem(422, "Invalid input", f"The database cannot store or compare a value sent: {reason}.",
                       slug="invalid-input", instance=request.url.path, errors=[])

    @app.exception_handler(OperationalError)
    @app.exception_handler(sqlite3.OperationalError)
    async def database_error(request: Request, exc: Exception):
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if not _UNAVAILABLE.search(reason):
            # The database could not evaluate what was asked (a SQLite JSON path, an expression too big).
            log.warning("database refused %s %s: %s", request.method, request.url.path, reason)
            return problem(422, "Invalid input", f"The database cannot evaluate this request: {reason}.",
                           slug="invalid-input", instance=request.url.path, errors=[])
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, reason)
        return problem(503, "Database unavailable", "The database is busy or did not answer; try again shortly.",
                       slug="database-unavailable", instance=request.url.path, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "Karta failed unexpectedly; the error is in the server log.",
                       slug="internal-error", instance=request.url.path)
