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

Open Alertmanager incidents get `expires_at` = now + DEFAULT_ALERT_EXPIRY_SECONDS, the default of
KARTA_ALERT_EXPIRY_SECONDS (4 h 15 min): left NULL, one stuck open before the upgrade (a group silenced
whole, the very case expiry is for) would never expire, as only a notification of its group sets it.
The default, not the setting: a migration runs without the service's settings (`alembic upgrade` from a
shell), so with a longer setting such an incident may expire before its group's next repeat; the
repeat reopens it. Counted from the upgrade, not the last notification: the incidents table does not
keep when that came, and a group still firing must not expire at once.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


ALERT_STATUSES_BEFORE = "status IN ('firing','resolved')"
ALERT_STATUSES = "status IN ('firing','resolved','absent','expired')"
# app.core.config.Settings.alert_expiry_seconds' default, written out: a migration stays as it ran.
DEFAULT_ALERT_EXPIRY_SECONDS = 4 * 3600 + 15 * 60
ALERTMANAGER = "alertmanager"  # app.integrations.alertmanager.SOURCE


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_ci_identifier_prefix ON ci_identifier (family, key, value text_pattern_ops)")
    op.add_column("incident", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_incident_expires_at", "incident", ["expires_at"])
    _alert_statuses(ALERT_STATUSES)
    _expire_open_alertmanager_incidents()


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


def _expire_open_alertmanager_incidents() -> None:
    """The open Alertmanager incidents of before expire unless their group is notified again (above)."""
    incident = sa.table("incident", sa.column("source", sa.String), sa.column("status", sa.String),
                        sa.column("expires_at", sa.DateTime(timezone=True)))
    expires_at = datetime.now(UTC) + timedelta(seconds=DEFAULT_ALERT_EXPIRY_SECONDS)
    op.execute(incident.update()
               .where(incident.c.source == ALERTMANAGER, incident.c.status == "open", incident.c.expires_at.is_(None))
               .values(expires_at=expires_at))
