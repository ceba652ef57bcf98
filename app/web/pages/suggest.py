"""/ui/search/suggest: the type-ahead of the change review, incident and root-cause pages. htmx asks
it as someone types (`q`) and swaps in the matches, each a checkbox named `field` that adds its CI to
the page's form; without JavaScript the pages show the same fragment for the `q` they were sent."""

from fastapi import APIRouter, Request

from app.core.db import read_transaction
from app.services.errors import InvalidInput, field_error
from app.services.search import search_cis
from app.web.auth import CurrentUser
from app.web.render import render

router = APIRouter(include_in_schema=False)

# The checkbox names the pages' forms use.
FIELDS = ("ci", "failed", "symptom")
MAX_QUERY = 200
LIMIT = 10


def search_text(value: str | None) -> str:
    return (value or "").strip()[:MAX_QUERY]


def suggestions(request: Request, q: str) -> dict:
    """search_cis' answer for `q`: the best LIMIT matches."""
    with read_transaction(request.app.state.engine) as conn:
        return search_cis(conn, request.app.state.registry, q, limit=LIMIT)


@router.get("/ui/search/suggest")
def suggest(request: Request, user: CurrentUser, q: str = "", field: str = "ci"):
    if field not in FIELDS:
        raise InvalidInput(f"field must be one of {', '.join(FIELDS)}.", [field_error("field", "unknown form field")])
    q = search_text(q)
    if not q:
        return render(request, "partials/_suggest_empty.html")
    return render(request, "partials/_suggest.html", {"suggestions": suggestions(request, q), "field": field})
