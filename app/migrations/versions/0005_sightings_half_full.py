"""Sighting pages half full, so that every run's rewrite of a sighting stays on its page.

Each run rewrites the sighting of every CI a source confirms (ci_source) and of every relationship it
derives (relationship_source). PostgreSQL can do that in place (a HOT update: no new index entries)
only while the page has room for the new version of the row. At fillfactor 70 (0003) a page had room
for the new versions of about 40% of its rows; the rest went to other pages with three index entries
each. At 45 every row fits: the unchanged run's sighting UPDATE took 60-70 ms per 5,000 CIs instead of
170-240 ms (BENCHMARKS.md). The tables are about 1.5x larger on disk.

Pages written before this migration keep their old fill until rewritten (`VACUUM FULL ci_source,
relationship_source` applies it at once).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ci_source SET (fillfactor = 45)")
        op.execute("ALTER TABLE relationship_source SET (fillfactor = 45)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ci_source SET (fillfactor = 70)")
        op.execute("ALTER TABLE relationship_source SET (fillfactor = 70)")
