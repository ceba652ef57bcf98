"""The CI list's query, shared by every route that selects CIs the way GET /api/v1/cis does (the CSV
export, the Ansible inventory, Prometheus targets): the filters, declared once, `attr.<key>=<value>`
filters, and no parameter the route does not know (a typo is a 422, never a filter silently dropped).

The filters are a query-parameter model (a route takes `filters: CIQuery`): FastAPI reads each field as
a query parameter, documented in place among the route's own parameters, so the OpenAPI document is
what the three routes declared one by one before. (A `Depends()` would document them after the
route's own parameters, and a model needs no glue to pass on: `filters.service_kwargs()`.)
"""

from typing import Annotated, ClassVar

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field

from app.models.ci import CIStatus
from app.services.errors import InvalidInput, field_error

MAX_ATTRIBUTE_FILTERS = 20


def attribute_filters(request: Request, known: set[str]) -> dict[str, str]:
    """The `attr.<key>=<value>` filters of the query; any other parameter not in `known` is refused."""
    found: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in known:
            continue
        name = key.removeprefix("attr.")
        if name == key or not name:
            raise InvalidInput(f"Unknown query parameter '{key}'. Parameters: {', '.join(sorted(known))}, attr.<key>.",
                               [field_error(f"query.{key}", "unknown parameter")])
        if any(char in name for char in '"\\\x00') or "\x00" in value:
            raise InvalidInput(f"Attribute filter '{key}' has a quote, backslash or NUL character.",
                               [field_error(f"query.{key}", "quote, backslash or NUL in the key or value")])
        found[name] = value
        if len(found) > MAX_ATTRIBUTE_FILTERS:
            raise InvalidInput(f"At most {MAX_ATTRIBUTE_FILTERS} attr.<key> filters per request.",
                               [field_error("query", "too many attribute filters")])
    return found


class HostFilters(BaseModel):
    """class, status, environment, tag, owner: what every CI-selecting route filters on."""

    # Unknown parameters are attribute_filters' to refuse (attr.<key> must pass through).
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    NAMES: ClassVar[frozenset[str]] = frozenset({"class", "status", "environment", "tag", "owner"})

    ci_class: str | None = Field(default=None, alias="class", description="Default server; subclasses included")
    status: CIStatus | None = None
    environment: str | None = None
    tag: str | None = None
    owner: str | None = None

    def service_kwargs(self) -> dict[str, object]:
        """The filters as the services' keyword arguments (`ci_class=...`)."""
        return dict(self)


class CIFilters(HostFilters):
    """The CI list's filters: those of HostFilters, any class by default, and no_owner and q."""

    NAMES: ClassVar[frozenset[str]] = HostFilters.NAMES | {"no_owner", "q"}

    ci_class: str | None = Field(default=None, alias="class", description="Subclasses included")
    no_owner: bool = Field(default=False, description="Only CIs without an owner")
    q: str | None = Field(default=None, description="Text in the name, any case", max_length=200)


CIQuery = Annotated[CIFilters, Query()]
HostQuery = Annotated[HostFilters, Query()]
