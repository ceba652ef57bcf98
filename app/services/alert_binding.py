"""Binding alerts to CIs: an ordered list of rules, each reading one label of an alert.

The default rules (KARTA_ALERT_BINDINGS replaces them):
  1. `cmdb_ci` holds a CI id (Prometheus targets discovered from Karta carry it): exact.
  2. `instance` is a host: the port is stripped (`10.0.0.5:9100`, `[2001:db8::5]:9100`, `web-1:9100`),
     then the value is looked up, normalized as identification normalizes it (lower case, canonical
     address), among the identifiers of host CIs (classes of the server and network_device
     families): ip_address, fqdn; and as a hostname: a host CI's name, or an fqdn `<hostname>.<domain>`;
     where none of those names it, the reverse-DNS name nmap reported for one of its addresses (the
     `dns_name` of the ip_address CI whose address the host holds), exactly or as `<hostname>.<domain>`.
  3. `service`, then 4. `job`: the name of a CI of class service (any case).
The first rule whose label names exactly one CI binds the alert; a value that names several CIs
binds nothing (Karta does not guess), and the next rule is tried. An alert no rule binds is kept,
unbound. Each bound alert records its rule as "<label>:<match>".

All values of a webhook are looked up together: one query per kind of rule (per chunk of values),
never one per alert; a short hostname's fqdns are a prefix range of an index whatever the database's
collation (`_fqdns_of_hostnames`).
This module only reads; it never writes, and never fails on a label's content.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, String, Uuid, func, select, text

from app.models import CIIdentifier, ConfigurationItem
from app.models.ci import DNS_NAME_PG, DNS_NAME_PG_WHERE, DNS_NAME_SQLITE, DNS_NAME_SQLITE_WHERE
from app.services.bulk import id_in, is_postgres
from app.services.identifiers import (
    MAX_IDENTIFIER_LENGTH,
    normalize_address,
    normalize_fqdn,
)
from app.services.registry import Registry

CI = ConfigurationItem.__table__
IDENT = CIIdentifier.__table__

DEFAULT_RULES = [
    {"label": "cmdb_ci", "match": "ci_id"},
    {"label": "instance", "match": "host"},
    {"label": "service", "match": "service"},
    {"label": "job", "match": "service"},
]
HOST_FAMILIES = ("server", "network_device")
SERVICE_FAMILY = "service"
ADDRESS_FAMILY = "ip_address"
CHUNK = 500
# Short hostnames looked up per statement (each a range with its own LIMIT: SQLite allows 500 parts in a
# compound SELECT and 32,766 bound parameters), and fqdns read per hostname at most.
PREFIX_CHUNK = 100
PREFIX_ROWS = 10


@dataclass(frozen=True)
class Binding:
    ci_id: uuid.UUID
    rule: str  # "<label>:<match>"


def strip_port(instance: str) -> str:
    """The host part of an `instance` label: `[v6]:port` -> v6, `host:port` -> host; a bare IPv6 address
    (several colons, no brackets) stays whole."""
    value = instance.strip()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def host_keys(value: str) -> tuple[str | None, str | None, str | None]:
    """(address, fqdn, hostname) forms of a host label value, each None when it cannot be one."""
    host = strip_port(value)
    if not host or len(host) > MAX_IDENTIFIER_LENGTH:
        return None, None, None
    address = normalize_address(host)
    if address is not None:
        return address, None, None
    fqdn = normalize_fqdn(host)
    if fqdn is None:
        return None, None, None
    return None, fqdn if "." in fqdn else None, fqdn if "." not in fqdn else fqdn.split(".", 1)[0]


def _chunks(values: set[str], size: int = CHUNK) -> Iterable[list[str]]:
    """Sorted values in lists of at most `size`: a webhook of thousands of alerts stays within every
    database's limit on bound parameters."""
    ordered = sorted(values)
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def _fqdns_of_hostnames(conn: Connection, hostnames: list[str]):
    """The fqdn identifiers of host CIs that start with `<hostname>.`, at most PREFIX_ROWS per hostname,
    for all `hostnames` in one statement (a UNION ALL of one index range each).

    A prefix is a range of the index only in byte order: `web-1.` <= value < `web-1/` holds exactly the
    values that start with `web-1.` when text compares by bytes, as SQLite's BINARY collation and
    PostgreSQL's "C" do. Under a locale collation (en_US.UTF-8, ICU) punctuation weighs little or
    nothing, and the range misses `web.example.com` for `web`. So on PostgreSQL the comparison uses the
    operators of text_pattern_ops (~>=~, ~<~: bytes, whatever the database's collation), which
    ix_ci_identifier_prefix (migration 0014) is built with; SQLite's primary key already orders by bytes.
    Each hostname reads at most PREFIX_ROWS rows: a hostname of many CIs (`www`) binds nothing anyway,
    and reading all of its fqdns would cost a scan of them.
    Written as text, not built of SQLAlchemy constructs: building and compiling a hundred subqueries cost
    far more than running them (1,000 hostnames among 500,000 fqdns, one run side by side on a loaded
    machine: 1.8-2.6 s built against 0.18-0.67 s as text on PostgreSQL, 1.4-3.0 s against 0.10-0.28 s
    on SQLite).
    """
    at_least, below = ("~>=~", "~<~") if is_postgres(conn) else (">=", "<")
    families = ", ".join(f":family{n}" for n in range(len(HOST_FAMILIES)))
    parts, params = [], {f"family{n}": family for n, family in enumerate(HOST_FAMILIES)}
    for n, hostname in enumerate(hostnames):
        # A LIMIT inside UNION ALL needs a subquery of its own (SQLite).
        parts.append(f"SELECT * FROM (SELECT value, ci_id FROM ci_identifier WHERE family IN ({families}) "
                     f"AND key = 'fqdn' AND value {at_least} :low{n} AND value {below} :high{n} LIMIT {PREFIX_ROWS}) AS p{n}")
        params[f"low{n}"], params[f"high{n}"] = hostname + ".", hostname + "/"  # "/" follows "." in byte order
    return text(" UNION ALL ".join(parts)).bindparams(**params).columns(value=String, ci_id=Uuid)


def _dns_name(conn: Connection) -> tuple[str, str, str]:
    """The indexed expression of a CI's `dns_name` and the index's condition (app.models.ci, migration
    0017), and the CI's `address` attribute, as SQL text of this database."""
    if is_postgres(conn):
        return DNS_NAME_PG, DNS_NAME_PG_WHERE, "attributes ->> 'address'"
    return DNS_NAME_SQLITE, DNS_NAME_SQLITE_WHERE, "json_extract(attributes, '$.address')"


def _class_in(conn: Connection, classes: list[str], params: dict) -> str:
    """`ci_class IN (...)`; on SQLite as `+ci_class`, which keeps its planner on ix_ci_dns_name (it took
    ix_ci_class_id, every address CI, for the class's equality)."""
    params.update({f"c{n}": name for n, name in enumerate(classes)})
    column = "ci_class" if is_postgres(conn) else "+ci_class"
    return f"{column} IN ({', '.join(f':c{n}' for n in range(len(classes)))})"


def _by_dns_name(conn: Connection, address_classes: list[str], names: list[str]):
    """(dns_name, address) of the address CIs whose reverse-DNS name is one of `names` (ix_ci_dns_name)."""
    expression, condition, address = _dns_name(conn)
    params = {f"n{n}": name for n, name in enumerate(names)}
    classes = _class_in(conn, address_classes, params)
    marks = ", ".join(f":n{n}" for n in range(len(names)))
    return text(f"SELECT {expression} AS value, {address} AS address FROM ci WHERE {condition} AND "
                f"{expression} IN ({marks}) AND {classes}").bindparams(**params).columns(value=String, address=String)


def _dns_names_of_hostnames(conn: Connection, address_classes: list[str], hostnames: list[str]):
    """As _fqdns_of_hostnames, over the address CIs' reverse-DNS names: (dns_name, address) of those
    that start with `<hostname>.`, at most PREFIX_ROWS per hostname, one range of ix_ci_dns_name each."""
    at_least, below = ("~>=~", "~<~") if is_postgres(conn) else (">=", "<")
    expression, condition, address = _dns_name(conn)
    params: dict = {}
    classes = _class_in(conn, address_classes, params)
    parts = []
    for n, hostname in enumerate(hostnames):
        parts.append(f"SELECT * FROM (SELECT {expression} AS value, {address} AS address FROM ci WHERE {condition} "
                     f"AND {expression} {at_least} :low{n} AND {expression} {below} :high{n} AND {classes} "
                     f"LIMIT {PREFIX_ROWS}) AS p{n}")
        params[f"low{n}"], params[f"high{n}"] = hostname + ".", hostname + "/"
    return text(" UNION ALL ".join(parts)).bindparams(**params).columns(value=String, address=String)


def _hosts_by_dns_name(conn: Connection, registry: Registry, fqdns: set[str], short: set[str]
                       ) -> dict[tuple[str, str], set[uuid.UUID]]:
    """("dns_name", fqdn or short hostname) -> the host CIs holding an address DNS calls by it.

    A PTR name is the address's, not a host's (discovery.batch: nmap reports it on the ip_address
    item): a host with two addresses has two, and a NAT address's may name another box. So the
    address CIs are found by name, then the hosts holding those addresses by the identifier index."""
    classes = address_classes(registry)
    if not classes or not (fqdns or short):
        return {}
    addresses: dict[tuple[str, str], set[str]] = defaultdict(set)
    for chunk in _chunks(fqdns | short):  # a short one may be a whole PTR name (`printer`)
        for value, address in conn.execute(_by_dns_name(conn, classes, chunk)):
            addresses[("dns_name", value)].add(address)
    for chunk in _chunks(short, PREFIX_CHUNK):
        for value, address in conn.execute(_dns_names_of_hostnames(conn, classes, chunk)):
            addresses[("dns_name", value.split(".", 1)[0])].add(address)
    holders = holders_of_addresses(conn, {raw for found in addresses.values() for raw in found})
    return {key: {ci for raw in found for ci in holders.get(raw, ())} for key, found in addresses.items()}


def address_classes(registry: Registry) -> list[str]:
    """The classes of the ip_address family: the CIs that carry an address's `dns_name`."""
    return [name for name, info in registry.classes.items() if info.family == ADDRESS_FAMILY]


def holders_of_addresses(conn: Connection, addresses: Iterable[object]) -> dict[str, set[uuid.UUID]]:
    """Each address as given (a value read from a CI: anything) -> the host CIs holding it (their
    ip_address identifier, canonical form); a value that is no address holds nothing."""
    canonical = {raw: normalize_address(raw) for raw in addresses if isinstance(raw, str)}
    holders: dict[str, set[uuid.UUID]] = defaultdict(set)
    for chunk in _chunks({a for a in canonical.values() if a}):
        for value, ci_id in conn.execute(select(IDENT.c.value, IDENT.c.ci_id).where(
                IDENT.c.family.in_(HOST_FAMILIES), IDENT.c.key == "ip_address", IDENT.c.value.in_(chunk))):
            holders[value].add(ci_id)
    return {raw: holders[address] for raw, address in canonical.items() if address in holders}


def _ci_ids(conn: Connection, values: set[str]) -> dict[str, uuid.UUID]:
    parsed = {}
    for value in values:
        try:
            parsed[value] = uuid.UUID(value.strip())
        except (ValueError, AttributeError):
            continue
    if not parsed:
        return {}
    existing = set(conn.execute(select(CI.c.id).where(id_in(conn, CI.c.id, list(set(parsed.values()))))).scalars())
    return {value: ci_id for value, ci_id in parsed.items() if ci_id in existing}


def find_hosts(conn: Connection, registry: Registry, values: set[str]) -> dict[str, uuid.UUID]:
    """Each value (an address, fqdn or hostname, a port stripped) -> the one host CI it names, as the
    `host` rule binds an alert; a value naming none or several is left out. Service maps resolve entry
    points with it (app.services.service_map)."""
    forms = {value: host_keys(value) for value in values}
    addresses = {f[0] for f in forms.values() if f[0]}
    fqdns = {f[1] for f in forms.values() if f[1]}
    names = {f[2] for f in forms.values() if f[2]} | fqdns  # a host may be named by its fqdn
    found: dict[tuple[str, str], set[uuid.UUID]] = defaultdict(set)
    for key, wanted in (("ip_address", addresses), ("fqdn", fqdns)):
        for chunk in _chunks(wanted):
            for value, ci_id in conn.execute(select(IDENT.c.value, IDENT.c.ci_id).where(
                    IDENT.c.family.in_(HOST_FAMILIES), IDENT.c.key == key, IDENT.c.value.in_(chunk))):
                found[(key, value)].add(ci_id)
    host_classes = [name for name, info in registry.classes.items() if info.family in HOST_FAMILIES]
    if names and host_classes:
        for chunk in _chunks(names):
            for name, ci_id in conn.execute(select(func.lower(CI.c.name), CI.c.id).where(
                    func.lower(CI.c.name).in_(chunk), CI.c.ci_class.in_(host_classes))):
                found[("name", name)].add(ci_id)
        short = {f[2] for f in forms.values() if f[2] and not f[1]}
        for chunk in _chunks(short, PREFIX_CHUNK):
            for value, ci_id in conn.execute(_fqdns_of_hostnames(conn, chunk)):
                found[("name", value.split(".", 1)[0])].add(ci_id)
        # What DNS calls a host's address (nmap's PTR name): read last, where the host's own names
        # found nothing, for a NAT address's PTR may name another box.
        found.update(_hosts_by_dns_name(conn, registry, fqdns, short))
    bound = {}
    for value, (address, fqdn, hostname) in forms.items():
        if address:
            ids = found.get(("ip_address", address), set())
        elif fqdn:
            ids = (found.get(("fqdn", fqdn), set()) or found.get(("name", fqdn), set())
                   or found.get(("dns_name", fqdn), set()))
        elif hostname:
            ids = found.get(("name", hostname), set()) or found.get(("dns_name", hostname), set())
        else:
            ids = set()
        if len(ids) == 1:
            bound[value] = next(iter(ids))
    return bound


def _services(conn: Connection, registry: Registry, values: set[str]) -> dict[str, uuid.UUID]:
    classes = [name for name, info in registry.classes.items() if info.family == SERVICE_FAMILY]
    wanted = {value: value.strip().lower() for value in values if value.strip()}
    if not wanted or not classes:
        return {}
    found: dict[str, set[uuid.UUID]] = defaultdict(set)
    for chunk in _chunks(set(wanted.values())):
        for name, ci_id in conn.execute(select(func.lower(CI.c.name), CI.c.id).where(
                func.lower(CI.c.name).in_(chunk), CI.c.ci_class.in_(classes))):
            found[name].add(ci_id)
    return {value: ids_one for value, key in wanted.items()
            if len(found.get(key, ())) == 1 for ids_one in found[key]}


_MATCHERS = {"ci_id": lambda conn, registry, values: _ci_ids(conn, values), "host": find_hosts, "service": _services}


def bind(conn: Connection, registry: Registry, rules: list[dict[str, str]] | None,
         labels_of: Iterable[Mapping[str, object]]) -> list[Binding | None]:
    """Per alert (its labels), the binding of the first rule that binds it, or None."""
    rules = rules or DEFAULT_RULES
    alerts = list(labels_of)
    wanted: dict[str, set[str]] = defaultdict(set)
    for labels in alerts:
        for rule in rules:
            value = labels.get(rule["label"])
            if isinstance(value, str) and value:
                wanted[rule["match"]].add(value)
    resolved = {match: _MATCHERS[match](conn, registry, values) for match, values in wanted.items()}
    bindings: list[Binding | None] = []
    for labels in alerts:
        binding = None
        for rule in rules:
            value = labels.get(rule["label"])
            ci_id = resolved.get(rule["match"], {}).get(value) if isinstance(value, str) else None
            if ci_id is not None:
                binding = Binding(ci_id, f"{rule['label']}:{rule['match']}")
                break
        bindings.append(binding)
    return bindings
