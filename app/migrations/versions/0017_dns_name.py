"""Hosts are found by the reverse-DNS name nmap reports: an index of the `dns_name` attribute.

nmap's agent now reports a host's PTR name as the attribute `dns_name` instead of the identifier `fqdn`
(discovery.batch.build_scan_batch): as an identifier it made a second CI of any host or device that does
not report that name itself. app.services.alert_binding finds hosts by it (an alert's `instance`, a
service map's entry point), exactly and as a short hostname's prefix (`web-1` -> `web-1.example.com`), so
it is indexed, lower-cased, only where present:

- PostgreSQL: ix_ci_dns_name on lower(attributes ->> 'dns_name') text_pattern_ops (a prefix is a range
  whatever the collation), WHERE it is not null; the model declares it too (app.models.ci).
- SQLite: ix_ci_dns_name on lower(json_extract(attributes, '$.dns_name')), WHERE it is not null.

The PTR names older agents sent as an fqdn are forgotten where nothing but nmap ever wrote the CI: its
`fqdn` attribute and identifier row go (a change record by `migration 0017`, the version bumped, its
sightings' fingerprints cleared so that nmap's next report is applied whole and puts the name on the
address as `dns_name`). Left with them, such a CI stayed "another machine" to the host SSH or SNMP later
reports at its address (identification rule 4), and the bug this fixes outlived the upgrade. A CI any
other source or a person wrote keeps its fqdn (an imported fqdn nmap's same PTR name restamped looks
like nmap's alone otherwise). Nothing is merged: a PTR-named CI made beside a host's own goes stale once
nmap's sightings go to the host holding the address. The downgrade drops the index and gives no fqdn back.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# app.models.ci's expressions, written out: a migration stays as it ran.
DNS_NAME_PG = "lower(attributes ->> 'dns_name'::text)"
DNS_NAME_PG_WHERE = "length(attributes ->> 'dns_name'::text) <= 253"
DNS_NAME_SQLITE = "lower(json_extract(attributes, '$.dns_name'))"
DNS_NAME_SQLITE_WHERE = "length(json_extract(attributes, '$.dns_name')) <= 253"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_ci_dns_name ON ci (({DNS_NAME_PG}) text_pattern_ops) WHERE {DNS_NAME_PG_WHERE}")
    else:
        op.execute(f"CREATE INDEX ix_ci_dns_name ON ci ({DNS_NAME_SQLITE}) WHERE {DNS_NAME_SQLITE_WHERE}")
    _forget_nmaps_ptr_fqdns(op.get_bind())


JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
ACTOR = "migration 0017"
NMAP, MIGRATIONS = "nmap", {"migration 0016"}  # 0016 stamped some classes with a stamp of no source
HOSTS = "server"  # the hosts' identity family (migration 0016)
CHUNK = 500
IDENT = sa.table("ci_identifier", sa.column("family"), sa.column("key"), sa.column("value"),
                 sa.column("ci_id", sa.Uuid))
CI = sa.table("ci", sa.column("id", sa.Uuid), sa.column("attributes", JSON), sa.column("provenance", JSON),
              sa.column("version", sa.Integer), sa.column("updated_at", TS))
SOURCE = sa.table("ci_source", sa.column("ci_id", sa.Uuid), sa.column("source"), sa.column("fingerprint"))
CHANGE = sa.table("change_record", sa.column("at", TS), sa.column("actor"), sa.column("object_type"),
                  sa.column("object_id", sa.Uuid), sa.column("action"), sa.column("diff", JSON))


def _forget_nmaps_ptr_fqdns(bind) -> None:
    now = datetime.now(UTC)
    ids = sorted(set(bind.execute(sa.select(IDENT.c.ci_id).where(IDENT.c.family == HOSTS, IDENT.c.key == "fqdn"))
                     .scalars()))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        rows = bind.execute(sa.select(CI.c.id, CI.c.attributes, CI.c.provenance, CI.c.version)
                            .where(CI.c.id.in_(chunk))).all()
        sighted: dict = {}
        for ci_id, source in bind.execute(sa.select(SOURCE.c.ci_id, SOURCE.c.source).where(SOURCE.c.ci_id.in_(chunk))):
            sighted.setdefault(ci_id, set()).add(source)
        for ci_id, attributes, provenance, version in rows:
            provenance = dict(provenance or {})
            # Every source that ever reported it (a sheet nmap's same PTR name restamped is still seen)
            # and every stamp (a person's edit): nmap's alone.
            sources = {stamp.get("source") for stamp in provenance.values() if isinstance(stamp, dict)}
            sources |= sighted.get(ci_id, set())
            if sources - MIGRATIONS != {NMAP} or not isinstance(provenance.get("fqdn"), dict):
                continue
            attributes = dict(attributes or {})
            old = attributes.pop("fqdn", None)
            provenance.pop("fqdn", None)
            bind.execute(IDENT.delete().where(IDENT.c.ci_id == ci_id, IDENT.c.family == HOSTS, IDENT.c.key == "fqdn"))
            bind.execute(CI.update().where(CI.c.id == ci_id).values(
                attributes=attributes, provenance=provenance, version=(version or 0) + 1, updated_at=now))
            bind.execute(SOURCE.update().where(SOURCE.c.ci_id == ci_id).values(fingerprint=None))
            bind.execute(CHANGE.insert(), [{"at": now, "actor": ACTOR, "object_type": "ci", "object_id": ci_id,
                                            "action": "update", "diff": {"attributes.fqdn": [old, None]}}])


def downgrade() -> None:
    op.execute("DROP INDEX ix_ci_dns_name")
