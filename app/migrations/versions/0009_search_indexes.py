"""Indexes for GET /api/v1/search (app/services/search.py): names and attribute values, any case, any part.

PostgreSQL (indexes the database keeps by itself):
- the pg_trgm extension, created if missing (a trusted extension: the database owner may create it;
  otherwise ask a superuser for `CREATE EXTENSION pg_trgm` in this database, then run this again).
  The downgrade leaves it installed: other objects may use it.
- ix_ci_name_search: btree on (lower(name) text_pattern_ops, id), for exact names and name prefixes in
  order (byte order, whatever the database's collation);
- ix_ci_name_trgm: GIN trigrams of lower(name), for any part of a name;
- ix_ci_attribute_values_trgm: GIN trigrams of the lower-cased JSON array of every string and number
  in `attributes` (keys left out), for any part of an attribute value.
Cost on an existing estate: each index is built in one pass over `ci` while writes to it wait (a SHARE
lock; reads go on). Measured at 1,000,000 CIs with realistic attributes (BENCHMARKS.md, "Search"): the
three indexes took about a minute on 2 cores; the attribute trigrams are the large one.

SQLite (3.34 or later, for FTS5's trigram tokenizer):
- ix_ci_name_search: btree on (lower(name), id);
- ci_search: a contentless FTS5 table, trigram tokenizer, of each CI's name and its attribute values
  (every string and number, one per line), keyed by the CI row's rowid. Contentless, it stores no
  second copy of the text; REBUILD (below) remakes it from `ci`. (An external-content view cannot
  stand in: FTS5 reads its content with virtual tables disabled, and json_tree is one.)
- triggers on ci (insert; update of name or attributes; delete) keep it exact in the writing
  transaction, whichever path writes: the CI API, ingest's bulk statements, or plain SQL.
Two things rewrite rowids and so need REBUILD afterwards: VACUUM (for a table whose key is
not an INTEGER PRIMARY KEY) and a batch-mode migration that copies `ci`; such a migration also drops
the triggers with the old table, and must create them again (this file's TRIGGERS).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from alembic import op
from sqlalchemy import text

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Kept in step with app/services/search.py, which queries these expressions (the planner uses an
# expression index only for the same expression).
PG_VALUES = ("lower(jsonb_path_query_array(attributes, "
             "'strict $.**?(@.type() == \"string\" || @.type() == \"number\")'::jsonpath)::text)")
SQLITE_VALUES = ("(SELECT group_concat(value, char(10)) FROM json_tree({row}.attributes) "
                 "WHERE type IN ('text', 'integer', 'real'))")

POSTGRES_INDEXES = [
    "CREATE INDEX ix_ci_name_search ON ci (lower(name) text_pattern_ops, id)",
    "CREATE INDEX ix_ci_name_trgm ON ci USING gin (lower(name) gin_trgm_ops)",
    f"CREATE INDEX ix_ci_attribute_values_trgm ON ci USING gin ({PG_VALUES} gin_trgm_ops)",
]

_ADD = f"INSERT INTO ci_search (rowid, name, vals) VALUES (new.rowid, new.name, {SQLITE_VALUES.format(row='new')});"
_REMOVE = (f"INSERT INTO ci_search (ci_search, rowid, name, vals) "
           f"VALUES ('delete', old.rowid, old.name, {SQLITE_VALUES.format(row='old')});")
TRIGGERS = [
    f"CREATE TRIGGER ci_search_insert AFTER INSERT ON ci BEGIN {_ADD} END",
    f"CREATE TRIGGER ci_search_delete AFTER DELETE ON ci BEGIN {_REMOVE} END",
    # Only when the indexed text changes: ingest's touch of last_seen and a status change cost nothing here.
    ("CREATE TRIGGER ci_search_update AFTER UPDATE OF name, attributes ON ci "
     f"WHEN old.name IS NOT new.name OR old.attributes IS NOT new.attributes BEGIN {_REMOVE} {_ADD} END"),
]
REBUILD = ["INSERT INTO ci_search (ci_search) VALUES ('delete-all')",
           f"INSERT INTO ci_search (rowid, name, vals) SELECT ci.rowid, ci.name, {SQLITE_VALUES.format(row='ci')} FROM ci"]
SQLITE_CREATE = [
    "CREATE INDEX ix_ci_name_search ON ci (lower(name), id)",
    "CREATE VIRTUAL TABLE ci_search USING fts5(name, vals, content='', tokenize='trigram')",
    *REBUILD,
    *TRIGGERS,
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS ci_search_update", "DROP TRIGGER IF EXISTS ci_search_delete",
               "DROP TRIGGER IF EXISTS ci_search_insert", "DROP TABLE IF EXISTS ci_search", "DROP INDEX IF EXISTS ix_ci_name_search"]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _create_pg_trgm(bind)
        for statement in POSTGRES_INDEXES:
            op.execute(statement)
        return
    for statement in SQLITE_CREATE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("ix_ci_attribute_values_trgm", "ix_ci_name_trgm", "ix_ci_name_search"):
            op.execute(f"DROP INDEX IF EXISTS {name}")
        return
    for statement in SQLITE_DROP:
        op.execute(statement)


def _create_pg_trgm(bind) -> None:
    if bind.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first():
        return
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION pg_trgm"))
    except Exception as exc:
        raise RuntimeError(
            "Migration 0009 needs the pg_trgm extension and this role cannot create it: ask a superuser or "
            f"the database owner to run `CREATE EXTENSION pg_trgm;` in this database, then upgrade again ({exc})"
        ) from exc
