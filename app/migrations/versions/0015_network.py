"""Network discovery: the ``cabled_to`` relationship type between two network devices (LLDP).

A cable between two switches is a fact of the map, not a dependency: neither switch fails because the
other did, so the type carries no impact (``none``). A host's attachment to its switch is the seeded
``connects_to`` (host -> switch, the switch's failure cuts the host off). Interfaces are structured
attributes of the device (discovery/snmp/batch.py says why), so no class is added.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
CABLED_TO = {"name": "cabled_to", "forward_label": "cabled to", "reverse_label": "cabled to",
             "impact_direction": "none", "membership": False,
             "description": "A cabled_to B (two network devices, seen by LLDP): a link, not a dependency."}


def upgrade() -> None:
    relationship_type = sa.table(
        "relationship_type",
        sa.column("name"), sa.column("forward_label"), sa.column("reverse_label"),
        sa.column("impact_direction"), sa.column("membership", sa.Boolean), sa.column("description"),
        sa.column("created_at", TS),
    )
    op.bulk_insert(relationship_type, [{**CABLED_TO, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    """Removes the type only while no relationship uses it: deleting them here would end cables without
    their change records and sightings (0006: ending a relationship is the service's job)."""
    relationship_type = sa.table("relationship_type", sa.column("name"))
    relationship = sa.table("relationship", sa.column("type"))
    in_use = op.get_bind().execute(sa.select(sa.func.count()).select_from(relationship)
                                   .where(relationship.c.type == CABLED_TO["name"])).scalar()
    if in_use:
        raise RuntimeError(f"{in_use} cabled_to relationships exist: delete them through the API before "
                           "downgrading below 0015")
    op.execute(relationship_type.delete().where(relationship_type.c.name == CABLED_TO["name"]))
