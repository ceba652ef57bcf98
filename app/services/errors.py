"""Domain errors. Services raise them; the API turns each into an RFC 9457 problem document."""

from typing import Any


class KartaError(Exception):
    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class NotFound(KartaError):
    status = 404
    title = "Not found"
    slug = "not-found"


class InvalidInput(KartaError):
    """422: the request is well-formed JSON but breaks a rule. `errors` names each field and why."""

    status = 422
    title = "Invalid input"
    slug = "invalid-input"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None, **extensions: Any) -> None:
        super().__init__(detail, errors=errors or [], **extensions)


class Conflict(KartaError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Unavailable(KartaError):
    """503: nothing was applied because of what other writers were doing; the same request may succeed later."""

    status = 503
    title = "Database unavailable"
    slug = "database-unavailable"


class TokenRevoked(KartaError):
    """401: the token was revoked or expired after the request was accepted, before it could write."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class PreconditionFailed(KartaError):
    status = 412
    title = "Precondition failed"
    slug = "precondition-failed"


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}

