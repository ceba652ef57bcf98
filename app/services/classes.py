"""Changing the registry: CI classes and relationship types (admin only).

Changing a class's identification rules re-indexes every CI of its family in the same transaction;
if the new rules would make two CIs claim one identifier, nothing changes and the 409 names them.
"""

from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from sqlalchemy import Connection, delete, insert, select, update

from app.models import CIClass, CIIdentifier, ConfigurationItem, RelationshipType
from app.models.ci_class import CIClassCreate, CIClassUpdate
from app.models.relationship import RelationshipTypeCreate
from app.models.types import as_utc, utcnow
from app.services.errors import Conflict, InvalidInput, NotFound, field_error
from app.services.identifiers import identifier_values
from app.services.identity import identifying_facts
from app.services.registry import ClassInfo, Registry, RelationshipTypeInfo, compile_schema, load_registry
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
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(
            f"attribute_schema is not a valid JSON Schema: {exc.message}",
            [field_error("attribute_schema", exc.message)],
        ) from exc
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


def create_class(conn: Connection, data: CIClassCreate) -> ClassInfo:
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
    return load_registry(conn).classes[data.name]


def update_class(conn: Connection, name: str, data: CIClassUpdate) -> ClassInfo:
    registry = load_registry(conn)
    get_class(registry, name)
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
    if "identification_rules" in changes or "held_identifiers" in changes:
        reindex_family(conn, registry, registry.classes[name].family)
    return registry.classes[name]


def reindex_family(conn: Connection, registry: Registry, family: str) -> int:
    """Rebuild the identifier index of one class family from the CIs' current facts."""
    members = [info for info in registry.classes.values() if info.family == family]
    rules_by_class = {info.name: info.effective_rules for info in members}
    held_by_class = {info.name: info.effective_held for info in members}
    owners: dict[tuple[str, str], Any] = {}
    query = select(CI.c.id, CI.c.ci_class, CI.c.name, CI.c.environment, CI.c.attributes).where(
        CI.c.ci_class.in_(sorted(rules_by_class)))
    if conn.dialect.name == "postgresql":
        # The index has no foreign key to ci (migration 0004): a CI deleted while this runs would keep
        # the rows written here. Locked, its deletion waits for this commit and then removes them.
        query = query.order_by(CI.c.id).with_for_update(read=True)
    for ci_id, ci_class, name, environment, attributes in conn.execute(query):
        for key, value in identifier_values(rules_by_class[ci_class], identifying_facts(name, environment, attributes)):
            other = owners.setdefault((key, value), ci_id)
            if other != ci_id:
                raise Conflict(
                    f"With these rules, {key} '{value}' would identify both CI {other} and CI {ci_id}; "
                    "merge or correct them first. Nothing was changed.",
                    duplicates=[str(other), str(ci_id)],
                )
        for key, value in identifier_values([[key] for key in held_by_class[ci_class]], attributes):
            owners.setdefault((key, value), ci_id)  # a held value that two CIs claim stays with one of them
    rows = [{"family": family, "key": key, "value": value, "ci_id": ci_id} for (key, value), ci_id in owners.items()]
    conn.execute(delete(IDENT).where(IDENT.c.family == family))
    for start in range(0, len(rows), 5000):
        conn.execute(insert(IDENT), rows[start : start + 5000])
    return len(rows)


def create_relationship_type(conn: Connection, data: RelationshipTypeCreate) -> RelationshipTypeInfo:
    require_storable(data.model_dump(mode="json"), "body")
    if conn.execute(select(RTYPE.c.name).where(RTYPE.c.name == data.name)).first() is not None:
        raise Conflict(f"A relationship type named '{data.name}' already exists.")
    conn.execute(insert(RTYPE), {**data.model_dump(mode="json"), "created_at": utcnow()})
    return load_registry(conn).relationship_types[data.name]
