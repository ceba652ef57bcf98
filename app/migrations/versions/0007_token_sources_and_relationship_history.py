"""Tokens name the sources they may report as; a CI's history can find the relationships that touched it.

- `api_token.sources`: the discovery sources a token may send to /api/v1/ingest. NULL means any source
  but `manual` (reserved for edits through the CI API): existing tokens migrate to that and the token
  list says so.
- `ended_relationship`: the ends of every relationship that ended, written by the deletion in its
  transaction, so that a CI's history finds the relationships that touched it once they are gone
  (live ones are found through the relationship table's own indexes). Filled here from the delete
  records already in the change feed, whose diff holds both ends.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import uuid

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BACKFILL_BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(sa.Column("sources", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                                   nullable=True))
    ended = op.create_table(
        "ended_relationship",
        sa.Column("relationship_id", sa.Uuid(), primary_key=True),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
    )
    op.create_index("ix_ended_relationship_source_id", "ended_relationship", ["source_id"])
    op.create_index("ix_ended_relationship_target_id", "ended_relationship", ["target_id"])
    change = sa.table("change_record", sa.column("seq", sa.BigInteger()), sa.column("object_id", sa.Uuid()),
                      sa.column("object_type", sa.String()), sa.column("action", sa.String()),
                      sa.column("diff", sa.JSON()))
    bind = op.get_bind()
    after = 0
    while True:  # in batches by seq: a feed of millions never sits in memory whole
        rows = bind.execute(sa.select(change.c.seq, change.c.object_id, change.c.diff).where(
            change.c.object_type == "relationship", change.c.action == "delete", change.c.seq > after)
            .order_by(change.c.seq).limit(BACKFILL_BATCH)).all()
        if not rows:
            break
        after = rows[-1].seq
        ends = {}
        for _, relationship_id, diff in rows:
            source, target = (diff or {}).get("source", [None])[0], (diff or {}).get("target", [None])[0]
            if source and target:
                ends[relationship_id] = {"relationship_id": relationship_id, "source_id": sa_uuid(source),
                                         "target_id": sa_uuid(target)}
        present = set(bind.execute(sa.select(ended.c.relationship_id).where(
            ended.c.relationship_id.in_(list(ends)))).scalars()) if ends else set()
        rows_to_add = [row for key, row in ends.items() if key not in present]
        if rows_to_add:
            op.bulk_insert(ended, rows_to_add)


def sa_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def downgrade() -> None:
    op.drop_index("ix_ended_relationship_target_id", "ended_relationship")
    op.drop_index("ix_ended_relationship_source_id", "ended_relationship")
    op.drop_table("ended_relationship")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("sources")
