"""/api/v1/integrations/prometheus/targets: Karta's hosts as a Prometheus http_sd source (the format:
app/integrations/prometheus.py; the choice of hosts, addresses and services: app/services/scrape_targets.py)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.api.deps import Reader, RegistryDep, read_transaction
from app.api.responses import JSON
from app.integrations import prometheus
from app.models.ci import CIStatus
from app.services import scrape_targets
from app.services.errors import InvalidInput, field_error

router = APIRouter(prefix="/api/v1/integrations/prometheus", tags=["integrations"])

PARAMS = {"class", "status", "environment", "tag", "owner", "port", "address"}
MAX_ATTRIBUTE_FILTERS = 20


@router.get("/targets")
def targets(
    request: Request,
    principal: Reader,
    registry: RegistryDep,
    ci_class: Annotated[str | None, Query(alias="class", description="Default server; subclasses included")] = None,
    status: CIStatus | None = None,
    environment: str | None = None,
    tag: str | None = None,
    owner: str | None = None,
    port: Annotated[int, Query(ge=1, le=65535, description="The port after every address")] = prometheus.DEFAULT_PORT,
    address: Annotated[Literal["ip", "fqdn"], Query(description="Which comes first when a host has both")] = "ip",
):
    """Target groups for Prometheus's `http_sd_configs`: one per host, with labels cmdb_ci, cmdb_name,
    ci_class, environment, owner and services (the services the host serves, sorted, comma-separated).
    Filter like the CI list, `attr.<key>=<value>` included."""
    with read_transaction(request) as conn:
        found = scrape_targets.targets(conn, registry, request.app.state.live_graph, prefer=address,
                                       ci_class=ci_class, status=status, environment=environment, tag=tag,
                                       owner=owner, attributes=_attribute_filters(request))
    return JSON(prometheus.http_sd(found, port))


def _attribute_filters(request: Request) -> dict[str, str]:
    attributes = {}
    for key, value in request.query_params.multi_items():
        if not key.startswith("attr.") or len(key) == 5:
            if key not in PARAMS:
                raise InvalidInput(f"Unknown query parameter '{key}'. Filters: {', '.join(sorted(PARAMS))}, "
                                   "attr.<key>.", [field_error(f"query.{key}", "unknown parameter")])
            continue
        if any(char in key for char in '"\\\x00') or "\x00" in value:
            raise InvalidInput(f"Attribute filter '{key}' has a quote, backslash or NUL character.",
                               [field_error(f"query.{key}", "quote, backslash or NUL in the key or value")])
        attributes[key[5:]] = value
        if len(attributes) > MAX_ATTRIBUTE_FILTERS:
            raise InvalidInput(f"At most {MAX_ATTRIBUTE_FILTERS} attr.<key> filters per request.",
                               [field_error("query", "too many attribute filters")])
    return attributes
