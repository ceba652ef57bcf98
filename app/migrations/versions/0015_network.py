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


def _table():
    return sa.table(
        "relationship_type",
        sa.column("name"), sa.column("forward_label"), sa.column("reverse_label"),
        sa.column("impact_direction"), sa.column("membership", sa.Boolean), sa.column("description"),
        sa.column("created_at", TS),
    )


def upgrade() -> None:
    """Adds the type unless an admin already made one (POST /api/v1/relationship-types). Theirs is kept,
    labels and description included, when it carries no impact; one that does is refused rather than
    adopted: SNMP discovery draws a cabled_to for every LLDP link, and an impact along them would make
    every switch's failure take down its neighbours in impact analysis, silently."""
    relationship_type = _table()
    bind = op.get_bind()
    existing = bind.execute(sa.select(relationship_type.c.impact_direction)
                            .where(relationship_type.c.name == CABLED_TO["name"])).first()
    if existing is None:
        op.bulk_insert(relationship_type, [{**CABLED_TO, "created_at": datetime.now(UTC)}])
    elif existing[0] != CABLED_TO["impact_direction"]:
        raise RuntimeError(
            f"relationship type cabled_to exists with impact_direction {existing[0]!r}; network discovery "
            "needs 'none' (a cable is no dependency). The API cannot change a type: set its impact_direction "
            "to 'none' in the database (or remove it, with its relationships) before upgrading to 0015")


def downgrade() -> None:
    """Removes the type only while no relationship uses it: deleting them here would end cables without
    their change records and sightings (0006: ending a relationship is the service's job). A cabled_to
    an admin made before 0015 (other labels or description) is theirs, and stays."""
    relationship_type = _table()
    relationship = sa.table("relationship", sa.column("type"))
    in_use = op.get_bind().execute(sa.select(sa.func.count()).select_from(relationship)
                                   .where(relationship.c.type == CABLED_TO["name"])).scalar()
    if in_use:
        raise RuntimeError(f"{in_use} cabled_to relationships exist: delete them through the API before "
                           "downgrading below 0015")
    ours = [getattr(relationship_type.c, key) == value for key, value in CABLED_TO.items() if key != "membership"]
    op.execute(relationship_type.delete().where(*ours))
