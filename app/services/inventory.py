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
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, Engine, select

from app.core import db
from app.models import ChangeRecord, ConfigurationItem
from app.services.bulk import id_in
from app.services.changes import last_seq
from app.services.cis import list_filters
from app.services.inventory_columns import (
    attributes_array,
    canonical_id,
    id_text,
    json_text,
)
from app.services.registry import RegistryCache
from graph.providers import providers, providers_of_each

CI = ConfigurationItem.__table__
CHANGE = ChangeRecord.__table__
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


def _host_query(conn: Connection, registry_cache: RegistryCache, *, with_attributes: bool, **filters: Any):
    """SELECT the id (as text) and the fields of an InventoryHost, for the hosts matching
    `filters`. No ORDER BY: SQLite would walk the id index and fetch each row from it (0.86 s of CPU for
    100,000 hosts, against 0.61 s unordered); sorting the ids here costs 0.05 s."""
    host_classes = family_classes(registry_cache, HOST_FAMILY, conn=conn)
    conditions = [CI.c.ci_class.in_(host_classes), *list_filters(conn, registry_cache, **filters)]
    wanted = json_text(conn, CI.c.attributes) if with_attributes else attributes_array(conn, ["ip_address", "fqdn"])
    return select(id_text(conn), CI.c.ci_class, CI.c.name, CI.c.status, CI.c.environment, CI.c.owner,
                  json_text(conn, CI.c.tags), wanted).where(*conditions)


def _host(ci_id: str, ci_class, name, status, environment, owner, tags, extra, with_attributes: bool,
          shared: dict[str, str]) -> InventoryHost:
    """`shared` gives one string object per repeated value (a class, a status...): the driver makes one
    per row, and HostRows keeps 100,000 rows (~230 bytes a host saved)."""
    loads = orjson.loads
    ci_class, status = shared.setdefault(ci_class, ci_class), shared.setdefault(status, status)
    if environment is not None:
        environment = shared.setdefault(environment, environment)
    if owner is not None:
        owner = shared.setdefault(owner, owner)
    tags = loads(tags) if tags and tags != "[]" else []
    if with_attributes:
        attributes = loads(extra) or {}
        ip_address, fqdn = attributes.get("ip_address"), attributes.get("fqdn")
    else:
        attributes = None
        ip_address, fqdn = loads(extra) if extra else (None, None)
    return InventoryHost(ci_id, ci_class, name, status, environment, owner, tags, ip_address, fqdn, attributes)


def read_hosts(conn: Connection, registry_cache: RegistryCache, *, with_attributes: bool,
               **filters: Any) -> list[InventoryHost]:
    """The hosts matching the CI list's `filters` (class, status, environment, tag, owner, no_owner,
    q, attributes), by id. Only the attributes an inventory needs are read, unless all are asked for:
    a discovered host's packages and filesystems are most of its row."""
    query = _host_query(conn, registry_cache, with_attributes=with_attributes, **filters)
    shared: dict[str, str] = {}
    hosts = [_host(canonical_id(row[0]), *row[1:], with_attributes, shared) for row in conn.execute(query)]
    hosts.sort(key=attrgetter("id"))
    return hosts


class HostRows:
    """The hosts of each filter as last read (without their attributes), with the change-feed position
    they reflect, brought up to date by re-reading only the CIs the feed names since: an answer after
    one write reads one row, not 100,000. Reading the hosts is most of an inventory's cost: on SQLite a
    discovered host's row fills a page (a scan of `ci` reads ~400 MB for 100,000 hosts, even for two
    columns); on PostgreSQL its attributes are parsed for two keys.

    Every write Karta makes records a change (app.services.history) naming the CI it wrote, in commit
    order (the live graph relies on it the same way): the hosts matching a filter at position S, with
    the CIs named in (S, T] read again under the filter, are the hosts matching it at T. A record of a
    kind that could move hosts without naming them (a class: its family or subclasses) or too many
    records read everything again, and so does a change of the class tree the registry gives (the
    family and a class filter's subclasses come from it, refreshed every few seconds). Per worker,
    bounded by bytes (roughly), the least recently used filter leaving first."""

    HOST_BYTES = 700  # a host's tuple, id, tags, addresses and dict slot beyond its name (measured: 695)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[Any, tuple[int, Any, dict[str, InventoryHost], int]] = OrderedDict()
        self._lock = threading.Lock()
        self.full_reads = 0  # how many answers read every host again (for tests and benchmarks)

    def __len__(self) -> int:
        """How many filters' hosts are kept."""
        return len(self._kept)

    def read(self, conn: Connection, registry_cache: RegistryCache, **filters: Any) -> list[InventoryHost]:
        """read_hosts(conn, registry_cache, with_attributes=False, **filters), reading only what
        changed since this filter's hosts were last read."""
        seq = last_seq(conn)
        tree = class_tree(registry_cache, conn=conn)
        key = tuple(sorted((name, tuple(sorted(value.items())) if isinstance(value, dict) else value)
                           for name, value in filters.items()))
        with self._lock:
            kept = self._kept.get(key)
        changed = None
        if kept is not None and kept[1] == tree and kept[0] <= seq:
            changed = changed_cis(conn, kept[0], seq)
        if changed is None:
            self.full_reads += 1
            hosts = {host.id: host for host in read_hosts(conn, registry_cache, with_attributes=False, **filters)}
            size = sum(self._bytes(host) for host in hosts.values())
        else:
            hosts, size = dict(kept[2]), kept[3]  # a copy: another request may be reading the one kept
            if changed:
                for ci_id in changed:
                    if (gone := hosts.pop(str(ci_id), None)) is not None:
                        size -= self._bytes(gone)
                query = _host_query(conn, registry_cache, with_attributes=False, **filters)
                for row in conn.execute(query.where(id_in(conn, CI.c.id, changed))):
                    host = _host(canonical_id(row[0]), *row[1:], False, {})
                    hosts[host.id] = host
                    size += self._bytes(host)
        self._keep(key, (seq, tree, hosts, size))
        # Nearly in order already (the hosts read again come last): sorting costs little.
        return sorted(hosts.values(), key=attrgetter("id"))

    def _bytes(self, host: InventoryHost) -> int:
        return self.HOST_BYTES + len(host.name)

    def _keep(self, key: Any, entry: tuple[int, Any, dict[str, InventoryHost], int]) -> None:
        if entry[3] > self.max_bytes:
            return
        with self._lock:
            self._kept[key] = entry
            self._kept.move_to_end(key)
            while sum(kept[3] for kept in self._kept.values()) > self.max_bytes:
                self._kept.popitem(last=False)


# Up to this many change records since the hosts were last read, the CIs they name are read again by
# id (one bound value, app.services.bulk); past it, every host is.
FEW_CHANGES = 10_000
# Kinds of change records that move no host: they name no CI, and change no class.
_NO_HOST_CHANGE = frozenset({"relationship", "relationship_type", "precedence", "token", "webhook", "incident"})


def changed_cis(conn: Connection, after: int, up_to: int) -> set[uuid.UUID] | None:
    """The CIs the change records in (after, up_to] name; None when they are too many, or a record
    may have moved hosts without naming them (any kind but a CI's and those known to move none)."""
    records = conn.execute(select(CHANGE.c.object_type, CHANGE.c.object_id)
                           .where(CHANGE.c.seq > after, CHANGE.c.seq <= up_to).limit(FEW_CHANGES + 1)).all()
    if len(records) > FEW_CHANGES:
        return None
    changed = set()
    for object_type, object_id in records:
        if object_type == "ci":
            changed.add(object_id)
        elif object_type not in _NO_HOST_CHANGE:
            return None
    return changed


def class_tree(registry_cache: RegistryCache, *, conn: Connection) -> tuple:
    """Each class's parent and family: what decides which CIs are hosts and a class filter's subclasses."""
    return tuple(sorted((name, info.parent, info.family) for name, info in registry_cache.get(conn=conn).classes.items()))


def read_services(conn: Connection, registry_cache: RegistryCache) -> list[tuple[str, str]]:
    """(id, name) of every service, by id."""
    service_classes = family_classes(registry_cache, SERVICE_FAMILY, conn=conn)
    query = select(id_text(conn), CI.c.name).where(CI.c.ci_class.in_(service_classes)).order_by(CI.c.id)
    return [(canonical_id(ci_id), name) for ci_id, name in conn.execute(query)]


def inventory(engine: Engine, registry_cache: RegistryCache, live_graph, *, with_attributes: bool = False,
              rows: "HostRows | None" = None, walks: "ServiceWalks | None" = None, **filters: Any) -> Inventory:
    """The filtered hosts and, for every service, which of them it depends on; the hosts' rows through
    `rows` and the services' walks through `walks` when given (not for `with_attributes`: a host's
    attributes are kept nowhere).

    The hosts are read first, then the graph is brought up to date: it then holds every relationship
    committed before the hosts were read (a host created since may be missing from a service group,
    never a relationship older than the answer)."""
    with db.read_transaction(engine) as conn:
        if rows is not None and not with_attributes:
            hosts = rows.read(conn, registry_cache, **filters)
        else:
            hosts = read_hosts(conn, registry_cache, with_attributes=with_attributes, **filters)
        services = read_services(conn, registry_cache)
    host_ids = frozenset(host.id for host in hosts)
    with live_graph.reading() as graph:
        if walks is not None:
            under = walks.providers(live_graph, graph, (ci_id for ci_id, _ in services), host_ids)
        else:
            under = providers_of_each(graph, (ci_id for ci_id, _ in services), host_ids)
        as_of_seq = graph.applied_seq
    by_name: dict[str, set[str]] = {}
    for ci_id, name in services:
        # Two services may share a name (one per environment): one group holds the hosts of both.
        by_name.setdefault(name, set()).update(under[ci_id])
    return Inventory(hosts, {name: sorted(ids) for name, ids in by_name.items()}, as_of_seq)


class ServiceWalks:
    """Each service's providers, all of them (not only hosts), as the graph's walk found them, kept
    while the live graph's relationships stand still (`LiveGraph.edges_version`): the walk depends on
    nothing else (graph.providers follows edges, whatever the CIs' classes), and 2,000 walks cost
    0.3 s. A service not walked yet is walked when asked for. Per worker; its size is the walks'
    (~100 CIs a service in the benchmark's estate)."""

    def __init__(self) -> None:
        self._at: tuple[Any, int] | None = None
        self._providers: dict[str, frozenset] = {}
        self._lock = threading.Lock()

    def providers(self, live_graph, graph, service_ids, keep: frozenset) -> dict[str, set]:
        """{service id: its providers in `keep`}, as providers_of_each(graph, service_ids, keep); call it
        inside live_graph.reading() (`graph` is the graph it holds still)."""
        at = (live_graph, live_graph.edges_version)
        with self._lock:
            if self._at is None or self._at[0] is not at[0] or self._at[1] != at[1]:
                self._at, self._providers = at, {}
            walked = self._providers
            under = {}
            for ci_id in service_ids:
                found = walked.get(ci_id)
                if found is None:
                    found = walked[ci_id] = frozenset(providers(graph, ci_id))
                under[ci_id] = found & keep
            return under


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
