"""Hosts as monitoring targets: which CIs, at which address, serving which services.

A target is a CI (by default of the server class and its subclasses; any class may be asked for) with
an address to scrape: the first usable address in its `ip_address` (or `address`) attribute, else its
`fqdn` (`prefer="fqdn"` tries the fqdn first). Discovery writes a host's addresses in the order the
host lists its interfaces, loopback and link-local ones dropped; a CI with no address is left out.

The services a host serves are the CIs of the service class (and subclasses) that the host's failure
reaches in the live impact graph (app/services/live_graph.py): every service with the host among its
providers, transitively (an application that runs on it, a cluster it is a member of, ...).

Reads only; must never write, and never trust a value read from a CI to be well-formed.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from app.models import ConfigurationItem
from app.services.cis import list_filters
from app.services.errors import InvalidInput, field_error
from app.services.identifiers import normalize_address, normalize_fqdn
from app.services.registry import RegistryCache
from graph import reach

CI = ConfigurationItem.__table__
DEFAULT_CLASS = "server"
SERVICE_CLASS = "service"
# An http_sd answer holds every target at once (the format has no pages): past this, narrow the filters.
MAX_TARGETS = 100_000


@dataclass(frozen=True)
class Target:
    ci_id: str
    name: str
    ci_class: str
    environment: str | None
    owner: str | None
    address: str  # an IP address (IPv6 without brackets) or a host name
    services: tuple[str, ...]  # names, sorted, each once


def _first_address(value: Any) -> str | None:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and (address := normalize_address(item)) is not None:
            return address
    return None


def _fqdn(value: Any) -> str | None:
    return normalize_fqdn(value) if isinstance(value, str) else None


def address_of(ip_addresses: Any, address: Any, fqdn: Any, prefer: str) -> str | None:
    by_ip = _first_address(ip_addresses) or _first_address(address)
    by_name = _fqdn(fqdn)
    return (by_name or by_ip) if prefer == "fqdn" else (by_ip or by_name)


def targets(conn: Connection, registry_cache: RegistryCache, live_graph, *, prefer: str = "ip",
            **filters: Any) -> list[Target]:
    """The targets among the CIs matching `filters` (those of app.services.cis.list_filters; `ci_class`
    defaults to server), by name then id."""
    filters["ci_class"] = filters.get("ci_class") or DEFAULT_CLASS
    attributes = CI.c.attributes
    rows = conn.execute(
        select(CI.c.id, CI.c.name, CI.c.ci_class, CI.c.environment, CI.c.owner, attributes["ip_address"],
               attributes["address"], attributes["fqdn"])
        .where(*list_filters(conn, registry_cache, **filters)).order_by(CI.c.name, CI.c.id).limit(MAX_TARGETS + 1)
    ).all()
    if len(rows) > MAX_TARGETS:
        raise InvalidInput(f"More than {MAX_TARGETS:,} CIs match; narrow the filters (class, environment, "
                           "owner, tag, attr.<key>) and make several http_sd jobs.",
                           [field_error("query", "too many targets")])
    found = [(row, address) for row in rows
             if (address := address_of(row[5], row[6], row[7], prefer)) is not None]
    served = services_of(conn, registry_cache, live_graph, {str(row.id) for row, _ in found})
    return [Target(str(row.id), row.name, row.ci_class, row.environment, row.owner, address,
                   served.get(str(row.id), ())) for row, address in found]


def services_of(conn: Connection, registry_cache: RegistryCache, live_graph, hosts: set[str]) -> dict[str, tuple]:
    """host id -> the sorted names of the services its failure reaches, for the hosts given."""
    registry = registry_cache.get(conn=conn)
    if not hosts or SERVICE_CLASS not in registry.classes:
        return {}
    service_classes = sorted(registry.get_class(SERVICE_CLASS).descendants)
    names = {str(ci_id): name for ci_id, name in conn.execute(
        select(CI.c.id, CI.c.name).where(CI.c.ci_class.in_(service_classes)))}
    with live_graph.reading() as graph:  # held only while the part that matters is copied
        part = graph.upstream_part(names)
    found = reach.reached(part, set(names))
    sorted_names: dict[int, tuple[str, ...]] = {}  # hosts often share one set: sort it once
    answer = {}
    for host in hosts:
        services = found.get(host)
        if services:
            if id(services) not in sorted_names:
                sorted_names[id(services)] = tuple(sorted({names[service] for service in services}))
            answer[host] = sorted_names[id(services)]
    return answer

