"""Claiming identifiers for a CI in the identifier index, with duplicates refused by name.

Rows are claimed under the class's identity family (app.services.registry: `server` and
`network_device` share one), so a value one of them holds is found whichever class a source reports.

Secondary identifiers (`SECONDARY`): a MAC a machine carries besides the ones that identify it (a
router's interface MAC, which nmap on that segment sees instead of the chassis MAC) is reported in an
attribute of its own (`interface_mac`) and indexed under the key it is known by elsewhere
(`mac_address`) as a *held* identifier: the machine reporting it takes the row over from whichever CI
had it (nmap's sighting of that interface), it never makes two CIs a conflict.
"""

import uuid
from typing import Any

from sqlalchemy import Connection, delete, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from app.models import CIIdentifier, ConfigurationItem
from app.services.errors import Conflict
from app.services.identifiers import identifier_values
from app.services.registry import ClassInfo, load_registry
from app.services.sightings import forget_fingerprints

IDENT = CIIdentifier.__table__
CI = ConfigurationItem.__table__


def identifying_facts(name: str, environment: str | None, attributes: dict[str, Any]) -> dict[str, Any]:
    """What identification rules may read: the attributes, plus the CI's name and environment."""
    return {**attributes, "name": name, "environment": environment}


# attribute -> the identifier key its values are indexed (and looked up) under, as held identifiers
SECONDARY = {"interface_mac": "mac_address"}


def held_values(cls: ClassInfo, facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The class's held identifiers (a host's addresses), and its secondary ones (SECONDARY) when the
    class is identified by the key they are indexed under."""
    pairs = identifier_values([[key] for key in cls.effective_held], facts)
    strong_keys = {rule[0] for rule in cls.effective_rules if len(rule) == 1}
    for attribute, key in SECONDARY.items():
        if key in strong_keys and facts.get(attribute) is not None:
            pairs += identifier_values([[key]], {key: facts[attribute]})
    return pairs


def claim_identifiers(conn: Connection, ci_id: uuid.UUID, cls: ClassInfo, facts: dict[str, Any]) -> None:
    """Make the index hold exactly the identifiers `facts` give this CI.

    A strong identifier held by another CI is refused (409). A held one (a host's IP address) is taken
    over from whichever CI reported it before: the address moved, and the newest report is the truth.
    """
    family = cls.identity_family
    wanted = {(family, key, value) for key, value in identifier_values(cls.effective_rules, facts)}
    wanted -= _held_elsewhere(conn, ci_id, family, wanted)
    if wanted:
        _refuse_duplicates(conn, ci_id, family, wanted)
    held = {(family, key, value) for key, value in held_values(cls, facts)} - wanted
    if held:
        losers = conn.execute(delete(IDENT).where(
            tuple_(IDENT.c.family, IDENT.c.key, IDENT.c.value).in_(sorted(held)), IDENT.c.ci_id != ci_id)
            .returning(IDENT.c.ci_id)).scalars().all()
        forget_fingerprints(conn, losers)
        wanted |= held
    current = {tuple(row) for row in conn.execute(
        select(IDENT.c.family, IDENT.c.key, IDENT.c.value).where(IDENT.c.ci_id == ci_id)
    )}
    stale = current - wanted
    if stale:
        conn.execute(
            delete(IDENT).where(IDENT.c.ci_id == ci_id, tuple_(IDENT.c.family, IDENT.c.key, IDENT.c.value).in_(sorted(stale)))
        )
    missing = wanted - current
    if not missing:
        return
    rows = [{"family": f, "key": k, "value": v, "ci_id": ci_id} for f, k, v in sorted(missing)]
    try:
        with conn.begin_nested():
            conn.execute(insert(IDENT), rows)
    except IntegrityError:
        # Another transaction claimed one of them after our check: name it like any duplicate.
        _refuse_duplicates(conn, ci_id, family, missing)
        raise


def _held_elsewhere(conn: Connection, ci_id: uuid.UUID, family: str, wanted: set[tuple[str, str, str]]
                    ) -> set[tuple[str, str, str]]:
    """Those of `wanted` that another CI holds as a held or secondary value of its own (a router took
    its interface MAC over from nmap's sighting of that interface): they stay with it, and this CI,
    which also names them as strong, is not refused for it (it would 409 on every edit)."""
    if not wanted:
        return set()
    rows = conn.execute(
        select(IDENT.c.key, IDENT.c.value, CI.c.ci_class, CI.c.name, CI.c.environment, CI.c.attributes)
        .join(CI, CI.c.id == IDENT.c.ci_id)
        .where(IDENT.c.family == family, tuple_(IDENT.c.key, IDENT.c.value).in_(sorted((k, v) for _, k, v in wanted)),
               IDENT.c.ci_id != ci_id)).all()
    if not rows:
        return set()
    classes = load_registry(conn).classes
    kept = set()
    for key, value, ci_class, name, environment, attributes in rows:
        other = classes.get(ci_class)
        if other is None or not isinstance(attributes, dict):
            continue
        facts = identifying_facts(name, environment, attributes)
        if (key, value) in held_values(other, attributes) and \
                (key, value) not in identifier_values(other.effective_rules, facts):
            kept.add((family, key, value))
    return kept


def _refuse_duplicates(conn: Connection, ci_id: uuid.UUID, family: str, wanted: set[tuple[str, str, str]]) -> None:
    pairs = [(key, value) for _, key, value in wanted]
    holders = conn.execute(
        select(IDENT.c.key, IDENT.c.value, IDENT.c.ci_id, CI.c.name, CI.c.ci_class)
        .join(CI, CI.c.id == IDENT.c.ci_id)
        .where(IDENT.c.family == family, tuple_(IDENT.c.key, IDENT.c.value).in_(pairs), IDENT.c.ci_id != ci_id)
        .order_by(IDENT.c.key, IDENT.c.value)
    ).all()
    if not holders:
        return
    duplicates = [
        {"identifier": key, "value": value, "existing_ci": str(other), "existing_name": name, "existing_class": cls}
        for key, value, other, name, cls in holders
    ]
    first = duplicates[0]
    raise Conflict(
        f"Duplicate identifier: {first['identifier']} '{first['value']}' already identifies CI "
        f"{first['existing_ci']} ('{first['existing_name']}', {first['existing_class']}). "
        "Update that CI instead of creating another.",
        existing_ci=first["existing_ci"],
        duplicates=duplicates,
    )
