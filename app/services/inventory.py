"""The hosts of an inventory and the services they carry, read from the database and the live graph.

Hosts are the CIs of the server family (app.services.registry: a class's family is its root
ancestor), so `server`, `virtual_machine` and any class an admin adds under them; network devices,
load balancers and containers are families of their own and are not hosts. The CI list's filters
narrow them (the same conditions, app.services.cis.list_filters).

Services are the CIs of the service family. A service's hosts are the hosts it depends on,
transitively, through the impact graph (graph.providers): the application it runs, the VM under
it, the hypervisor under that, the members of a cluster it uses.

This module reads; it never writes, and knows nothing of Ansible (app.integrations.ansible turns
what it returns into Ansible's format) or of HTTP.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, Engine, select

from app.core import db
from app.models import ConfigurationItem
from app.services.changes import last_seq
from app.services.cis import list_filters
from app.services.inventory_columns import attributes_array, canonical_id, id_text, json_text
from app.services.registry import RegistryCache
from graph.providers import providers_of_each

CI = ConfigurationItem.__table__
HOST_FAMILY = "server"
SERVICE_FAMILY = "service"


class InventoryHost(NamedTuple):
    # A tuple: 100,000 are made per answer, and a frozen dataclass's __init__ costs four times as much.
    id: str
    ci_class: str
    name: str
    status: str
    environment: str | None
    owner: str | None
    tags: list[str]
    ip_address: Any  # the attribute as stored: a string, a list of them, or anything a hand edit left
    fqdn: Any
    attributes: dict[str, Any] | None  # only when asked for


@dataclass(frozen=True)
class Inventory:
    hosts: list[InventoryHost]  # by id
    services: dict[str, list[str]]  # service name -> ids of the hosts it depends on (sorted)
    as_of_seq: int  # the change-feed position the service groups reflect


def family_classes(registry_cache: RegistryCache, family: str, *, conn: Connection) -> list[str]:
    return sorted(name for name, info in registry_cache.get(conn=conn).classes.items() if info.family == family)


def read_hosts(conn: Connection, registry_cache: RegistryCache, *, with_attributes: bool,
               **filters: Any) -> list[InventoryHost]:
    """The hosts matching the CI list's `filters` (class, status, environment, tag, owner, no_owner,
    q, attributes), by id. Only the attributes an inventory needs are read, unless all are asked for:
    a discovered host's packages and filesystems are most of its row."""
    host_classes = family_classes(registry_cache, HOST_FAMILY, conn=conn)
    conditions = [CI.c.ci_class.in_(host_classes), *list_filters(conn, registry_cache, **filters)]
    wanted = json_text(conn, CI.c.attributes) if with_attributes else attributes_array(conn, ["ip_address", "fqdn"])
    query = select(id_text(conn), CI.c.ci_class, CI.c.name, CI.c.status, CI.c.environment, CI.c.owner,
                   json_text(conn, CI.c.tags), wanted).where(*conditions)
    hosts = []
    loads = orjson.loads
    # No ORDER BY: SQLite would walk the id index and fetch each row from it (0.86 s of CPU for
    # 100,000 hosts, against 0.61 s unordered); sorting the ids here costs 0.05 s.
    for ci_id, ci_class, name, status, environment, owner, tags, extra in conn.execute(query).all():
        tags = loads(tags) if tags and tags != "[]" else []
        if with_attributes:
            attributes = loads(extra) or {}
            ip_address, fqdn = attributes.get("ip_address"), attributes.get("fqdn")
        else:
            attributes = None
            ip_address, fqdn = loads(extra) if extra else (None, None)
        hosts.append(InventoryHost(canonical_id(ci_id), ci_class, name, status, environment, owner, tags, ip_address, fqdn,
                                   attributes))
    hosts.sort(key=attrgetter("id"))
    return hosts


def read_services(conn: Connection, registry_cache: RegistryCache) -> list[tuple[str, str]]:
    """(id, name) of every service, by id."""
    service_classes = family_classes(registry_cache, SERVICE_FAMILY, conn=conn)
    query = select(id_text(conn), CI.c.name).where(CI.c.ci_class.in_(service_classes)).order_by(CI.c.id)
    return [(canonical_id(ci_id), name) for ci_id, name in conn.execute(query)]


def inventory(engine: Engine, registry_cache: RegistryCache, live_graph, *, with_attributes: bool = False,
              **filters: Any) -> Inventory:
    """The filtered hosts and, for every service, which of them it depends on.

    The hosts are read first, then the graph is brought up to date: it then holds every relationship
    committed before the hosts were read (a host created since may be missing from a service group,
    never a relationship older than the answer)."""
    with db.read_transaction(engine) as conn:
        hosts = read_hosts(conn, registry_cache, with_attributes=with_attributes, **filters)
        services = read_services(conn, registry_cache)
    host_ids = frozenset(host.id for host in hosts)
    with live_graph.reading() as graph:
        under = providers_of_each(graph, (ci_id for ci_id, _ in services), host_ids)
        as_of_seq = graph.applied_seq
    by_name: dict[str, set[str]] = {}
    for ci_id, name in services:
        # Two services may share a name (one per environment): one group holds the hosts of both.
        by_name.setdefault(name, set()).update(under[ci_id])
    return Inventory(hosts, {name: sorted(ids) for name, ids in by_name.items()}, as_of_seq)


class AnswerCache:
    """Rendered inventories by query, each with the change-feed position it was computed at, served
    again while no change has been committed since (a single indexed read instead of ~2 s of work
    for 100,000 hosts). Every write Karta makes records a change (app.services.history), so an
    unmoved feed means the same CIs, relationships and classes.

    The position is read before the answer is computed: an answer may then reflect changes committed
    after it (and is recomputed at the next request, the feed having moved), never miss one
    committed before it. Bounded by bytes, the oldest answer leaves first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._answers: OrderedDict[Any, tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, engine: Engine, key: Any, make: Callable[[], bytes]) -> tuple[bytes, bool]:
        """(the answer for `key`, whether it came from the cache)."""
        with db.read_transaction(engine) as conn:
            seq = last_seq(conn)
        with self._lock:
            found = self._answers.get(key)
            if found is not None and found[0] == seq:
                self._answers.move_to_end(key)
                return found[1], True
        data = make()
        if len(data) <= self.max_bytes:
            with self._lock:
                self._answers[key] = (seq, data)
                self._answers.move_to_end(key)
                while sum(len(kept) for _, kept in self._answers.values()) > self.max_bytes:
                    self._answers.popitem(last=False)
        return data, False
