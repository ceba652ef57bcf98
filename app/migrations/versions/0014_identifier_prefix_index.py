"""Prefix ranges of host fqdns under any collation (app.services.alert_binding binds the short hostname
`web-1` to the fqdn `web-1.example.com`).

PostgreSQL: ix_ci_identifier_prefix, a btree on ci_identifier (family, key, value text_pattern_ops):
byte order whatever the database's collation, so `value ~>=~ 'web-1.' AND value ~<~ 'web-1/'` is one
range of it. The primary key's order is the collation's, where a locale (en_US.UTF-8, ICU) weighs
punctuation little or not at all and that range is not the prefix. Built in one pass over
ci_identifier while writes to it wait (a SHARE lock; reads go on): seconds per million identifiers.
SQLite: nothing; its primary key compares by bytes (BINARY) already.

Revision ID: 0014
Revises: 0012 (the lead re-chains it after 0013 at merge; nothing here depends on 0013)
Create Date: 2026-12-02
"""

from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_ci_identifier_prefix ON ci_identifier (family, key, value text_pattern_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_ci_identifier_prefix")
