"""A rule for the precedence of a CI's `class`: a person's sheet outranks nmap's OS guess.

Across the host families (`server`, `network_device`: one identity domain since 0016) a CI's class
follows the precedence of the attribute `class` (app.services.ingest.phases.class_after). Without a
rule naming it, that was the default order manual > ssh > snmp > nmap > import: a switch a CSV import
made became a `server` as soon as nmap's OS fingerprint guessed one. This writes the rule
(class: any, attribute: `class`) manual > ssh > snmp > import > nmap only where the rules are still
the shipped ones (the default rule alone, or none): an installation that set any rule of its own keeps
its rules as they are (a rule naming `class` would outrank its class rules, `(network_device, *)`). It
is an ordinary rule: `GET /api/v1/precedence` shows it, `PUT` replaces it. As migration 0002 wrote the
default rule, it writes no change record. The downgrade removes it if it is still as written.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
RULE = sa.table("precedence_rule", sa.column("ci_class"), sa.column("attribute"), sa.column("sources", JSON))
SHIPPED_DEFAULT = ["manual", "ssh", "snmp", "nmap", "import"]  # migration 0002's rule for everything
CLASS_RULE = ["manual", "ssh", "snmp", "import", "nmap"]  # SSH's and SNMP's evidence > a sheet > nmap's guess


def _rules(bind) -> dict:
    rows = bind.execute(sa.select(RULE.c.ci_class, RULE.c.attribute, RULE.c.sources))
    return {(ci_class, attribute): list(sources or []) for ci_class, attribute, sources in rows}


def upgrade() -> None:
    bind = op.get_bind()
    rules = _rules(bind)
    # Only over the shipped rules: a rule for a class ((network_device, *)) is outranked by a rule
    # naming the attribute (app.services.ingest.reconciliation.PrecedenceTable.order), so writing this
    # beside an admin's rules would change what they decided.
    if all(key == (None, None) and sources == SHIPPED_DEFAULT for key, sources in rules.items()):
        bind.execute(RULE.insert(), [{"ci_class": None, "attribute": "class", "sources": CLASS_RULE}])


def downgrade() -> None:
    bind = op.get_bind()
    if _rules(bind).get((None, "class")) == CLASS_RULE:
        bind.execute(RULE.delete().where(RULE.c.ci_class.is_(None), RULE.c.attribute == "class"))
