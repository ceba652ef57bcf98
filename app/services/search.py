"""Finding CIs by what a person types: a name, an identifier, an attribute value (GET /api/v1/search).

Best matches first, in tiers; each tier adds only CIs no earlier tier found, and the search stops as
soon as it holds `limit` + 1 (the last one only says the answer is truncated):
  1. exact identifier: the query, normalized the way identification normalizes each kind (a MAC in
     any case or notation, an IP address, an fqdn without its trailing dot, a serial or machine-id in
     any case), is a value in the identifier index (ci_identifier) for a kind some class identifies
     or holds by; `matched` is identifier.<kind> with the indexed value. Ordered by kind, then value.
  2. exact name, any case; ordered by id.
  3. name prefix, any case; in name order (bytes of the lower-cased name), then id.
  4. name substring, any case.
  5. attribute value: some string or number in `attributes` (in lists and nested objects too; keys
     do not count) contains the query, any case; `matched` is attributes.<top-level key> with that value.
Tiers 4 and 5 take the first matches their index yields, shown in name order: ordering every CI whose
name contains "prod" would mean reading them all. They need 3 characters or more (trigram indexes
cannot narrow a shorter query), so a one- or two-letter query finds identifiers, names and prefixes.
They are skipped too once the query is an exact identifier: someone who pastes an address, a MAC or an
fqdn wants that CI, not every address it is a part of (10.0.0.5 in 10.0.0.50). And they are bounded in
time (SEARCH_BUDGET_SECONDS): a part found in hundreds of thousands of CIs can cost more to read from
the index than a search may take; the answer then holds what the earlier tiers found, truncated.

Indexes (migration 0009): the identifier index's primary key; on PostgreSQL a text_pattern_ops btree
on (lower(name), id) and pg_trgm GIN indexes on lower(name) and on the attribute values' text (with
punctuation turned into letters, app/models/ci.py), always read through the index; on
SQLite a btree on (lower(name), id) and FTS5 trigram tables of names and of values kept by triggers.
"""

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    String,
    Uuid,
    bindparam,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from app.models import CIIdentifier, ConfigurationItem
from app.models.ci import (
    NAME_TRIGRAMS_SQL,
    TRIGRAM_LETTERS,
    TRIGRAM_PUNCTUATION,
    VALUE_TRIGRAMS_SQL,
)
from app.services.bulk import is_postgres, json_rows
from app.services.errors import InvalidInput, field_error
from app.services.identifiers import normalize
from app.services.registry import Registry, RegistryCache

CI = ConfigurationItem.__table__
IDENT = CIIdentifier.__table__
# SQLite's FTS5 tables and the shadow tables FTS5 keeps for them (migration 0009): not models.
SQLITE_FTS_TABLES = frozenset(f"ci_fts_{kind}{shadow}" for kind in ("name", "values")
                              for shadow in ("", "_data", "_idx", "_config"))
MIN_SUBSTRING = 3  # a trigram
MAX_QUERY_LENGTH = 200
# The time a search may take reading trigram indexes, from its start: a part of names or values found in
# hundreds of thousands of CIs can cost more (PostgreSQL reads a bitmap of all of them). Past it, what
# was found is the answer, marked truncated.
SEARCH_BUDGET_SECONDS = 0.08
_MAX_CHAR = "\U0010ffff"  # sorts after every character: a prefix's upper bound
_TRIGRAM_TRANSLATION = str.maketrans(TRIGRAM_PUNCTUATION, TRIGRAM_LETTERS)
_MAX_SCALARS = 10_000  # a recheck of one CI's attributes stops here

_COLUMNS = (CI.c.id, CI.c.name, CI.c.ci_class, CI.c.status, CI.c.owner)


def search_cis(conn: Connection, registry_cache: RegistryCache, q: str, *, limit: int = 20,
               ci_class: str | None = None, identifiers_only: bool = False) -> dict[str, Any]:
    """{"query", "results": [{"id", "name", "class", "status", "owner", "matched": {"field", "value"}}],
    "truncated"}. `ci_class` keeps that class and its subclasses; `identifiers_only` stops after the
    exact-identifier tier (a program asking which CI holds a MAC wants no name that merely contains it,
    and its question then costs one probe of the identifier index whether or not a CI holds it)."""
    if "\x00" in q:  # no stored text holds one (storable.py), and SQLite's FTS5 cannot parse it
        raise InvalidInput("The query holds a NUL character, which no name or value can contain.",
                           [field_error("q", "contains a NUL character")])
    registry = registry_cache.knows_class(ci_class, conn=conn) if ci_class else registry_cache.get(conn=conn)
    classes = sorted(registry.get_class(ci_class).descendants) if ci_class else None
    wanted = limit + 1
    found: dict[uuid.UUID, dict[str, Any]] = {}
    deadline, cut = time.monotonic() + SEARCH_BUDGET_SECONDS, False
    # Parts of names and values: for 3 characters or more, and only when no identifier matched exactly.
    substrings = len(q) >= MIN_SUBSTRING
    tiers = (_identifiers,) if identifiers_only else (
        _identifiers, _exact_names, _name_prefixes, _name_substrings, _attribute_values)
    for tier in tiers:
        if len(found) >= wanted or (tier in (_name_substrings, _attribute_values) and not substrings):
            break
        try:
            # `wanted` rows from each tier: at most len(found) of them were found before, so this tier
            # adds all it can up to `wanted`.
            for row, field, value in tier(conn, registry, q, classes, wanted, deadline):
                if row.id not in found and len(found) < wanted:
                    found[row.id] = {"id": str(row.id), "name": row.name, "class": row.ci_class, "status": row.status,
                                     "owner": row.owner, "matched": {"field": field, "value": value}}
        except _OutOfTime:
            cut = True
            break
        substrings = substrings and not (tier is _identifiers and found)
    results = list(found.values())
    return {"query": q, "results": results[:limit], "truncated": cut or len(results) > limit}


class _OutOfTime(Exception):
    """A trigram search did not finish by the deadline."""


def _in_classes(query, classes: list[str] | None):
    return query if classes is None else query.where(CI.c.ci_class.in_(classes))


def _identifier_keys(registry: Registry, classes: list[str] | None) -> set[tuple[str, str]]:
    """(identity family, key) of every single-value identifier some class identifies or holds by (a name is
    searched as a name; composite rules join several values and nobody types them)."""
    pairs = set()
    for info in registry.classes.values():
        if classes is not None and info.name not in classes:
            continue
        for rule in [*info.effective_rules, *([key] for key in info.effective_held)]:
            if len(rule) == 1 and rule[0] not in ("name", "environment"):
                pairs.add((info.identity_family, rule[0]))
    return pairs


def _identifiers(conn, registry, q, classes, wanted, deadline) -> Iterator[tuple[Any, str, str]]:
    triples = sorted({(family, key, value) for family, key in _identifier_keys(registry, classes)
                      if (value := normalize(key, q)) is not None})
    if not triples:
        return
    # One primary-key probe per (family, key, value), the wanted rows as one JSON parameter (as ingest
    # looks identifiers up): SQLite plans a row-value IN list as a scan of the whole index.
    w = json_rows(conn, "w", "wanted", {"f": "text", "k": "text", "v": "text"}, triples)
    in_classes = "" if classes is None else " WHERE ci.ci_class IN (SELECT value FROM json_each(:classes))"
    if classes is not None and is_postgres(conn):
        in_classes = " WHERE ci.ci_class = ANY(string_to_array(:classes, ','))"
    statement = text(
        f"SELECT ci.id, ci.name, ci.ci_class, ci.status, ci.owner, i.key, i.value FROM {w.source} {w.join} "
        f"ci_identifier AS i ON i.family = {w.columns['f']} AND i.key = {w.columns['k']} AND i.value = {w.columns['v']} "
        f"JOIN ci ON ci.id = i.ci_id{in_classes} ORDER BY i.key, i.value, ci.id LIMIT :limit")
    params = {"wanted": w.value, "limit": wanted}
    if classes is not None:
        params["classes"] = ",".join(classes) if is_postgres(conn) else orjson.dumps(classes).decode()
    for row in conn.execute(statement.columns(id=Uuid), params):
        yield row, f"identifier.{row.key}", row.value


def _lower_name():
    return func.lower(CI.c.name)


def _exact_names(conn, registry, q, classes, wanted, deadline):
    query = select(*_COLUMNS).where(_lower_name() == func.lower(bindparam("q", q))).order_by(CI.c.id).limit(wanted)
    for row in conn.execute(_in_classes(query, classes)):
        yield row, "name", row.name


def _name_prefixes(conn, registry, q, classes, wanted, deadline):
    low = func.lower(bindparam("q", q, type_=String))
    high = (low + _MAX_CHAR).self_group()
    if is_postgres(conn):
        # The operators of text_pattern_ops (byte order), which ix_ci_name_search is built with.
        name = _lower_name()
        where = [name.op("~>=~", is_comparison=True)(low), name.op("~<~", is_comparison=True)(high)]
        order = [text("lower(ci.name) USING ~<~"), CI.c.id]
    else:
        where, order = [_lower_name() >= low, _lower_name() < high], [_lower_name(), CI.c.id]
    query = select(*_COLUMNS).where(*where).order_by(*order).limit(wanted)
    for row in conn.execute(_in_classes(query, classes)):
        yield row, "name", row.name


def _bounded_rows(conn: Connection, query, deadline: float) -> list[Any]:
    """The rows of a trigram search, read through its index, or _OutOfTime at the deadline.

    PostgreSQL: for a common pattern the planner prefers a sequential scan that stops at the first
    `wanted` matches, assuming they are spread evenly. They are not (CIs lie in the order they were
    loaded: every database after every server) and the scan may start anywhere (synchronized scans):
    one such scan read 800,000 rows, 6 s, for "PostgreSQL 15.4". The index costs the bitmap of its
    candidates instead: 70 ms for a pattern in 440,000 of 1,000,000 CIs, more for a long one whose
    every trigram is that common ("example.com"); past the deadline the search gives up on it."""
    remaining = deadline - time.monotonic()
    if remaining < 0.005:
        raise _OutOfTime
    if is_postgres(conn):
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql(f"SET statement_timeout = {int(remaining * 1000)}")
        try:
            if conn.connection.driver_connection.autocommit:  # the API's reads
                return conn.execute(query).all()
            with conn.begin_nested():  # in a transaction, a cancelled statement must not abort it
                return conn.execute(query).all()
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == "57014":  # query_canceled: the timeout
                raise _OutOfTime from exc
            raise
        finally:
            conn.exec_driver_sql("RESET statement_timeout")
            conn.exec_driver_sql("RESET enable_seqscan")
    sqlite = conn.connection.driver_connection
    sqlite.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)  # every 10,000 VM steps
    try:
        return conn.execute(query).all()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlite_errorname", None) == "SQLITE_INTERRUPT":
            raise _OutOfTime from exc
        raise
    finally:
        sqlite.set_progress_handler(None, 0)


def _trigram_pattern(value: str) -> str:
    """A LIKE pattern for the trigram expressions: lower case, punctuation as those indexes store it."""
    return _like_pattern(value.lower().translate(_TRIGRAM_TRANSLATION))


def _like_pattern(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _fts_phrase(q: str) -> str:
    return '"' + q.replace('"', '""') + '"'


def _sqlite_fts(table: str, q: str, classes: list[str] | None, wanted: int):
    # CROSS JOIN: SQLite keeps the written order, the FTS5 match first and each CI read by its rowid.
    in_classes = "" if classes is None else " AND ci.ci_class IN (SELECT value FROM json_each(:classes))"
    statement = text(
        f"SELECT ci.id, ci.name, ci.ci_class, ci.status, ci.owner, ci.attributes FROM {table} AS fts "
        f"CROSS JOIN ci ON ci.rowid = fts.rowid WHERE {table} MATCH :match{in_classes} LIMIT :wanted")
    params = {"match": _fts_phrase(q), "wanted": wanted}
    if classes is not None:
        params["classes"] = orjson.dumps(classes).decode()
    return statement.columns(id=Uuid, attributes=CI.c.attributes.type).bindparams(**params)


def _name_substrings(conn, registry, q, classes, wanted, deadline):
    if is_postgres(conn):
        query = select(*_COLUMNS).where(literal_column(NAME_TRIGRAMS_SQL).like(_trigram_pattern(q), escape="\\"))
        query = _in_classes(query, classes).limit(wanted)
    else:
        query = _sqlite_fts("ci_fts_name", q, classes, wanted)
    rows = _bounded_rows(conn, query, deadline)
    for row in sorted(rows, key=lambda row: (row.name.lower(), row.id)):
        yield row, "name", row.name


def _attribute_values(conn, registry, q, classes, wanted, deadline):
    if is_postgres(conn):
        # The values' text is a JSON array: quotes and backslashes in it are escaped as JSON escapes them.
        escaped = orjson.dumps(q).decode()[1:-1]
        query = select(*_COLUMNS, CI.c.attributes).where(
            literal_column(VALUE_TRIGRAMS_SQL).like(_trigram_pattern(escaped), escape="\\"))
        query = _in_classes(query, classes).limit(wanted)
    else:
        query = _sqlite_fts("ci_fts_values", q, classes, wanted)
    needle = q.lower()
    hits = []
    for row in _bounded_rows(conn, query, deadline):
        # The index finds candidates; which value matched is read here (and a match across two values,
        # or inside a JSON escape, is dropped).
        match = attribute_match(row.attributes, needle)
        if match is not None:
            hits.append((row, *match))
    for row, key, value in sorted(hits, key=lambda hit: (hit[0].name.lower(), hit[0].id)):
        yield row, f"attributes.{key}", value


def attribute_match(attributes: dict[str, Any], needle: str) -> tuple[str, str] | None:
    """(top-level key, value as text) of the first string or number containing `needle` (lower case)."""
    for key in sorted(attributes):
        for value in _scalars(attributes[key]):
            if needle in value.lower():
                return key, value
    return None


def _scalars(value: Any) -> Iterator[str]:
    stack, seen = [value], 0
    while stack and seen < _MAX_SCALARS:
        item = stack.pop()
        seen += 1
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, str):
            yield item
        elif isinstance(item, int | float):
            yield orjson.dumps(item).decode()
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(item[key] for key in sorted(item, reverse=True))
