"""/api/v1/search: find CIs by name, identifier (IP, MAC, fqdn, serial, machine-id) or attribute value
(scope `read`); the ranking is app/services/search.py's."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import Reader, RegistryDep, read_transaction
from app.api.responses import JSON
from app.models.search import SearchPage
from app.services import search
from app.services.errors import InvalidInput, field_error

router = APIRouter(prefix="/api/v1", tags=["search"])


@router.get("/search", response_model=SearchPage, response_model_by_alias=True)
def search_cis(
    request: Request,
    principal: Reader,
    registry: RegistryDep,
    q: Annotated[str, Query(min_length=1, max_length=search.MAX_QUERY_LENGTH,
                            description="A name or part of one, an identifier, an attribute value; any case")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ci_class: Annotated[str | None, Query(alias="class", description="Subclasses included")] = None,
    identifiers_only: Annotated[bool, Query(description="Only the exact-identifier tier: the CIs whose "
                                            "identifier (IP, MAC, fqdn, serial, machine-id) is the query")] = False,
):
    """Best matches first: exact identifier, exact name, name prefix, name substring, attribute value.
    Parts of names and values need at least 3 characters."""
    query = q.strip()
    if not query:
        raise InvalidInput("The query is empty: give a name, an identifier or a value to search for.",
                           [field_error("query.q", "empty after removing surrounding whitespace")])
    with read_transaction(request) as conn:
        return JSON(search.search_cis(conn, registry, query, limit=limit, ci_class=ci_class,
                                      identifiers_only=identifiers_only))
