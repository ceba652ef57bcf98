"""Prefix ranges of host fqdns under any collation, and alerts that stop being reported.

1. app.services.alert_binding binds the short hostname `web-1` to the fqdn `web-1.example.com`.

PostgreSQL: ix_ci_identifier_prefix, a btree on ci_identifier (family, key, value text_pattern_ops):
byte order whatever the database's collation, so `value ~>=~ 'web-1.' AND value ~<~ 'web-1/'` is one
range of it. The primary key's order is the collation's, where a locale (en_US.UTF-8, ICU) weighs
punctuation little or not at all and that range is not the prefix. Built in one pass over
ci_identifier while writes to it wait (a SHARE lock; reads go on): seconds per million identifiers.
SQLite: nothing; its primary key compares by bytes (BINARY) already.

2. app.services.incidents: an alert may also be `absent` (missing from a complete notification of its
group) or `expired` (its group silent past the incident's new `expires_at`, indexed for the sweep).
incident_alert's status check is remade: on SQLite by copying the table (batch mode; no triggers or
indexes but ix_incident_alert_ci_id hang on it, and it is remade too). The downgrade turns absent and
expired alerts into resolved ones, the nearest state the older schema has.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


ALERT_STATUSES_BEFORE = "status IN ('firing','resolved')"
ALERT_STATUSES = "status IN ('firing','resolved','absent','expired')"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_ci_identifier_prefix ON ci_identifier (family, key, value text_pattern_ops)")
    op.add_column("incident", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_incident_expires_at", "incident", ["expires_at"])
    _alert_statuses(ALERT_STATUSES)


def downgrade() -> None:
    op.execute("UPDATE incident_alert SET status = 'resolved' WHERE status IN ('absent', 'expired')")
    _alert_statuses(ALERT_STATUSES_BEFORE)
    op.drop_index("ix_incident_expires_at", "incident")
    with op.batch_alter_table("incident") as batch:
        batch.drop_column("expires_at")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_ci_identifier_prefix")


def _alert_statuses(condition: str) -> None:
    with op.batch_alter_table("incident_alert") as batch:
        batch.drop_constraint("ck_incident_alert_status", type_="check")
        batch.create_check_constraint("ck_incident_alert_status", condition)
