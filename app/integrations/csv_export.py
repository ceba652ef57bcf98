"""CSV out: `GET /api/v1/cis?format=csv`, the CIs matching the list's filters as the spreadsheet that
`POST /api/v1/import` reads back unchanged (columns and cells: csv_columns.py).

    id,class,name,status,environment,criticality,owner,tags,identifier.fqdn,attribute.cpu_count
    0193...,server,web-1,active,prod,2,web-team,"web,pci",web-1.example.com,8

And `GET /api/v1/relationships?format=csv`, the relationships as the import's relationship form
(`POST /api/v1/import?relationships=true`), in id order:

    source,type,target,attribute.port
    fqdn=web-1.example.com,depends_on,instance_key=db-1/postgresql/5432,5432
    0193...,runs_on,serial_number=SN-1,

An end is written as an identifier that names that CI alone (readable, and it reads back in another
Karta once its CIs are imported), or as its id when it has none.

UTF-8 with a byte order mark (so that Excel reads it as UTF-8), RFC 4180 quoting, CRLF line ends.
Every text from a CI is hostile (names and attributes come from discovery): each cell goes through
`neutralise` (app/core/csv_cells.py), which the import undoes exactly. Written as a stream of chunks
of rows: an export of 100,000 CIs never builds one string.

It reads through app/services/ci_export.py (one snapshot, pages by id), never with SQL of its own.
"""

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Engine

from app.core.csv_cells import neutralise
from app.integrations import csv_columns as columns
from app.services import ci_export, cis, relationships
from app.services.registry import Registry, RegistryCache

BOM = "\ufeff"


def header(attribute_keys: list[str], identifier_keys: set[str]) -> list[str]:
    """The field columns, then the identifiers, then the other attributes, each sorted."""
    return [*columns.FIELD_COLUMNS,
            *(columns.IDENTIFIER_PREFIX + key for key in attribute_keys if key in identifier_keys),
            *(columns.ATTRIBUTE_PREFIX + key for key in attribute_keys if key not in identifier_keys)]


def _cells(ci: Any, keys: list[str]) -> list[str]:
    attributes = ci["attributes"]
    cells = [str(ci["id"]), ci["ci_class"], ci["name"], ci["status"], columns.encode_optional(ci["environment"]),
             columns.encode_optional(ci["criticality"]), columns.encode_optional(ci["owner"]),
             columns.encode_tags(ci["tags"] or [])]
    cells += ["" if key not in attributes else columns.encode_value(attributes[key]) for key in keys]
    return cells


def _chunks(head: list[str], pages: Iterable[Iterable[list[str]]]) -> Iterator[str]:
    """A file as chunks of text: the BOM and the header row, then one chunk per page of rows (each row
    its cells, neutralised here)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(head)
    yield BOM + out.getvalue()
    for rows in pages:
        out.seek(0)
        out.truncate()
        writer.writerows([neutralise(cell) for cell in cells] for cells in rows)
        yield out.getvalue()


def lines(head: list[str], pages: Iterable[list[Any]]) -> Iterator[str]:
    """The file: its header, then one chunk of text per page of CIs."""
    keys = [name.split(".", 1)[1] for name in head[len(columns.FIELD_COLUMNS):]]
    return _chunks(head, ((_cells(ci, keys) for ci in page) for page in pages))


def identifier_keys(registry: Registry) -> set[str]:
    """The attributes some class's identification rules read on their own (fqdn, serial_number, ...)."""
    return {rule[0] for cls in registry.classes.values() for rule in cls.effective_rules if len(rule) == 1} | {
        key for cls in registry.classes.values() for key in cls.effective_held}


def export(engine: Engine, registry_cache: RegistryCache, filters: dict[str, Any]) -> Iterator[str]:
    """The file of the CIs `filters` (cis.list_filters' arguments) match, chunk by chunk, read in one snapshot."""
    with ci_export.snapshot(engine) as conn:
        conditions = cis.list_filters(conn, registry_cache, **filters)
        head = header(ci_export.attribute_keys(conn, conditions), identifier_keys(registry_cache.get(conn=conn)))
        yield from lines(head, ci_export.rows(conn, conditions))


def _relationship_cells(rel: Any, named: dict, keys: list[str]) -> list[str]:
    attributes = rel["attributes"] or {}
    cells = [named.get(rel["source_id"]) or str(rel["source_id"]), rel["type"],
             named.get(rel["target_id"]) or str(rel["target_id"])]
    cells += ["" if key not in attributes else columns.encode_value(attributes[key]) for key in keys]
    return cells


def relationship_lines(attribute_keys: list[str], pages: Iterable[tuple[list[Any], dict]]) -> Iterator[str]:
    """The relationship file: its header, then one chunk of text per page of (relationships, end names)."""
    head = [*columns.RELATIONSHIP_COLUMNS, *(columns.ATTRIBUTE_PREFIX + key for key in attribute_keys)]
    return _chunks(head, ((_relationship_cells(rel, named, attribute_keys) for rel in page)
                          for page, named in pages))


def export_relationships(engine: Engine, registry_cache: RegistryCache, filters: dict[str, Any]) -> Iterator[str]:
    """The file of the relationships `filters` (type, source, target) match, read in one snapshot."""
    with ci_export.snapshot(engine) as conn:
        families = {info.family for info in registry_cache.get(conn=conn).classes.values()}
        conditions = relationships.relationship_conditions(**filters)
        keys = ci_export.attribute_keys(conn, conditions, ci_export.REL)
        yield from relationship_lines(keys, ci_export.relationship_rows(conn, conditions, families))
