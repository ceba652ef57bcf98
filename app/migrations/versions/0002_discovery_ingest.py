"""Discovery ingest: attribute provenance, held identifiers, per-source sightings, runs, precedence.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("ci") as batch:
        batch.add_column(sa.Column("provenance", JSON, nullable=False, server_default="{}"))
    with op.batch_alter_table("ci_class") as batch:
        batch.add_column(sa.Column("held_identifiers", JSON, nullable=False, server_default="[]"))
    ci_class = sa.table("ci_class", sa.column("name"), sa.column("held_identifiers", JSON))
    op.execute(ci_class.update().where(ci_class.c.name.in_(["server", "network_device"]))
               .values(held_identifiers=["ip_address"]))

    op.create_table(
        "ci_source",
        sa.Column("ci_id", sa.Uuid, sa.ForeignKey("ci.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("scope_key", sa.String(64), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("last_run_id", sa.String(100), nullable=False),
        sa.Column("missed_runs", sa.Integer, nullable=False),
    )
    op.create_index("ix_ci_source_scope", "ci_source", ["source", "scope_key"])
    op.create_table(
        "relationship_source",
        sa.Column("relationship_id", sa.Uuid, sa.ForeignKey("relationship.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("scope_key", sa.String(64), nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("last_run_id", sa.String(100), nullable=False),
    )
    op.create_index("ix_relationship_source_scope", "relationship_source", ["source", "scope_key"])
    op.create_table(
        "discovery_run",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("scope", JSON, nullable=False),
        sa.Column("scope_key", sa.String(64), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("batches", sa.Integer, nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("conflicts", JSON, nullable=False),
        sa.Column("errors", JSON, nullable=False),
    )
    op.create_index("ix_discovery_run_started", "discovery_run", ["started_at"])
    op.create_table(
        "precedence_rule",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ci_class", sa.String(64), nullable=True),
        sa.Column("attribute", sa.String(128), nullable=True),
        sa.Column("sources", JSON, nullable=False),
        sa.UniqueConstraint("ci_class", "attribute", name="uq_precedence_rule_scope"),
    )
    rule = sa.table("precedence_rule", sa.column("ci_class"), sa.column("attribute"), sa.column("sources", JSON))
    op.bulk_insert(rule, [{"ci_class": None, "attribute": None,
                           "sources": ["manual", "ssh", "snmp", "nmap", "import"]}])


def downgrade() -> None:
    for table in ("precedence_rule", "discovery_run", "relationship_source", "ci_source"):
        op.drop_table(table)
    with op.batch_alter_table("ci_class") as batch:
        batch.drop_column("held_identifiers")
    with op.batch_alter_table("ci") as batch:
        batch.drop_column("provenance")
