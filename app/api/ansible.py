"""/api/v1/integrations/ansible/inventory: the hosts as Ansible's dynamic inventory (scope `read`).

The format and its rules are app/integrations/ansible.py's; which hosts and services, app/services/
inventory.py's. This router only reads the query."""

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
        found = inventory.inventory(
            request.app.state.engine, registry, request.app.state.live_graph, with_attributes=attributes,
            **filters.service_kwargs(), attributes=attribute_values)
        parents = {name: info.parent for name, info in registry.get().classes.items()}
        return orjson.dumps(ansible.to_inventory(found, parents, host_address=ansible_host.value))

    key = tuple(sorted(request.query_params.multi_items()))
    data, cached = answers(request).answer(request.app.state.engine, key, make)
    return Response(data, media_type="application/json", headers={"X-Karta-Cached": "true" if cached else "false"})


def answers(request: Request) -> inventory.AnswerCache:
    """This worker's cache of answers, made at its first inventory request."""
    state = request.app.state
    cache = getattr(state, "inventory_answers", None)
    if cache is None:
        cache = state.inventory_answers = inventory.AnswerCache(state.settings.inventory_cache_bytes)
    return cache
