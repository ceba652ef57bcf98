"""Drop the foreign keys that cost ingest the most and guard nothing the service does not.

- relationship.type -> relationship_type: relationship types can be added, never removed or renamed,
  and every write checks a relationship's type against the registry first.
- ci_identifier.ci_id and ci_source.ci_id -> ci: the identifier index and a CI's sightings are
  written only by a transaction that created the CI or holds it locked, and the one path that
  deletes a CI deletes them with it (cis.delete_ci).
Checked row by row they were about an eighth of a first load's database time (BENCHMARKS.md). The keys
that guard the graph (relationship ends -> ci, relationship sightings -> relationship) and a CI's
class stay.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, referred table, referred column, ON DELETE, the name PostgreSQL gave the key)
KEYS = [
    ("relationship", "type", "relationship_type", "name", None, "relationship_type_fkey"),
    ("ci_identifier", "ci_id", "ci", "id", None, "ci_identifier_ci_id_fkey"),
    ("ci_source", "ci_id", "ci", "id", "CASCADE", "ci_source_ci_id_fkey"),
]
# SQLite keys have no names: batch mode names them by this convention to find them.
SQLITE_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, column, referred, _, _, pg_name in KEYS:
        if postgres:
            op.drop_constraint(pg_name, table, type_="foreignkey")
        else:
            with op.batch_alter_table(table, naming_convention=SQLITE_NAMING) as batch:
                batch.drop_constraint(f"fk_{table}_{column}_{referred}", type_="foreignkey")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, column, referred, referred_column, ondelete, pg_name in KEYS:
        if postgres:
            op.create_foreign_key(pg_name, table, referred, [column], [referred_column], ondelete=ondelete)
        else:  # named as upgrade() finds them
            with op.batch_alter_table(table, naming_convention=SQLITE_NAMING) as batch:
                batch.create_foreign_key(f"fk_{table}_{column}_{referred}", referred, [column], [referred_column],
                                         ondelete=ondelete)
