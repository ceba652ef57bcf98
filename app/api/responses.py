"""JSON responses rendered with orjson (UUIDs and datetimes natively), and RFC 9457 problem documents."""

from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response

from app.services.errors import KartaError

PROBLEM_TYPE_BASE = "urn:karta:problem:"


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def problem(status: int, title: str, detail: str, *, slug: str, instance: str | None = None,
            headers: dict[str, str] | None = None, **extensions: Any) -> Response:
    body = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return Response(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def problem_from_error(error: KartaError, instance: str | None = None) -> Response:
    return problem(error.status, error.title, error.detail, slug=error.slug, instance=instance, **error.extensions)


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
# Documented on every route, so clients generated from the OpenAPI description know the error shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": description, "content": _PROBLEM_CONTENT}
    for status, description in (
        (400, "Malformed JSON"), (401, "No valid token"), (403, "The token lacks the scope"),
        (404, "Not found"), (409, "Conflict, e.g. a duplicate identifier"), (412, "Stale If-Match version"),
        (413, "Too many items"), (422, "Invalid input: `errors` names each field and why"),
    )
}
