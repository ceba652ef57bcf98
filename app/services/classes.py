"""Changing the registry: CI classes and relationship types (admin only).

Every change is a change record in the same transaction (object types `class` and
`relationship_type`, ids from app.services.registry_ids).

Changing a class's identification rules re-indexes every CI of its family in the same transaction;
if the new rules would make two CIs claim one identifier, nothing changes and the 409 names them.
Changing its attribute schema checks the CIs of the class and its subclasses against the new
schemas: if any would no longer be valid (so could no longer be edited), nothing changes and the 409
says how many and names the first few. Identification rules and held identifiers may only name the
CI's name, its environment, or attributes a schema of the class's line declares.
"""

from typing import Any

import jsonschema_rs
from sqlalchemy import Connection, delete, insert, select, update

from app.core.dialect import locked
from app.models import CIClass, CIIdentifier, ConfigurationItem, RelationshipType
from app.models.ci_class import CIClassCreate, CIClassUpdate
from app.models.relationship import RelationshipTypeCreate
from app.models.types import as_utc, utcnow
from app.services.errors import Conflict, InvalidInput, NotFound, field_error
from app.services.history import UnitOfWork, diff_fields
from app.services.identifiers import identifier_values
from app.services.identity import held_values, identifying_facts
from app.services.registry import ClassInfo, Registry, RelationshipTypeInfo, compile_schema, load_registry
from app.services.registry_ids import registry_object_id
from app.services.storable import require_storable

CLASS = CIClass.__table__
RTYPE = RelationshipType.__table__
CI = ConfigurationItem.__table__
IDENT = CIIdentifier.__table__


def class_to_public(info: ClassInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "parent": info.parent,
        "label": info.label,
        "description": info.description,
        "attribute_schema": info.attribute_schema,
        "identification_rules": info.identification_rules,
        "effective_identification_rules": info.effective_rules,
        "held_identifiers": info.held_identifiers,
        "effective_held_identifiers": info.effective_held,
        "family": info.family,
        "created_at": as_utc(info.created_at),
        "updated_at": as_utc(info.updated_at),
    }


def type_to_public(info: RelationshipTypeInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "forward_label": info.forward_label,
        "reverse_label": info.reverse_label,
        "impact_direction": info.impact_direction,
        "membership": info.membership,
        "description": info.description,
    }


def get_class(registry: Registry, name: str) -> ClassInfo:
    info = registry.classes.get(name)
    if info is None:
        raise NotFound(f"No class named '{name}'.")
    return info


SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _remote_reference(node: Any, path: str = "attribute_schema") -> tuple[str, str] | None:
    """The first $ref/$dynamicRef to another document, or a $schema other than 2020-12."""
    stack = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str) and not value.startswith("#"):
                    return f"{where}.{key}", f"'{value}' is another document; only local references (#...) are allowed"
                if key == "$schema" and value != SCHEMA_DIALECT:
                    return f"{where}.{key}", f"only {SCHEMA_DIALECT} is supported"
                stack.append((value, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((value, f"{where}.{index}") for index, value in enumerate(item))
    return None


def _check_schema(schema: dict[str, Any]) -> None:
    remote = _remote_reference(schema)
    if remote:
        raise InvalidInput(f"{remote[0]}: {remote[1]}.", [field_error(*remote)])
    try:
        jsonschema_rs.meta.validate(schema)  # the engine that validates CIs checks schemas too
    except jsonschema_rs.ValidationError as exc:
        path = ".".join(["attribute_schema", *(str(part) for part in exc.instance_path)])
        raise InvalidInput(f"attribute_schema is not a valid JSON Schema: {path}: {exc.message}",
                           [field_error(path, exc.message)]) from exc
    try:
        compile_schema(schema)  # what validation will use: it must compile, and offline
    except Exception as exc:
        reason = str(exc).splitlines()[0]
        raise InvalidInput(f"attribute_schema cannot be used: {reason}", [field_error("attribute_schema", reason)]) from exc


def _check_rules(rules: list[list[str]]) -> None:
    for index, rule in enumerate(rules):
        if not rule or len(set(rule)) != len(rule) or any(not key for key in rule):
            raise InvalidInput(
                "Each identification rule is a non-empty list of distinct attribute names.",
                [field_error(f"identification_rules.{index}", "empty, repeated or blank attribute name")],
            )


CLASS_HISTORY_FIELDS = ["name", "parent", "label", "description", "attribute_schema", "identification_rules",
                        "held_identifiers"]
TYPE_HISTORY_FIELDS = ["name", "forward_label", "reverse_label", "impact_direction", "membership", "description"]
# A schema change that existing CIs violate names this many of them.
VIOLATIONS_SHOWN = 5


def _audited(info: ClassInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in CLASS_HISTORY_FIELDS}


def create_class(uow: UnitOfWork, data: CIClassCreate) -> ClassInfo:
    conn = uow.conn
    for name in ("label", "description", "attribute_schema", "identification_rules", "held_identifiers"):
        require_storable(getattr(data, name), name)
    registry = load_registry(conn)
    if data.name in registry.classes:
        raise Conflict(f"A class named '{data.name}' already exists.")
    if data.parent is not None and data.parent not in registry.classes:
        raise InvalidInput(f"Unknown parent class '{data.parent}'.", [field_error("parent", "unknown class")])
    _check_schema(data.attribute_schema)
    _check_rules(data.identification_rules)
    now = utcnow()
    conn.execute(insert(CLASS), {
        "name": data.name, "parent": data.parent, "label": data.label or data.name.replace("_", " ").capitalize(),
        "description": data.description, "attribute_schema": data.attribute_schema,
        "identification_rules": data.identification_rules, "held_identifiers": data.held_identifiers,
        "created_at": now, "updated_at": now,
    })
    registry = load_registry(conn)
    info = registry.classes[data.name]
    _check_named_attributes(registry, info)
    uow.record("class", registry_object_id("class", info.name), "create",
               diff_fields(None, _audited(info), CLASS_HISTORY_FIELDS))
    return info


def update_class(uow: UnitOfWork, name: str, data: CIClassUpdate) -> ClassInfo:
    conn = uow.conn
    registry = load_registry(conn)
    before = get_class(registry, name)
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        require_storable(value, field)
    for field in ("label", "description", "attribute_schema", "identification_rules", "held_identifiers"):
        if field in changes and changes[field] is None:
            raise InvalidInput(f"'{field}' cannot be null.", [field_error(field, "cannot be null")])
    if "attribute_schema" in changes:
        _check_schema(changes["attribute_schema"])
    if "identification_rules" in changes:
        _check_rules(changes["identification_rules"])
    if not changes:
        return registry.classes[name]
    conn.execute(update(CLASS).where(CLASS.c.name == name).values(**changes, updated_at=utcnow()))
    registry = load_registry(conn)
    after = registry.classes[name]
    if {"identification_rules", "held_identifiers", "attribute_schema"} & changes.keys():
        for member in after.descendants:
            _check_named_attributes(registry, registry.classes[member])
    if "attribute_schema" in changes:
        _refuse_invalidated_cis(conn, registry, after)
    if "identification_rules" in changes or "held_identifiers" in changes:
        reindex_family(conn, registry, after.identity_family)
    diff = diff_fields(_audited(before), _audited(after), CLASS_HISTORY_FIELDS)
    if diff:
        uow.record("class", registry_object_id("class", name), "update", diff)
    return after


def _declared_attributes(registry: Registry, info: ClassInfo) -> set[str]:
    """Attribute names a schema of the class's line declares (its ancestors' and its own)."""
    declared: set[str] = set()
    for ancestor in info.ancestors:
        properties = registry.classes[ancestor].attribute_schema.get("properties")
        if isinstance(properties, dict):
            declared.update(properties)
    return declared


def _check_named_attributes(registry: Registry, info: ClassInfo) -> None:
    """Identification rules and held identifiers name only what a CI of the class can have: a rule on
    an attribute no schema declares would silently identify nothing."""
    declared = _declared_attributes(registry, info) | {"name", "environment"}
    named = [(f"identification_rules.{n}", key) for n, rule in enumerate(info.effective_rules) for key in rule]
    named += [(f"held_identifiers.{n}", key) for n, key in enumerate(info.effective_held)]
    for where, key in named:
        if key not in declared:
            raise InvalidInput(
                f"Class '{info.name}': {where} names '{key}', which no attribute schema of its line declares "
                f"({', '.join(info.ancestors)}); add it to attribute_schema.properties first.",
                [field_error(where, f"'{key}' is not a declared attribute")])


def _refuse_invalidated_cis(conn: Connection, registry: Registry, info: ClassInfo) -> None:
    """409 if a CI of the class or a subclass breaks the new schemas: it could no longer be edited."""
    members = sorted(info.descendants)
    query = (select(CI.c.id, CI.c.ci_class, CI.c.name, CI.c.attributes).where(CI.c.ci_class.in_(members))
             .order_by(CI.c.id).execution_options(yield_per=2000))
    count, shown = 0, []
    for ci_id, ci_class, ci_name, attributes in conn.execute(query):
        errors = registry.classes[ci_class].validation_errors(attributes)
        if errors:
            count += 1
            if len(shown) < VIOLATIONS_SHOWN:
                shown.append({"id": str(ci_id), "name": ci_name, "class": ci_class,
                              "field": errors[0]["field"], "message": errors[0]["message"]})
    if count:
        first = shown[0]
        raise Conflict(
            f"{count} existing CI(s) would break the new attribute_schema of '{info.name}' and could no longer be "
            f"edited, e.g. '{first['name']}' ({first['id']}): {first['field']}: {first['message']}. Correct them "
            "first, or loosen the schema. Nothing was changed.", violations=count, examples=shown)


def reindex_family(conn: Connection, registry: Registry, family: str) -> int:
    """Rebuild the identifier index of one identity family (ci_identifier.family: a `server` and a
    `network_device` share one, app.services.registry) from the current facts of its classes' CIs.
    Two CIs with one strong value are refused; a value one CI names as strong and another holds (a
    router's interface MAC that nmap's sighting of the interface still names) goes to the first: the
    holder's next report takes it back from a mere sighting (ingest/phases._another_machines)."""
    members = {info.name: info for info in registry.classes.values() if info.identity_family == family}
    owners: dict[tuple[str, str], Any] = {}
    held: dict[tuple[str, str], Any] = {}
    query = select(CI.c.id, CI.c.ci_class, CI.c.name, CI.c.environment, CI.c.attributes).where(
        CI.c.ci_class.in_(sorted(members)))
    # The index has no foreign key to ci (migration 0004): a CI deleted while this runs would keep
    # the rows written here. Locked, its deletion waits for this commit and then removes them.
    query = locked(conn, query, order_by=CI.c.id, read=True)
    for ci_id, ci_class, name, environment, attributes in conn.execute(query):
        for key, value in identifier_values(members[ci_class].effective_rules,
                                            identifying_facts(name, environment, attributes)):
            other = owners.setdefault((key, value), ci_id)
            if other != ci_id:
                raise Conflict(
                    f"With these rules, {key} '{value}' would identify both CI {other} and CI {ci_id}; "
                    "merge or correct them first. Nothing was changed.",
                    duplicates=[str(other), str(ci_id)],
                )
        for pair in held_values(members[ci_class], attributes):
            held.setdefault(pair, ci_id)  # a held value that two CIs claim stays with one of them
    for pair, ci_id in held.items():
        owners.setdefault(pair, ci_id)
    rows = [{"family": family, "key": key, "value": value, "ci_id": ci_id} for (key, value), ci_id in owners.items()]
    conn.execute(delete(IDENT).where(IDENT.c.family == family))
    for start in range(0, len(rows), 5000):
        conn.execute(insert(IDENT), rows[start : start + 5000])
    return len(rows)


def create_relationship_type(uow: UnitOfWork, data: RelationshipTypeCreate) -> RelationshipTypeInfo:
    conn = uow.conn
    require_storable(data.model_dump(mode="json"), "body")
    if conn.execute(select(RTYPE.c.name).where(RTYPE.c.name == data.name)).first() is not None:
        raise Conflict(f"A relationship type named '{data.name}' already exists.")
    conn.execute(insert(RTYPE), {**data.model_dump(mode="json"), "created_at": utcnow()})
    info = load_registry(conn).relationship_types[data.name]
    uow.record("relationship_type", registry_object_id("relationship_type", info.name), "create",
               diff_fields(None, {name: getattr(info, name) for name in TYPE_HISTORY_FIELDS}, TYPE_HISTORY_FIELDS))
    return info
