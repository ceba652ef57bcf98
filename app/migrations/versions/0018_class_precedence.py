"""A rule for the precedence of a CI's `class`: a person's sheet outranks nmap's OS guess.

Across the host families (`server`, `network_device`: one identity domain since 0016) a CI's class
follows the precedence of the attribute `class` (app.services.ingest.phases.class_after). Without a
rule naming it, that was the default order manual > ssh > snmp > nmap > import: a switch a CSV import
made became a `server` as soon as nmap's OS fingerprint guessed one. This writes the rule
(class: any, attribute: `class`) manual > ssh > snmp > import > nmap, where the rule for everything is
still the shipped default and no rule names `class` yet: an installation that set its own order keeps
it. It is an ordinary rule: `GET /api/v1/precedence` shows it, `PUT` replaces it. As migration 0002
wrote the default rule, it writes no change record. The downgrade removes it if it is still as written.

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
CLASS_RULE = ["manual", "ssh", "snmp", "import", "nmap"]  # app.services.ingest.reconciliation.DEFAULT_CLASS_PRECEDENCE


def _rules(bind) -> dict:
    rows = bind.execute(sa.select(RULE.c.ci_class, RULE.c.attribute, RULE.c.sources))
    return {(ci_class, attribute): list(sources or []) for ci_class, attribute, sources in rows}


def upgrade() -> None:
    bind = op.get_bind()
    rules = _rules(bind)
    if rules.get((None, None), SHIPPED_DEFAULT) == SHIPPED_DEFAULT and (None, "class") not in rules:
        bind.execute(RULE.insert(), [{"ci_class": None, "attribute": "class", "sources": CLASS_RULE}])


def downgrade() -> None:
    bind = op.get_bind()
    if _rules(bind).get((None, "class")) == CLASS_RULE:
        bind.execute(RULE.delete().where(RULE.c.ci_class.is_(None), RULE.c.attribute == "class"))
