"""Ingest fingerprints: an unchanged report is confirmed without re-deriving or rewriting it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ci_source") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(32), nullable=True))
        batch.add_column(sa.Column("ci_version", sa.Integer(), nullable=True))
    op.create_index("ix_ci_source_fingerprint", "ci_source", ["source", "fingerprint"])
    with op.batch_alter_table("relationship_source") as batch:
        batch.add_column(sa.Column("anchor_ci_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("anchor_fingerprint", sa.String(32), nullable=True))
    op.create_index("ix_relationship_source_anchor", "relationship_source", ["anchor_ci_id", "source"])
    if op.get_bind().dialect.name == "postgresql":
        # Every run rewrites each sighting's last_seen/last_run_id: free space on the page lets
        # PostgreSQL update in place (HOT) instead of adding index entries for every row.
        op.execute("ALTER TABLE ci_source SET (fillfactor = 70)")
        op.execute("ALTER TABLE relationship_source SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ci_source RESET (fillfactor)")
        op.execute("ALTER TABLE relationship_source RESET (fillfactor)")
    op.drop_index("ix_relationship_source_anchor", "relationship_source")
    with op.batch_alter_table("relationship_source") as batch:
        batch.drop_column("anchor_fingerprint")
        batch.drop_column("anchor_ci_id")
    op.drop_index("ix_ci_source_fingerprint", "ci_source")
    with op.batch_alter_table("ci_source") as batch:
        batch.drop_column("ci_version")
        batch.drop_column("fingerprint")
