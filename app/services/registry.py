"""The class and relationship-type registry, cached per worker process.

Classes form a tree. A class's *family* is its root ancestor. Identifiers are unique per *identity
family*: the family itself, except for the families of `IDENTITY_DOMAINS`, which are identified in
another family's namespace. So a `server` and a `virtual_machine` with one serial number are one CI,
and so are a `server` and a `network_device` with one MAC: nmap calls a box a server, SNMP knows it
is a switch, and it is one box (which class it keeps: ingest/phases.py, by source precedence). A
class's effective attribute schema is its own schema AND every ancestor's; its effective
identification rules are its own, or the nearest ancestor's when it has none.

The cache is rebuilt after `registry_cache_seconds`, at once when a name is unknown (another worker may
have just added it), and at once in the worker that changed the registry.
"""

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import orjson
from sqlalchemy import Connection, Engine, select

from app.core.dialect import locked
from app.models import CIClass, RelationshipType
from app.models.types import as_utc
from app.services.errors import InvalidInput, field_error
from graph.service_map import entry_point_errors

log = logging.getLogger("karta.registry")

# Family -> the family whose identifier namespace (ci_identifier.family) its CIs are identified in.
# Hosts are one identity domain (migration 0016 moved the rows and merged the duplicates it found).
IDENTITY_DOMAINS = {"network_device": "server"}


def identity_family_of(family: str) -> str:
    return IDENTITY_DOMAINS.get(family, family)


@dataclass(frozen=True)
class ClassInfo:
    name: str
    parent: str | None
    label: str
    description: str
    attribute_schema: dict[str, Any]
    identification_rules: list[list[str]]
    effective_rules: list[list[str]]
    held_identifiers: list[str]
    effective_held: list[str]  # own, or the nearest ancestor's
    family: str
    ancestors: tuple[str, ...]  # self first, root last
    descendants: frozenset[str]  # self included
    # jsonschema-rs: the same JSON Schema 2020-12 semantics as the reference `jsonschema`, ~300x faster,
    # which matters when a discovery batch validates 10,000 items.
    validators: tuple[Any, ...] = field(repr=False)
    created_at: Any = None
    updated_at: Any = None

    @property
    def single_keys(self) -> frozenset[str]:
        """The attributes that identify this class alone (its one-attribute rules: serial, MAC...)."""
        return frozenset(rule[0] for rule in self.effective_rules if len(rule) == 1)

    @property
    def identity_family(self) -> str:
        """The namespace of this class's identifier rows (ci_identifier.family)."""
        return identity_family_of(self.family)

    def validation_errors(self, attributes: dict[str, Any]) -> list[dict[str, str]]:
        errors = []
        for validator in self.validators:
            for error in validator.iter_errors(attributes):
                path = ".".join(str(part) for part in error.instance_path)
                errors.append(field_error(f"attributes.{path}" if path else "attributes", error.message))
        if self.family == "service" and "entry_points" in attributes:  # a service's map starts there
            for path, reason in entry_point_errors(attributes["entry_points"]):
                errors.append(field_error(f"attributes.entry_points.{path}" if path else "attributes.entry_points",
                                          reason))
        return errors


@dataclass(frozen=True)
class RelationshipTypeInfo:
    name: str
    forward_label: str
    reverse_label: str
    impact_direction: str
    membership: bool
    description: str


class Registry:
    def __init__(self, classes: dict[str, ClassInfo], types: dict[str, RelationshipTypeInfo]) -> None:
        self.classes = classes
        self.relationship_types = types

    @functools.cached_property
    def digest(self) -> bytes:
        """Changes whenever a class or relationship type does (what ingest fingerprints depend on)."""
        described = (
            # The identity family too: a report confirmed while network devices had a namespace of their
            # own was identified without the servers' identifiers and must be derived again.
            [(c.name, c.parent, c.identity_family, c.effective_rules, c.effective_held, c.attribute_schema, str(c.updated_at))
             for c in sorted(self.classes.values(), key=lambda c: c.name)],
            [(t.name, t.impact_direction, t.membership) for t in sorted(self.relationship_types.values(), key=lambda t: t.name)],
        )
        return hashlib.blake2b(orjson.dumps(described, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()

    def get_class(self, name: str, *, field_name: str = "class") -> ClassInfo:
        info = self.classes.get(name)
        if info is None:
            known = ", ".join(sorted(self.classes))
            raise InvalidInput(
                f"Unknown class '{name}'. Known classes: {known}.",
                [field_error(field_name, f"unknown class '{name}'")],
            )
        return info

    def get_type(self, name: str, *, field_name: str = "type") -> RelationshipTypeInfo:
        info = self.relationship_types.get(name)
        if info is None:
            known = ", ".join(sorted(self.relationship_types))
            raise InvalidInput(
                f"Unknown relationship type '{name}'. Known types: {known}.",
                [field_error(field_name, f"unknown relationship type '{name}'")],
            )
        return info


def _refuse_remote(uri: str) -> Any:
    # A schema that names another document would make every registry load fetch it: a hang when the
    # host is slow, an outage when it is gone, and a way to make the server call any URL.
    raise ValueError(f"attribute schemas cannot reference other documents ({uri})")


def compile_schema(schema: dict[str, Any]) -> Any:
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, retriever=_refuse_remote)


@dataclass(frozen=True)
class _SchemaError:
    instance_path: tuple = ()
    message: str = ""


class _UnusableSchema:
    """Stands in for a stored schema that no longer compiles: writes to that class are refused with
    the reason, and every other class keeps working."""

    def __init__(self, class_name: str, reason: str) -> None:
        self._error = _SchemaError(message=f"class '{class_name}' has an unusable attribute_schema ({reason}); "
                                           "an admin must PATCH /api/v1/classes/" + class_name)

    def iter_errors(self, _instance: Any):
        yield self._error


def _compile_or_report(name: str, schema: dict[str, Any]) -> Any:
    try:
        return compile_schema(schema)
    except Exception as exc:  # noqa: BLE001 - any compile failure is this class's problem alone
        reason = str(exc).splitlines()[0]
        log.error("attribute_schema of class %s does not compile: %s", name, reason)
        return _UnusableSchema(name, reason)


def load_registry(conn: Connection) -> Registry:
    rows = conn.execute(select(CIClass.__table__)).mappings().all()
    by_name = {row["name"]: row for row in rows}
    children: dict[str, list[str]] = {}
    for row in rows:
        if row["parent"]:
            children.setdefault(row["parent"], []).append(row["name"])

    def ancestors_of(name: str) -> tuple[str, ...]:
        chain = [name]
        while (parent := by_name[chain[-1]]["parent"]) is not None and len(chain) <= len(by_name):
            chain.append(parent)
        return tuple(chain)

    def descendants_of(name: str) -> frozenset[str]:
        found, stack = {name}, [name]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return frozenset(found)

    validators: dict[str, Any] = {
        name: _compile_or_report(name, row["attribute_schema"]) if row["attribute_schema"] else None
        for name, row in by_name.items()
    }
    classes = {}
    for name, row in by_name.items():
        chain = ancestors_of(name)
        rules = next((by_name[a]["identification_rules"] for a in chain if by_name[a]["identification_rules"]), [])
        held = next((by_name[a]["held_identifiers"] for a in chain if by_name[a]["held_identifiers"]), [])
        classes[name] = ClassInfo(
            name=name,
            parent=row["parent"],
            label=row["label"],
            description=row["description"],
            attribute_schema=row["attribute_schema"],
            identification_rules=row["identification_rules"],
            effective_rules=rules,
            held_identifiers=row["held_identifiers"],
            effective_held=held,
            family=chain[-1],
            ancestors=chain,
            descendants=descendants_of(name),
            validators=tuple(v for a in chain if (v := validators[a]) is not None),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
    types = {
        row["name"]: RelationshipTypeInfo(
            name=row["name"],
            forward_label=row["forward_label"],
            reverse_label=row["reverse_label"],
            impact_direction=row["impact_direction"],
            membership=row["membership"],
            description=row["description"],
        )
        for row in conn.execute(select(RelationshipType.__table__)).mappings()
    }
    return Registry(classes, types)


class RegistryCache:
    def __init__(self, engine: Engine, ttl_seconds: float) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        self._loaded_at = 0.0

    def get(self, *, conn: Connection | None = None) -> Registry:
        registry = self._registry
        if registry is not None and time.monotonic() - self._loaded_at < self._ttl:
            return registry
        return self.reload(conn=conn)

    def reload(self, *, conn: Connection | None = None) -> Registry:
        """Load the registry, through `conn` when it is the primary's (a write transaction sees its own
        locked rows), else through a connection of the cache's own: a read replica's connection (read
        routing, app.core.replicas) may lag, and a registry loaded from it would undo a class change for
        every request of this worker until the cache expires."""
        with self._lock:
            if conn is not None and conn.engine is self._engine:
                registry = load_registry(conn)
            else:
                with self._engine.connect() as own:
                    registry = load_registry(own)
            self._registry, self._loaded_at = registry, time.monotonic()
            return registry

    def invalidate(self) -> None:
        self._registry = None

    def knows_class(self, name: str, *, conn: Connection | None = None) -> Registry:
        """The registry, reloaded first if `name` is not in the cached copy."""
        registry = self.get(conn=conn)
        if name not in registry.classes:
            registry = self.reload(conn=conn)
        return registry

    def for_write(self, conn: Connection, class_names: Iterable[str | None]) -> Registry:
        """The registry as it stands for a transaction writing CIs of these classes: their rows (and
        their ancestors', whose schemas they must also satisfy) are read inside the transaction, FOR
        SHARE on PostgreSQL, and the cache is reloaded if any changed since it was loaded. A class
        change (which updates its row, so waits for these writers, and makes later ones wait for it)
        then never meets a CI written against the schema it replaced (classes.update_class)."""
        registry = self.get(conn=conn)
        names = {name for name in class_names if name is not None}
        if names - registry.classes.keys():
            registry = self.reload(conn=conn)  # another worker may have just added it
        lineage = sorted({ancestor for name in names if name in registry.classes
                          for ancestor in registry.classes[name].ancestors})
        if not lineage:
            return registry
        rows = conn.execute(locked(conn, select(CIClass.__table__.c.name, CIClass.__table__.c.updated_at)
                                   .where(CIClass.__table__.c.name.in_(lineage)),
                                   order_by=CIClass.__table__.c.name, read=True)).all()
        if any(as_utc(updated) != as_utc(registry.classes[name].updated_at) for name, updated in rows):
            registry = self.reload(conn=conn)
        return registry

    def knows_type(self, name: str, *, conn: Connection | None = None) -> Registry:
        registry = self.get(conn=conn)
        if name not in registry.relationship_types:
            registry = self.reload(conn=conn)
        return registry
