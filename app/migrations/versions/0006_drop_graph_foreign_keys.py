"""Drop the foreign keys of relationships: their ends -> ci, and a relationship's sightings -> relationship.

Checked row by row, they were half the database time of inserting a relationship (15.6 -> 8.3 µs a
row, BENCHMARKS.md), and a first load inserts two relationships and two sightings per item. What they
guarded is now kept by the service, in bulk:
- A relationship is written only with both end CIs created by the same transaction or locked by it
  (FOR KEY SHARE, as the foreign key's own check did, or stronger): the relationship API locks both
  ends; ingest locks the CIs it identified or was sent by id. A CI being deleted holds its row locked
  FOR UPDATE, so it waits for them, and then ends the relationships they committed.
- Deleting a CI ends its relationships first (cis.delete_ci), each with its change record.
- Ending a relationship deletes its sightings with it (relationships.end_relationships), which the
  ON DELETE CASCADE did, after locking both its ends FOR UPDATE: a batch writing a sighting of it
  holds an end locked, so the ending waits for that sighting and deletes it too.
A future path that deletes CIs or relationships, or writes relationships, must keep these rules.
A CI's class keeps its foreign key.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from app.migrations.foreign_keys import drop_foreign_keys, restore_foreign_keys

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The keys dropped, in the form foreign_keys.py takes.
KEYS = [
    ("relationship", "source_id", "ci", "id", None, "relationship_source_id_fkey"),
    ("relationship", "target_id", "ci", "id", None, "relationship_target_id_fkey"),
    ("relationship_source", "relationship_id", "relationship", "id", "CASCADE", "relationship_source_relationship_id_fkey"),
]


def upgrade() -> None:
    drop_foreign_keys(KEYS)


def downgrade() -> None:
    restore_foreign_keys(KEYS)
