"""Hosts are found by the reverse-DNS name nmap reports: an index of the `dns_name` attribute.

nmap's agent now reports a host's PTR name as the attribute `dns_name` instead of the identifier `fqdn`
(discovery.batch.build_scan_batch): as an identifier it made a second CI of any host or device that does
not report that name itself. app.services.alert_binding finds hosts by it (an alert's `instance`, a
service map's entry point), exactly and as a short hostname's prefix (`web-1` -> `web-1.example.com`), so
it is indexed, lower-cased, only where present:

- PostgreSQL: ix_ci_dns_name on lower(attributes ->> 'dns_name') text_pattern_ops (a prefix is a range
  whatever the collation), WHERE it is not null; the model declares it too (app.models.ci).
- SQLite: ix_ci_dns_name on lower(json_extract(attributes, '$.dns_name')), WHERE it is not null.

Existing data is left as it is. A CI an older agent made of a PTR name keeps that name as its `fqdn`
identifier; nmap's next report finds it, as before, by its address or MAC. Where the host's own CI (SSH,
SNMP) holds the address, nmap's sightings go to that CI from now on, and the PTR-named twin, confirmed by
no source, goes stale as the staleness settings say. Nothing is merged: which twin is a person's, or
carries a person's edits, is not known here.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# app.models.ci's expressions, written out: a migration stays as it ran.
DNS_NAME_PG = "lower(attributes ->> 'dns_name'::text)"
DNS_NAME_SQLITE = "lower(json_extract(attributes, '$.dns_name'))"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_ci_dns_name ON ci (({DNS_NAME_PG}) text_pattern_ops) "
                   f"WHERE {DNS_NAME_PG} IS NOT NULL")
    else:
        op.execute(f"CREATE INDEX ix_ci_dns_name ON ci ({DNS_NAME_SQLITE}) WHERE {DNS_NAME_SQLITE} IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX ix_ci_dns_name")
