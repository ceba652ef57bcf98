"""Tokens name the sources they may report as; a CI's history can find the relationships that touched it.

- `api_token.sources`: the discovery sources a token may send to /api/v1/ingest. NULL means any source
  but `manual` (reserved for edits through the CI API): existing tokens migrate to that and the token
  list says so.
- Two partial expression indexes over relationship creation records, on the source and the target
  the record names. Every relationship that ever existed has one (its diff holds both ends), so a CI's
  history finds the relationships that touch or touched it, ended ones included, without scanning the
  change records; their later records are then found by object id (ix_change_record_object).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (index name, JSON position of the end in a creation diff {"source": [null, id], "target": [null, id]})
END_INDEXES = (("ix_change_record_rel_source", "source"), ("ix_change_record_rel_target", "target"))
RELATIONSHIP_CREATION = "object_type = 'relationship' AND action = 'create'"


def end_expression(dialect: str, end: str) -> str:
    """The SQL that reads a relationship creation record's end. A frozen copy of
    app.services.changes.relationship_end_sql: queries must use the same text to use the index."""
    if dialect == "postgresql":
        return f"(diff -> '{end}' ->> 1)"
    return f"json_extract(diff, '$.{end}[1]')"


def upgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(sa.Column("sources", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                                   nullable=True))
    dialect = op.get_bind().dialect.name
    for name, end in END_INDEXES:
        op.execute(f"CREATE INDEX {name} ON change_record ({end_expression(dialect, end)}) "
                   f"WHERE {RELATIONSHIP_CREATION}")


def downgrade() -> None:
    for name, _ in END_INDEXES:
        op.execute(f"DROP INDEX {name}")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("sources")
