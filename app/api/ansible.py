"""/api/v1/integrations/ansible/inventory: the hosts as Ansible's dynamic inventory (scope `read`).

The format and its rules are app/integrations/ansible.py's; which hosts and services, app/services/
inventory.py's. This router reads the query and holds the worker's caches (InventoryCaches)."""

import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.api.ci_query import CIFilters, CIQuery, attribute_filters
from app.api.deps import Reader, RegistryDep
from app.integrations import ansible
from app.services import inventory

router = APIRouter(prefix="/api/v1/integrations/ansible", tags=["integrations"])

OPTIONS = {"attributes", "ansible_host"}


class HostAddress(StrEnum):
    ip = "ip"
    fqdn = "fqdn"


@router.get("/inventory", response_model=dict[str, Any])
def ansible_inventory(
    request: Request,
    principal: Reader,
    registry: RegistryDep,
    filters: CIQuery,
    attributes: Annotated[bool, Query(description="Add each host's attributes as karta_attributes")] = False,
    ansible_host: Annotated[HostAddress, Query(
        description="What ansible_host holds: the first address of ip_address, or the fqdn (each falls back "
                    "to the other)")] = HostAddress.ip,
):
    """Every host (CI of the server family) matching the CI list's filters (`attr.<key>=<value>` too),
    grouped by class, environment, status, owner, tag and service (`service_<name>`: the hosts the
    service depends on through the impact graph), as `ansible-inventory --list` prints it; `_meta.hostvars`
    is always there. Strings are marked `__ansible_unsafe` so Ansible never templates them."""
    attribute_values = attribute_filters(request, CIFilters.NAMES | OPTIONS)

    def make() -> bytes:
        kept = caches(request)
        found = inventory.inventory(
            request.app.state.engine, registry, request.app.state.live_graph, with_attributes=attributes,
            rows=kept.rows, walks=kept.walks, **filters.service_kwargs(), attributes=attribute_values)
        parents = {name: info.parent for name, info in registry.get().classes.items()}
        rendered = None if attributes else kept.rendered  # a host's attributes are kept nowhere
        return orjson.dumps(ansible.to_inventory(found, parents, host_address=ansible_host.value, rendered=rendered))

    key = tuple(sorted(request.query_params.multi_items()))
    data, cached = caches(request).answers.answer(request.app.state.engine, key, make)
    return Response(data, media_type="application/json", headers={"X-Karta-Cached": "true" if cached else "false"})


@dataclass
class InventoryCaches:
    """What one worker keeps between inventory requests: whole answers while the change feed stands
    still, and, for the answer computed after a write, the hosts' rows by CI version, the services'
    walks while the graph's relationships stand still, and each host's rendered variables. The
    answers, the rows and the variables are each bounded by `inventory_cache_bytes`."""

    answers: inventory.AnswerCache
    rows: inventory.HostRows
    walks: inventory.ServiceWalks
    rendered: ansible.RenderedHosts


_made = threading.Lock()


def caches(request: Request) -> InventoryCaches:
    """This worker's caches, made at its first inventory request."""
    state = request.app.state
    kept = getattr(state, "inventory_caches", None)
    if kept is None:
        with _made:
            kept = getattr(state, "inventory_caches", None)
            if kept is None:
                limit = state.settings.inventory_cache_bytes
                kept = state.inventory_caches = InventoryCaches(
                    inventory.AnswerCache(limit), inventory.HostRows(limit), inventory.ServiceWalks(),
                    ansible.RenderedHosts(limit))
    return kept
