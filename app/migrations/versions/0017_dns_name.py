"""Hosts are found by the reverse-DNS name nmap reports: an index of the `dns_name` attribute.

nmap's agent now reports an address's PTR name as the `dns_name` attribute of the ip_address item
instead of the host's identifier `fqdn` (discovery.batch.build_scan_batch): as an identifier it made a
second CI of any host or device that does not report that name itself. app.services.alert_binding finds
the hosts holding such addresses by it (an alert's `instance`, a service map's entry point), exactly and
as a short hostname's prefix (`web-1` -> `web-1.example.com`), so it is indexed, lower-cased, only where
it is present and can be a DNS name (253 characters at most: a longer one would not fit a btree entry):

- PostgreSQL: ix_ci_dns_name on lower(attributes ->> 'dns_name') text_pattern_ops (a prefix is a range
  whatever the collation); the model declares it too (app.models.ci).
- SQLite: ix_ci_dns_name on lower(json_extract(attributes, '$.dns_name')).

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
    """Page through the hosts' fqdn rows in the primary key's order (memory bounded by CHUNK whatever the
    estate), read only the CIs whose fqdn nmap stamped, and write each page's changes in a few statements
    (a few per CI cost 337 s for 20,000 such CIs on a loaded PostgreSQL, these 16.5 s:
    bench/dns_name_migration_bench.py, BENCHMARKS.md)."""
    now = datetime.now(UTC)
    last = None
    for _ in range(10_000_000 // CHUNK + 1):  # bounded: a page per CHUNK rows of at most 10M hosts' fqdns
        page = sa.select(IDENT.c.value, IDENT.c.ci_id).where(IDENT.c.family == HOSTS, IDENT.c.key == "fqdn")
        if last is not None:
            page = page.where(IDENT.c.value > last)
        rows = bind.execute(page.order_by(IDENT.c.value).limit(CHUNK)).all()
        if not rows:
            return
        last = rows[-1][0]
        chunk = sorted({ci_id for _, ci_id in rows})
        owned = bind.execute(sa.select(CI.c.id, CI.c.attributes, CI.c.provenance, CI.c.version).where(
            CI.c.id.in_(chunk), CI.c.provenance["fqdn"]["source"].as_string() == NMAP)).all()
        if not owned:
            continue
        sighted: dict = {}
        for ci_id, source in bind.execute(sa.select(SOURCE.c.ci_id, SOURCE.c.source).where(
                SOURCE.c.ci_id.in_([row[0] for row in owned]))):
            sighted.setdefault(ci_id, set()).add(source)
        updates, changes = [], []
        for ci_id, attributes, provenance, version in owned:
            provenance = dict(provenance or {})
            # Every source that ever reported it (a sheet nmap's same PTR name restamped is still seen)
            # and every stamp (a person's edit): nmap's alone.
            sources = {stamp.get("source") for stamp in provenance.values() if isinstance(stamp, dict)}
            if (sources | sighted.get(ci_id, set())) - MIGRATIONS != {NMAP}:
                continue
            attributes = dict(attributes or {})
            old = attributes.pop("fqdn", None)
            provenance.pop("fqdn", None)
            updates.append({"b_id": ci_id, "b_attributes": attributes, "b_provenance": provenance,
                            "b_version": (version or 0) + 1})
            changes.append({"at": now, "actor": ACTOR, "object_type": "ci", "object_id": ci_id, "action": "update",
                            "diff": {"attributes.fqdn": [old, None]}})
        if not updates:
            continue
        ids = [row["b_id"] for row in updates]
        bind.execute(IDENT.delete().where(IDENT.c.ci_id.in_(ids), IDENT.c.family == HOSTS, IDENT.c.key == "fqdn"))
        bind.execute(CI.update().where(CI.c.id == sa.bindparam("b_id")).values(
            attributes=sa.bindparam("b_attributes"), provenance=sa.bindparam("b_provenance"),
            version=sa.bindparam("b_version"), updated_at=now), updates)
        bind.execute(SOURCE.update().where(SOURCE.c.ci_id.in_(ids)).values(fingerprint=None))
        bind.execute(CHANGE.insert(), changes)
    raise RuntimeError("migration 0017: more host fqdns than it pages through (10,000,000)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_ci_dns_name")
