"""A bundle in: CIs of several classes and their relationships in one JSON or YAML document, read into
import rows (app/services/imports.py applies them through ingest, all or nothing).

The format (JSON, RFC 8259; or YAML 1.1 as PyYAML's safe loader reads it, https://yaml.org/spec/1.1/,
with dates left as text), `Content-Type: application/json` or `application/yaml`:

    cis:
      - class: server
        name: web-1
        environment: prod
        criticality: 2
        owner: web-team
        tags: [web, pci]
        status: active
        identifiers: {fqdn: web-1.example.com}
        attributes: {cpu_count: 8}
      - class: service
        name: shop
        environment: prod
    relationships:
      - {source: name=shop, type: depends_on, target: fqdn=web-1.example.com}

Each CI takes the fields of a CSV row (csv_columns.py) with their JSON types; `id` is a check as in CSV.
Relationship ends are as in the relationship CSV (a CI id, `key=value` of an identifier, `name=...`),
found among the bundle's CIs first. Rows are numbered by their position in `cis` and in
`relationships`, from 0. An unknown key of a CI or relationship is that row's error; an unknown
top-level key refuses the bundle, and so do YAML aliases (a few lines of them expand without bound).

It must never touch the database: it only reads a document into rows.
"""

import uuid
from typing import Any

import orjson
import yaml

from app.services.errors import InvalidInput, field_error
from app.services.imports import ImportRow, RelationshipRow, error

_CI_KEYS = {"id", "class", "name", "status", "environment", "criticality", "owner", "tags", "identifiers", "attributes"}
_REL_KEYS = {"source", "type", "target", "attributes"}
_FIELDS = ("status", "environment", "criticality", "owner", "tags")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The safe loader (no Python objects), leaving dates as the text they were (a spreadsheet's
    2024-01-31 is an attribute's text, not a datetime that JSON cannot hold)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _load(body: bytes, kind: str) -> Any:
    try:
        if kind == "json":
            return orjson.loads(body)
        # Aliases refused: a few lines of them (the "billion laughs") expand to more than any body bound.
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(body, Loader=_Loader)):
            raise InvalidInput("The bundle uses YAML aliases (*name): write each value out.",
                               [field_error("body", "YAML alias")])
        return yaml.load(body, Loader=_Loader)  # a safe loader
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise InvalidInput(f"The bundle is not valid {kind.upper()}: {reason}.", [field_error("body", "malformed")]) from None


def read(body: bytes, kind: str) -> tuple[list[ImportRow], list[RelationshipRow]]:
    document = _load(body, kind)
    if not isinstance(document, dict):
        raise InvalidInput("A bundle is an object with `cis` and/or `relationships`.", [field_error("body", "not an object")])
    unknown = sorted(str(key) for key in document if key not in ("cis", "relationships"))
    if unknown:
        raise InvalidInput(f"Unknown keys in the bundle: {', '.join(unknown)[:200]}; it takes cis and relationships.",
                           [field_error(key, "unknown key") for key in unknown[:100]])
    cis, relationships = document.get("cis", []), document.get("relationships", [])
    for name, value in (("cis", cis), ("relationships", relationships)):
        if not isinstance(value, list):
            raise InvalidInput(f"`{name}` must be a list.", [field_error(name, "not a list")])
    return [_ci(position, item) for position, item in enumerate(cis)], [
        _relationship(position, item) for position, item in enumerate(relationships)]


def _ci(position: int, item: Any) -> ImportRow:
    row = ImportRow(where=position)
    if not isinstance(item, dict):
        row.errors.append(error("row", "a CI is an object"))
        return row
    row.errors += [error(str(key), "unknown key") for key in item if key not in _CI_KEYS]
    row.ci_class = item.get("class") if isinstance(item.get("class"), str) else None
    if "class" in item and row.ci_class is None:
        row.errors.append(error("class", "a class name (text) is expected"))
    name = item.get("name")
    row.name = name if isinstance(name, str) else None
    if name is not None and row.name is None:
        row.errors.append(error("name", "text is expected"))
    if item.get("id") is not None:
        try:
            row.ci_id = uuid.UUID(str(item["id"]))
        except ValueError:
            row.errors.append(error("id", "not a CI id"))
    for key in _FIELDS:
        if key in item:
            value = item[key]
            if key in ("environment", "owner", "status") and value is not None and not isinstance(value, str):
                row.errors.append(error(key, "text is expected"))
            elif key == "status" and value is None:
                continue
            else:
                row.fields[key] = [] if key == "tags" and value is None else value
    for key, target in (("identifiers", row.identifiers), ("attributes", row.attributes)):
        value = item.get(key) or {}
        if not isinstance(value, dict):
            row.errors.append(error(key, "an object is expected"))
            continue
        for attribute, attribute_value in value.items():
            if not _json_value(attribute_value):
                row.errors.append(error(f"{key}.{attribute}", "not a JSON value (binary, or an integer beyond 64 bits)"))
                continue
            target[str(attribute)] = attribute_value
            row.columns[str(attribute)] = f"{key}.{attribute}"
    return row


def _json_value(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: bytes from YAML's !!binary, an integer beyond 64 bits
        return False
    return True


def _relationship(position: int, item: Any) -> RelationshipRow:
    rel = RelationshipRow(where=position)
    if not isinstance(item, dict):
        rel.errors.append(error("row", "a relationship is an object"))
        return rel
    rel.errors += [error(str(key), "unknown key") for key in item if key not in _REL_KEYS]
    for key in ("source", "type", "target"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            rel.errors.append(error(key, "text is expected"))
        else:
            setattr(rel, key, value)
    attributes = item.get("attributes") or {}
    if isinstance(attributes, dict) and _json_value(attributes):
        rel.attributes = attributes
    else:
        rel.errors.append(error("attributes", "an object of JSON values is expected"))
    return rel
