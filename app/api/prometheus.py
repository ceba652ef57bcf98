"""/api/v1/integrations/prometheus/targets: Karta's hosts as a Prometheus http_sd source (the format:
app/integrations/prometheus.py; the choice of hosts, addresses and services: app/services/scrape_targets.py)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.api.ci_query import HostFilters, HostQuery, attribute_filters
from app.api.deps import Reader, RegistryDep, read_transaction
from app.api.responses import JSON
from app.integrations import prometheus
from app.services import scrape_targets

router = APIRouter(prefix="/api/v1/integrations/prometheus", tags=["integrations"])

PARAMS = HostFilters.NAMES | {"port", "address"}


@router.get("/targets")
def targets(
    request: Request,
    principal: Reader,
    registry: RegistryDep,
    filters: HostQuery,
    port: Annotated[int, Query(ge=1, le=65535, description="The port after every address")] = prometheus.DEFAULT_PORT,
    address: Annotated[Literal["ip", "fqdn"], Query(description="Which comes first when a host has both")] = "ip",
):
    """Target groups for Prometheus's `http_sd_configs`: one per host, with labels cmdb_ci, cmdb_name,
    ci_class, environment, owner and services (the services the host serves, sorted, comma-separated).
    Filter like the CI list, `attr.<key>=<value>` included."""
    with read_transaction(request) as conn:
        found = scrape_targets.targets(conn, registry, request.app.state.live_graph, prefer=address,
                                       **filters.service_kwargs(), attributes=attribute_filters(request, PARAMS))
    return JSON(prometheus.http_sd(found, port))
