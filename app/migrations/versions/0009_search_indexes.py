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
  Both trigram indexes read the text with punctuation and spaces turned into upper-case letters, so
  that pg_trgm, which splits words at them, indexes "6.1.0-18-amd64" as itself (app/models/ci.py).
Cost on an existing estate: each index is built in one pass over `ci` while writes to it wait (a SHARE
lock; reads go on), with the default maintenance_work_mem. Measured at 1,000,000 CIs with realistic
attributes (bench/search_bench.py, BENCHMARKS.md "Search"), on 2 cores shared with other work: 71-103 s
and 320 MiB more on disk (a 1.2 GiB database); the attribute trigrams are most of both. Writes to `ci`
wait that long: run it in a quiet hour.

SQLite (3.34 or later, for FTS5's trigram tokenizer):
- ix_ci_name_search: btree on (lower(name), id);
- ci_fts_name and ci_fts_values: contentless FTS5 tables, trigram tokenizer, of each CI's name and of
  its attribute values (every string and number, one per line), keyed by the CI row's rowid. Two
  tables, not two columns of one: a column filter walks every row holding the trigrams in any column,
  so "debian" in names read the 300,000 CIs running it (90 ms at 1,000,000 CIs) to find no name.
  Contentless, they keep no second copy of the text (and no sizes: columnsize=0, nothing ranks by
  them); REBUILD (below) remakes them from `ci`. (An external-content view cannot stand in: FTS5
  reads its content with virtual tables disabled, and json_tree is one.)
- triggers on ci (insert; update of name; update of attributes; delete) keep them exact in the writing
  transaction, whichever path writes: the CI API, ingest's bulk statements, or plain SQL.
Cost at 1,000,000 CIs, same bench: 82-151 s holding the write lock (the service writes nothing
meanwhile), 700 MiB more on disk (1.2 -> 1.9 GiB).
Statistics must leave their shadow tables out (app.core.db.refresh_statistics): counted while small,
they make SQLite plan FTS5's own deletes as scans.
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

# Kept in step with app/models/ci.py, which app/services/search.py queries with (the planner uses an
# expression index only for the same expression): punctuation and spaces as upper-case letters, so
# that pg_trgm takes a whole value as one word (see there).
_TRANSLATE = "'.-:/_@ ', 'DHCSUAW'"
PG_NAME = f"translate(lower(name), {_TRANSLATE})"
PG_VALUES = ("translate(lower(jsonb_path_query_array(attributes, "
             f"'strict $.**?(@.type() == \"string\" || @.type() == \"number\")'::jsonpath)::text), {_TRANSLATE})")
SQLITE_VALUES = ("(SELECT group_concat(value, char(10)) FROM json_tree({row}.attributes) "
                 "WHERE type IN ('text', 'integer', 'real'))")

POSTGRES_INDEXES = [
    "CREATE INDEX ix_ci_name_search ON ci (lower(name) text_pattern_ops, id)",
    f"CREATE INDEX ix_ci_name_trgm ON ci USING gin ({PG_NAME} gin_trgm_ops)",
    f"CREATE INDEX ix_ci_attribute_values_trgm ON ci USING gin ({PG_VALUES} gin_trgm_ops)",
]

_VALUES = {row: SQLITE_VALUES.format(row=row) for row in ("new", "old", "ci")}
_ADD_NAME = "INSERT INTO ci_fts_name (rowid, name) VALUES (new.rowid, new.name);"
_REMOVE_NAME = "INSERT INTO ci_fts_name (ci_fts_name, rowid, name) VALUES ('delete', old.rowid, old.name);"
_ADD_VALUES = f"INSERT INTO ci_fts_values (rowid, vals) VALUES (new.rowid, {_VALUES['new']});"
_REMOVE_VALUES = f"INSERT INTO ci_fts_values (ci_fts_values, rowid, vals) VALUES ('delete', old.rowid, {_VALUES['old']});"
TRIGGERS = [
    f"CREATE TRIGGER ci_search_insert AFTER INSERT ON ci BEGIN {_ADD_NAME} {_ADD_VALUES} END",
    f"CREATE TRIGGER ci_search_delete AFTER DELETE ON ci BEGIN {_REMOVE_NAME} {_REMOVE_VALUES} END",
    # Only when the indexed text changes: ingest's touch of last_seen and a status change cost nothing here.
    "CREATE TRIGGER ci_search_update_name AFTER UPDATE OF name ON ci WHEN old.name IS NOT new.name "
    f"BEGIN {_REMOVE_NAME} {_ADD_NAME} END",
    "CREATE TRIGGER ci_search_update_values AFTER UPDATE OF attributes ON ci WHEN old.attributes IS NOT new.attributes "
    f"BEGIN {_REMOVE_VALUES} {_ADD_VALUES} END",
]
REBUILD = [
    "INSERT INTO ci_fts_name (ci_fts_name) VALUES ('delete-all')",
    "INSERT INTO ci_fts_values (ci_fts_values) VALUES ('delete-all')",
    "INSERT INTO ci_fts_name (rowid, name) SELECT ci.rowid, ci.name FROM ci",
    f"INSERT INTO ci_fts_values (rowid, vals) SELECT ci.rowid, {_VALUES['ci']} FROM ci",
    # One segment each: a search then reads one doclist per trigram instead of one per segment.
    "INSERT INTO ci_fts_name (ci_fts_name) VALUES ('optimize')",
    "INSERT INTO ci_fts_values (ci_fts_values) VALUES ('optimize')",
]
SQLITE_CREATE = [
    "CREATE INDEX ix_ci_name_search ON ci (lower(name), id)",
    "CREATE VIRTUAL TABLE ci_fts_name USING fts5(name, content='', columnsize=0, tokenize='trigram')",
    "CREATE VIRTUAL TABLE ci_fts_values USING fts5(vals, content='', columnsize=0, tokenize='trigram')",
    *REBUILD,
    *TRIGGERS,
]
SQLITE_DROP = [*(f"DROP TRIGGER IF EXISTS {name}" for name in ("ci_search_update_values", "ci_search_update_name",
                                                                  "ci_search_delete", "ci_search_insert")),
               "DROP TABLE IF EXISTS ci_fts_values", "DROP TABLE IF EXISTS ci_fts_name",
               "DROP INDEX IF EXISTS ix_ci_name_search"]


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
