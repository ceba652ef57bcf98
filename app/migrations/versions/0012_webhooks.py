"""Webhook subscriptions (with their cursor in the change feed and their delivery lease) and their
delivery log.

Revision ID: 0012
Revises: 0011 (the lead re-chains it after 0011 at merge; nothing here depends on 0011)
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "webhook",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret_encrypted", sa.String(1000), nullable=False),
        sa.Column("filters", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("disabled_reason", sa.String(1000), nullable=True),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.Column("cursor_seq", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", timestamp, nullable=True),
        sa.Column("last_success_at", timestamp, nullable=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("leased_until", timestamp, nullable=True),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("webhook_id", sa.Uuid, nullable=False),
        sa.Column("attempted_at", timestamp, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    op.create_index("ix_webhook_delivery_webhook", "webhook_delivery", ["webhook_id", "attempted_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_webhook", "webhook_delivery")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook")
