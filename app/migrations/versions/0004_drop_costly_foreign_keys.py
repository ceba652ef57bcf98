"""Drop the foreign keys that cost ingest the most and guard nothing the service does not.

- relationship.type -> relationship_type: relationship types can be added, never removed or renamed,
  and every write checks a relationship's type against the registry first.
- ci_identifier.ci_id and ci_source.ci_id -> ci: the identifier index and a CI's sightings are
  written only by a transaction that created the CI or holds it locked, and the one path that
  deletes a CI deletes them with it (cis.delete_ci).
Checked row by row they were about an eighth of a first load's database time (BENCHMARKS.md). The keys
that guard the graph (relationship ends -> ci, relationship sightings -> relationship) and a CI's
class stay (the graph's went in 0006).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from app.migrations.foreign_keys import drop_foreign_keys, restore_foreign_keys

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The keys dropped, in the form foreign_keys.py takes.
KEYS = [
    ("relationship", "type", "relationship_type", "name", None, "relationship_type_fkey"),
    ("ci_identifier", "ci_id", "ci", "id", None, "ci_identifier_ci_id_fkey"),
    ("ci_source", "ci_id", "ci", "id", "CASCADE", "ci_source_ci_id_fkey"),
]


def upgrade() -> None:
    drop_foreign_keys(KEYS)


def downgrade() -> None:
    restore_foreign_keys(KEYS)
