"""Configuration items: create, read, list, update and delete. Every write goes through a UnitOfWork
and leaves a change record; identifiers are kept in the index in the same transaction."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (ColumnElement, Connection, bindparam, case, delete, false, func, insert, literal,
                        literal_column, null, or_, select, text, union_all, update)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import DBAPIError

from app.core.db import driver_first
from app.core.dialect import locked, row_locks
from app.models import CIIdentifier, CISource, ConfigurationItem, Relationship
from app.models.ci import CICreate
from app.models.discovery import MANUAL_SOURCE
from app.models.types import as_utc, new_id
from app.services.bulk import id_in, is_postgres
from app.services.ci_filters import attribute_equals, has_tag
from app.services.errors import InvalidInput, NotFound, PreconditionFailed, field_error
from app.services.group_identity import refuse_identity_change
from app.services.storable import require_size, require_storable
from app.services.history import UnitOfWork, diff_fields
from app.services.history import creation_diff as history_creation_diff
from app.services.identity import claim_identifiers, identifying_facts
from app.services.pagination import decode_keyset, decode_uuid_cursor, encode_keyset, page
from app.services.registry import ClassInfo, RegistryCache
from app.services.relationships import REL_COLUMNS, end_relationships
from app.services.sightings import columns_with_latest_sighting

CI = ConfigurationItem.__table__
REL = Relationship.__table__
IDENT = CIIdentifier.__table__
CI_SOURCE = CISource.__table__

# A CI's last_seen is the later of its own (set through the API) and its latest sighting by a source:
# ingest records sightings only in ci_source, so confirming an unchanged CI does not rewrite its row.
_LATEST_SIGHTING = select(func.max(CI_SOURCE.c.last_seen)).where(CI_SOURCE.c.ci_id == CI.c.id).scalar_subquery()
CI_COLUMNS = columns_with_latest_sighting(CI, _LATEST_SIGHTING)

# The fields a change record diffs, by their public names.
HISTORY_FIELDS = ["class", "name", "status", "environment", "criticality", "owner", "tags", "attributes",
                  "first_seen", "last_seen"]
NOT_NULLABLE = ("ci_class", "name", "status", "tags", "attributes")
DEFAULT_MAX_ATTRIBUTES_BYTES = 1024 * 1024  # the service passes KARTA_MAX_ATTRIBUTES_BYTES
# A CI with more relationships than this shows the first ones; the rest are in /relationships?source=.
DETAIL_RELATIONSHIP_LIMIT = 1000


def to_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "class": row["ci_class"],
        "name": row["name"],
        "status": row["status"],
        "environment": row["environment"],
        "criticality": row["criticality"],
        "owner": row["owner"],
        "tags": row["tags"],
        "attributes": row["attributes"],
        "first_seen": as_utc(row["first_seen"]),
        "last_seen": as_utc(row["last_seen"]),
        "created_at": as_utc(row["created_at"]),
        "updated_at": as_utc(row["updated_at"]),
        "version": row["version"],
    }


CREATED_FIELDS = (("class", "ci_class"), ("name", "name"), ("status", "status"), ("environment", "environment"),
                   ("criticality", "criticality"), ("owner", "owner"), ("tags", "tags"))


def creation_diff(row: Any) -> dict[str, list[Any]]:
    """diff_fields(None, to_public(row), HISTORY_FIELDS), built directly."""
    return history_creation_diff(((public, row[column]) for public, column in CREATED_FIELDS), row["attributes"],
                                 row["first_seen"], row["last_seen"])


def manual_provenance(fields: list[str], at: datetime) -> dict[str, dict[str, str]]:
    """Edits through the CI API are the `manual` source, the highest by default."""
    stamp = {"source": MANUAL_SOURCE, "at": at.isoformat()}
    return {field: stamp for field in fields}


def _provenance_after_edit(provenance: dict[str, Any], diff: dict[str, Any], at: datetime) -> dict[str, Any]:
    updated = dict(provenance)
    for field, (_, new_value) in diff.items():
        if field == "class":  # a person's class outranks what discovery says (ingest/phases.class_after)
            updated.update(manual_provenance(["class"], at))
        elif field == "name" or field.startswith("attributes."):
            key = field.removeprefix("attributes.")
            if new_value is None and field != "name":
                updated.pop(key, None)
            else:
                updated.update(manual_provenance([key], at))
    return updated


def _validate(cls: ClassInfo, attributes: dict[str, Any]) -> None:
    errors = cls.validation_errors(attributes)
    if errors:
        raise InvalidInput(
            f"The attributes do not match the schema of class '{cls.name}': {errors[0]['field']}: {errors[0]['message']}",
            errors,
        )


def create_ci(uow: UnitOfWork, registry_cache: RegistryCache, data: CICreate, *,
              max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES) -> dict[str, Any]:
    for name in ("name", "environment", "owner", "tags", "attributes"):
        require_storable(getattr(data, name), name)
    require_size(data.attributes, max_attributes_bytes, "attributes")
    cls = registry_cache.for_write(uow.conn, [data.ci_class]).get_class(data.ci_class)
    _validate(cls, data.attributes)
    row = insert_ci(uow, cls, {
        "name": data.name,
        "status": data.status.value,
        "environment": data.environment,
        "criticality": data.criticality,
        "owner": data.owner,
        "tags": data.tags,
        "attributes": data.attributes,
        "first_seen": data.first_seen,
        "last_seen": data.last_seen,
    }, manual_provenance(["name", "class", *data.attributes], uow.now))
    public = to_public(row)
    uow.record("ci", row["id"], "create", diff_fields(None, public, HISTORY_FIELDS))
    return public


def insert_ci(uow: UnitOfWork, cls: ClassInfo, fields: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """A new CI of `cls` with `fields` (name, status, environment, criticality, owner, tags,
    attributes, first_seen, last_seen) and `provenance`, its identifiers claimed; the caller has
    validated it and records its creation. Returns the row."""
    row = {"id": new_id(), "ci_class": cls.name, **fields, "created_at": uow.now, "updated_at": uow.now,
           "version": 1, "provenance": provenance}
    uow.conn.execute(insert(CI), row)
    claim_identifiers(uow.conn, row["id"], cls, identifying_facts(row["name"], row["environment"], row["attributes"]))
    return row


def _locked_row(conn: Connection, ci_id: uuid.UUID) -> Any:
    row = conn.execute(locked(conn, select(*CI_COLUMNS).where(CI.c.id == ci_id), of=CI)).mappings().first()
    if row is None:
        raise NotFound(f"No CI with id {ci_id}.")
    return row


def _check_version(row: Any, if_match: int | None) -> None:
    if if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(
            f"CI {row['id']} is at version {row['version']}, not {if_match}: someone changed it since you read it. "
            f"GET it again, reapply your change and send If-Match: \"{row['version']}\".",
            current_version=row["version"],
        )


def update_ci(
    uow: UnitOfWork, registry_cache: RegistryCache, ci_id: uuid.UUID, changes: dict[str, Any], if_match: int | None,
    *, max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
) -> dict[str, Any]:
    """Apply a PATCH. `changes` holds only the fields the client sent; attributes merge key by key."""
    for name, value in changes.items():
        require_storable(value, "class" if name == "ci_class" else name)
    for name in NOT_NULLABLE:
        if name in changes and changes[name] is None:
            public_name = "class" if name == "ci_class" else name
            raise InvalidInput(f"'{public_name}' cannot be null.", [field_error(public_name, "cannot be null")])
    row = _locked_row(uow.conn, ci_id)
    _check_version(row, if_match)
    new = dict(row)
    for name, value in changes.items():
        if name == "attributes":
            merged = dict(row["attributes"])
            for key, item in value.items():
                if item is None:
                    merged.pop(key, None)
                else:
                    merged[key] = item
            new["attributes"] = merged
        else:
            new[name] = value
    registry = registry_cache.for_write(uow.conn, [new["ci_class"]])
    cls = registry.get_class(new["ci_class"])
    if "attributes" in changes:
        require_size(new["attributes"], max_attributes_bytes, "attributes")
    _validate(cls, new["attributes"])
    # A redundancy group Karta made keeps what Karta finds it by (app.services.group_identity).
    before = registry.classes.get(row["ci_class"])
    refuse_identity_change(uow.conn, row, new["attributes"],
                           family_changed=before is not None and before.family != cls.family)
    old_public = to_public(row)
    diff = diff_fields(old_public, to_public(new), HISTORY_FIELDS)
    if not diff:
        return old_public
    new["version"] = row["version"] + 1
    new["updated_at"] = uow.now
    new["provenance"] = _provenance_after_edit(row["provenance"], diff, uow.now)
    values = {key: new[key] for key in new if key != "id"}
    result = uow.conn.execute(update(CI).where(CI.c.id == ci_id, CI.c.version == row["version"]).values(values))
    if result.rowcount != 1:
        _check_version(_locked_row(uow.conn, ci_id), row["version"])
    claim_identifiers(uow.conn, ci_id, cls, identifying_facts(new["name"], new["environment"], new["attributes"]))
    uow.record("ci", ci_id, "update", diff)
    return to_public(new)


def delete_ci(uow: UnitOfWork, ci_id: uuid.UUID, if_match: int | None) -> None:
    """Delete a CI; its relationships end first, each with its own change record."""
    if row_locks(uow.conn):
        # Ending the relationships locks their other ends too. Taken one by one after this CI, those
        # locks deadlocked with a batch locking the same machines in id order (it holds a neighbour and
        # waits for this CI): take them all at once, in id order as ingest does. A CI related to this
        # one meanwhile is locked later, as before.
        ends = uow.conn.execute(select(REL.c.source_id, REL.c.target_id)
                                .where(or_(REL.c.source_id == ci_id, REL.c.target_id == ci_id))).all()
        related = {ci_id, *(end for pair in ends for end in pair)}
        uow.conn.execute(locked(uow.conn, select(CI.c.id).where(id_in(uow.conn, CI.c.id, related)), order_by=CI.c.id))
    row = _locked_row(uow.conn, ci_id)
    _check_version(row, if_match)
    relationships = uow.conn.execute(
        select(*REL_COLUMNS).where(or_(REL.c.source_id == ci_id, REL.c.target_id == ci_id))
    ).mappings().all()
    end_relationships(uow, relationships)
    uow.conn.execute(delete(IDENT).where(IDENT.c.ci_id == ci_id))
    uow.conn.execute(delete(CI_SOURCE).where(CI_SOURCE.c.ci_id == ci_id))
    uow.conn.execute(delete(CI).where(CI.c.id == ci_id))
    uow.record("ci", ci_id, "delete", diff_fields(to_public(row), None, HISTORY_FIELDS))


_CI_BY_ID = select(*CI_COLUMNS).where(CI.c.id == bindparam("ci_id"))


def _relationships_of_statement():
    """Both directions of one CI's relationships with the CI at the other end, in one query.
    Built once: constructing a compound select costs more than running it."""
    other = CI.alias("other")
    ends = [
        select(literal(direction).label("direction"), REL.c.id, REL.c.type, REL.c.attributes,
               other.c.id.label("other_id"), other.c.name, other.c.ci_class)
        .join(other, other.c.id == other_end)
        .where(own_end == bindparam("ci_id"))
        for direction, own_end, other_end in (("outgoing", REL.c.source_id, REL.c.target_id),
                                              ("incoming", REL.c.target_id, REL.c.source_id))
    ]
    both = union_all(*ends).subquery()
    return select(both).order_by(both.c.direction.desc(), both.c.type, both.c.id).limit(bindparam("rel_limit"))


_RELATIONSHIPS_OF = _relationships_of_statement()


def _detail_statement():
    """PostgreSQL: the CI and its relationships (as _RELATIONSHIPS_OF reads them, as one JSON array in the
    same order) in one statement, so a read is one round trip and one statement for the server to run.
    SQLite, in process, has no round trip to save: it runs _CI_BY_ID and _RELATIONSHIPS_OF, as does a
    read inside a transaction, or one whose relationships hold more than DETAIL_INLINE_ATTRIBUTES_MAX
    bytes of attributes as stored (they have no size cap of their own; the array has PostgreSQL's 1 GB
    bound for one value): see _detail_in_one."""
    ordered = _RELATIONSHIPS_OF.subquery()
    as_rows = func.json_agg(aggregate_order_by(
        func.json_build_array(*ordered.c), ordered.c.direction.desc(), ordered.c.type, ordered.c.id))
    # NULL (read them row by row) when their attributes as stored pass a bound: the array is built whole
    # in the server's memory before anything is sent, and past 1 GB it fails.
    too_big = func.sum(func.pg_column_size(ordered.c.attributes)) > bindparam("inline_max")
    relationships = select(case((too_big, null()), else_=func.coalesce(as_rows, literal_column("'[]'::json"))))
    relationships = relationships.scalar_subquery()
    return select(*CI_COLUMNS, relationships.label("relationships")).where(CI.c.id == bindparam("ci_id"))


_DETAIL = _detail_statement()


def _ci_row(conn: Connection, ci_id: uuid.UUID, statement=_CI_BY_ID, **params) -> Any:
    row = conn.execute(statement, {"ci_id": ci_id, **params}).mappings().first()
    if row is None:
        raise NotFound(f"No CI with id {ci_id}.")
    return row


def get_ci(conn: Connection, ci_id: uuid.UUID) -> dict[str, Any]:
    return to_public(_ci_row(conn, ci_id))


# Past this many bytes of relationship attributes as PostgreSQL stores them (compressed, maybe ten to one),
# the detail read takes them row by row rather than as one JSON array built in the server's memory.
DETAIL_INLINE_ATTRIBUTES_MAX = 32 * 1024 * 1024
# PostgreSQL's program_limit_exceeded (among others, a value past the 1 GB bound of one field) and
# out_of_memory: the array did not fit after all; the rows one by one may.
_TOO_BIG = ("54000", "53200")


def _detail_in_one(conn: Connection, ci_id: uuid.UUID) -> tuple[Any, list | None]:
    """The CI's row and its relationships' rows as _DETAIL reads them; (None, None) where the two
    statements must do, and (row, None) where only the relationships must be read row by row.

    Only outside a transaction (the service's reads on PostgreSQL run in autocommit): there a statement
    that fails leaves nothing behind, so a relationship array too big for one value (~1,000
    relationships of ~1 MB of attributes each) is read again row by row, as before, instead of failing.
    Relationships whose attributes pass DETAIL_INLINE_ATTRIBUTES_MAX are not built into one array at all.
    The statement is run by psycopg alone (app.core.db.driver_first: ~25-40% less of the client's CPU than
    SQLAlchemy's execution, for the read every tool makes)."""
    driver = conn.connection.driver_connection
    if not getattr(driver, "autocommit", False):
        return None, None
    try:
        row = driver_first(conn, _DETAIL, {"ci_id": ci_id, "rel_limit": DETAIL_RELATIONSHIP_LIMIT + 1,
                                           "inline_max": DETAIL_INLINE_ATTRIBUTES_MAX})
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in _TOO_BIG:
            return None, None
        raise
    if row is None:
        raise NotFound(f"No CI with id {ci_id}.")
    if row["relationships"] is None:
        return row, None
    rows = [(direction, uuid.UUID(rel_id), rel_type, attributes, uuid.UUID(other_id), other_name, other_class)
            for direction, rel_id, rel_type, attributes, other_id, other_name, other_class in row["relationships"]]
    return row, rows


def get_ci_detail(conn: Connection, registry_cache: RegistryCache, ci_id: uuid.UUID) -> dict[str, Any]:
    """The CI, its attributes' provenance, and its relationships both ways, labelled as read from this CI."""
    row, rows = _detail_in_one(conn, ci_id) if is_postgres(conn) else (None, None)
    if row is None:
        row = _ci_row(conn, ci_id)
    if rows is None:
        rows = conn.execute(_RELATIONSHIPS_OF, {"ci_id": ci_id, "rel_limit": DETAIL_RELATIONSHIP_LIMIT + 1}).all()
    ci = to_public(row)
    ci["provenance"] = row["provenance"]
    types = registry_cache.get(conn=conn).relationship_types
    truncated = len(rows) > DETAIL_RELATIONSHIP_LIMIT
    views = []
    for direction, rel_id, rel_type, attributes, other_id, other_name, other_class in rows[:DETAIL_RELATIONSHIP_LIMIT]:
        info = types.get(rel_type)
        label = rel_type if info is None else (info.forward_label if direction == "outgoing" else info.reverse_label)
        views.append({
            "id": rel_id, "type": rel_type, "label": label, "direction": direction,
            "ci": other_id, "ci_name": other_name, "ci_class": other_class, "attributes": attributes,
        })
    ci["relationships"] = views
    ci["relationships_truncated"] = truncated
    return ci


# The sorts of the CI list (a leading "-" reverses one). Each pages on (sort value, id): see pagination.py.
SORT_KEYS = ("name", "class", "status", "last_seen", "updated_at")
# last_seen is computed per CI (its own and its latest sighting): sorting by it reads every matching CI,
# so it is refused for more CIs than this; a filter brings it under.
LAST_SEEN_SORT_MAX = 5_000
_NEVER = datetime(1, 1, 1, tzinfo=UTC)  # a CI never seen sorts as the oldest


def _sort_expression(key: str):
    if key == "last_seen":
        return func.coalesce(CI_COLUMNS[-1].element, literal(_NEVER, CI.c.last_seen.type))
    if key == "name":
        return func.lower(CI.c.name)  # any case, in byte order on both databases: ix_ci_name_search (0009)
    return {"class": CI.c.ci_class, "status": CI.c.status, "updated_at": CI.c.updated_at}[key]


def _byte_order(conn: Connection, key: str) -> bool:
    # PostgreSQL compares text by the database's collation unless told otherwise: the name sort uses the
    # operators of text_pattern_ops (bytes), as its index does and as SQLite always compares.
    return key == "name" and is_postgres(conn)


def _compare(conn: Connection, key: str, expression, operator: str, value):
    if _byte_order(conn, key):
        return expression.op(f"~{operator}~", is_comparison=True)(value)
    return {"<": expression < value, ">": expression > value, "<=": expression <= value, ">=": expression >= value}[operator]


def parse_sort(sort: str | None) -> tuple[str, bool] | None:
    """("name", False) for "name", ("updated_at", True) for "-updated_at"; None for no sort; 422 otherwise."""
    if sort is None:
        return None
    key, descending = sort.removeprefix("-"), sort.startswith("-")
    if key not in SORT_KEYS:
        raise InvalidInput(f"Unknown sort '{sort}'. Sorts: {', '.join(SORT_KEYS)} (a leading '-' reverses).",
                           [field_error("sort", "unknown sort")])
    return key, descending


def list_filters(
    conn: Connection, registry_cache: RegistryCache, *, ci_class: str | None = None, status: str | None = None,
    environment: str | None = None, tag: str | None = None, owner: str | None = None, no_owner: bool = False,
    q: str | None = None, attributes: dict[str, str] | None = None, ids: Sequence[uuid.UUID] | None = None,
) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a CI list; `ids` keeps only those CIs (the matches of a search)."""
    conditions = []
    if ci_class is not None:
        cls = registry_cache.knows_class(ci_class, conn=conn).get_class(ci_class)
        conditions.append(CI.c.ci_class.in_(sorted(cls.descendants)))
    if status is not None:
        conditions.append(CI.c.status == status)
    if environment is not None:
        conditions.append(CI.c.environment == environment)
    if owner is not None:
        conditions.append(CI.c.owner == owner)
    if no_owner:
        conditions.append(CI.c.owner.is_(None))
    if tag is not None:
        conditions.append(has_tag(conn, tag))
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(CI.c.name.ilike(f"%{escaped}%", escape="\\"))
    for key, value in (attributes or {}).items():
        conditions.append(attribute_equals(conn, key, value))
    if ids is not None:
        conditions.append(id_in(conn, CI.c.id, ids) if ids else false())
    return conditions


def count_cis(conn: Connection, conditions: list[ColumnElement[bool]], up_to: int | None = None) -> int:
    """How many CIs match; with `up_to`, counting stops past it (the answer is then up_to + 1): a
    count reads every matching row, and tens of thousands of them cost more than a page."""
    if up_to is None:
        return conn.execute(select(func.count()).select_from(CI).where(*conditions)).scalar_one()
    matching = select(literal(1)).select_from(CI).where(*conditions).limit(up_to + 1).subquery()
    return conn.execute(select(func.count()).select_from(matching)).scalar_one()


def list_cis(
    conn: Connection,
    registry_cache: RegistryCache,
    *,
    limit: int,
    cursor: str | None = None,
    sort: str | None = None,
    with_total: bool = False,
    total_up_to: int | None = None,
    **filters: Any,
) -> dict[str, Any]:
    """A page of CIs matching `filters` (see list_filters), in `sort` order ("name", "-updated_at", ...;
    by id when None, as the API always did), with `total` (one COUNT with the same filters) when asked.
    With `total_up_to` the count stops past that many and `total_exact` says whether it did not."""
    order = parse_sort(sort)
    conditions = list_filters(conn, registry_cache, **filters)
    total, exact = None, True
    if with_total:
        total = count_cis(conn, conditions, up_to=total_up_to)
        if total_up_to is not None and total > total_up_to:
            total, exact = total_up_to, False
    matching = None  # how many match, as far as sorting by last_seen needs to know (more than its limit?)
    if order and order[0] == "last_seen":
        matching = total if with_total and exact else count_cis(conn, conditions, up_to=LAST_SEEN_SORT_MAX)
    if order is None:
        query = select(*CI_COLUMNS).where(*conditions).order_by(CI.c.id).limit(limit + 1)
        if cursor:
            query = query.where(CI.c.id > decode_uuid_cursor(cursor))
        result = page(conn.execute(query).mappings().all(), limit, to_public, "id")
    else:
        result = _sorted_page(conn, conditions, *order, sort=sort, matching=matching, limit=limit, cursor=cursor)
    return {**result, "total": total, "total_exact": exact} if with_total else result


def _sorted_page(conn: Connection, conditions: list, key: str, descending: bool, *, sort: str,
                 matching: int | None, limit: int, cursor: str | None) -> dict[str, Any]:
    if key == "last_seen" and matching is not None and matching > LAST_SEEN_SORT_MAX:
        raise InvalidInput(
            f"Sorting by last_seen reads every matching CI: it needs filters that leave at most "
            f"{LAST_SEEN_SORT_MAX:,} CIs (these leave more).", [field_error("sort", "too many CIs to sort by last_seen")])
    expression = _sort_expression(key)
    if _byte_order(conn, key):
        ordered = (text("lower(ci.name) USING " + ("~>~" if descending else "~<~")), CI.c.id.desc() if descending else CI.c.id)
    else:
        ordered = (expression.desc(), CI.c.id.desc()) if descending else (expression, CI.c.id)
    query = select(*CI_COLUMNS, expression.label("sort_value")).where(*conditions).order_by(*ordered).limit(limit + 1)
    if cursor:
        value, after = decode_keyset(cursor, sort)
        if key in ("last_seen", "updated_at"):
            if not isinstance(value, datetime):
                raise InvalidInput("The cursor is not one this API issued.", [field_error("cursor", "malformed cursor")])
            value = as_utc(value)
        elif not isinstance(value, str):
            raise InvalidInput("The cursor is not one this API issued.", [field_error("cursor", "malformed cursor")])
        # (value, id) past the cursor, said so that an index on the sort column alone still bounds the scan.
        if descending:
            query = query.where(_compare(conn, key, expression, "<=", value),
                                or_(_compare(conn, key, expression, "<", value), CI.c.id < after))
        else:
            query = query.where(_compare(conn, key, expression, ">=", value),
                                or_(_compare(conn, key, expression, ">", value), CI.c.id > after))
    rows = conn.execute(query).mappings().all()
    items = [to_public(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        # The value as the database computed it (lower(name), last_seen with never as the oldest).
        last = rows[limit - 1]
        next_cursor = encode_keyset(sort, last["sort_value"], last["id"])
    return {"items": items, "next_cursor": next_cursor}
