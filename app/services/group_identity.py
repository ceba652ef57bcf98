"""What identifies a redundancy group Karta made (app.services.redundancy), and the rule that no other
writer changes it.

Karta finds each group it made by what only it writes: its sighting by the source `service_mapping`
and its `cluster_id` "karta-redundancy:<dependent id>:<digest of the instances' class, kind and
port>", on a CI of the cluster family. A write that changed that cluster_id, removed it, or moved the
CI out of the cluster family would orphan the group: Karta would no longer find it, would make
another beside it at its next pass, and the edited one would stay, holding Karta's memberships that
nobody keeps in step any more. So such a write is refused, whichever path makes it, with the reason
and what to do instead:

  - the CI API (PATCH /api/v1/cis/{id}) and the web UI's edit form: app.services.cis.update_ci, a
    422 naming `attributes.cluster_id` (or `class`);
  - ingest and the CI import (POST /api/v1/import), which run ingest's phases: the reconcile phase
    (app.services.ingest.phases) reports the item, or the import's row, as an error naming the
    attribute (the import's column), and applies nothing of it. Ingest never removes an attribute.

Refused rather than taken as the person taking the group over: Karta's group stays Karta's whatever
else a person sets on it (a raised min_members is kept while Karta keeps the members in step; a group
a person edited is kept, empty, when it no longer holds), and a group of one's own is a cluster one
creates, which Karta never replaces or joins and which retires Karta's group for those instances
(README, Redundancy inferred). A field edit that silently handed the group over would stop Karta
keeping its members, unannounced, and a spreadsheet or a discovery source could do it by accident.
"""

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from app.models.discovery import CISource
from app.models.service_map import MAPPING_SOURCE
from app.services.bulk import id_in
from app.services.errors import InvalidInput, field_error

CI_SOURCE = CISource.__table__
PREFIX = "karta-redundancy:"
KEY = "cluster_id"
REASON = (f"this redundancy group is Karta's and Karta finds it by its {KEY}; create a cluster of your own "
          "to group these instances yourself (Karta then retires its group)")


def in_karta_form(attributes: Any) -> bool:
    """Whether these attributes carry a cluster_id of Karta's form (not yet whether Karta made the CI)."""
    value = attributes.get(KEY) if isinstance(attributes, dict) else None
    return isinstance(value, str) and value.startswith(PREFIX)


def karta_owned(conn: Connection, ci_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of these CIs that Karta made (sighted by source `service_mapping`)."""
    ids = list(ci_ids)
    if not ids:
        return set()
    return set(conn.execute(select(CI_SOURCE.c.ci_id).where(CI_SOURCE.c.source == MAPPING_SOURCE,
                                                            id_in(conn, CI_SOURCE.c.ci_id, ids))).scalars())


def karta_groups(conn: Connection, rows: Mapping[uuid.UUID, Any]) -> set[uuid.UUID]:
    """Those of these CIs (id -> row with its `attributes`) that are groups Karta made. No query at all
    unless one's cluster_id is of Karta's form: a batch of hosts and applications costs nothing."""
    return karta_owned(conn, [ci_id for ci_id, row in rows.items() if in_karta_form(row["attributes"])])


def identity_errors(before: dict[str, Any], after: dict[str, Any], *, family_changed: bool = False
                    ) -> list[dict[str, str]]:
    """For one of Karta's groups: what a write would change of what Karta finds it by (its attributes
    before and after; whether its class leaves the cluster family)."""
    errors = []
    if after.get(KEY) != before.get(KEY):
        errors.append(field_error(f"attributes.{KEY}", f"cannot be changed or removed: {REASON}"))
    if family_changed:
        errors.append(field_error("class", f"cannot leave the cluster family: {REASON}"))
    return errors


def refuse_identity_change(conn: Connection, row: Any, after: dict[str, Any], *, family_changed: bool) -> None:
    """422 when `row` (a CI as stored) is one of Karta's groups and the write (its attributes after it)
    would change what Karta finds it by. One query, and only for a write that would."""
    if not in_karta_form(row["attributes"]):
        return
    errors = identity_errors(row["attributes"], after, family_changed=family_changed)
    if errors and karta_owned(conn, [row["id"]]):
        raise InvalidInput(f"CI {row['id']} is a redundancy group Karta made and keeps in step with the instances "
                           f"it groups; Karta finds it by its {KEY} ({row['attributes'][KEY]}), so that stays as "
                           "Karta wrote it. Its name, min_members and the rest are yours to set. To group these "
                           "instances yourself, create a cluster of your own, make its members and the dependent "
                           "relate to it: Karta then infers nothing for them and retires its group.", errors)
