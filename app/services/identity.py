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
    for attribute, key in SECONDARY.items():
        if key in cls.single_keys and facts.get(attribute) is not None:
            pairs += identifier_values([[key]], {key: facts[attribute]})
    return pairs


def claim_identifiers(conn: Connection, ci_id: uuid.UUID, cls: ClassInfo, facts: dict[str, Any]) -> None:
    """Make the index hold exactly the identifiers `facts` give this CI.

    A strong identifier held by another CI is refused (409), unless that CI holds it as a held or
    secondary value of its own (a router took its interface MAC over from nmap's sighting of that
    interface): then it stays there, and this CI is not refused for naming it (it would 409 on every
    edit). A held one (a host's IP address) is taken over from whichever CI reported it before: the
    address moved, and the newest report is the truth; a secondary one (SECONDARY) only from a CI that
    does not name it as a strong identifier of its own (that is another machine's, or its own view).
    """
    family = cls.identity_family
    wanted = {(family, key, value) for key, value in identifier_values(cls.effective_rules, facts)}
    held = {(family, key, value) for key, value in held_values(cls, facts)} - wanted
    theirs_held, theirs_strong = _held_elsewhere(conn, ci_id, family, wanted | held)
    wanted -= theirs_held
    if wanted:
        _refuse_duplicates(conn, ci_id, family, wanted)
    held -= {triple for triple in theirs_strong if triple[1] in cls.single_keys}
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


Triples = set[tuple[str, str, str]]


def _held_elsewhere(conn: Connection, ci_id: uuid.UUID, family: str, triples: Triples) -> tuple[Triples, Triples]:
    """Of `triples` held by other CIs: those they hold as held or secondary values of their own, and
    those they name as strong identifiers (by their facts)."""
    if not triples:
        return set(), set()
    rows = conn.execute(
        select(IDENT.c.key, IDENT.c.value, CI.c.ci_class, CI.c.name, CI.c.environment, CI.c.attributes)
        .join(CI, CI.c.id == IDENT.c.ci_id)
        .where(IDENT.c.family == family, tuple_(IDENT.c.key, IDENT.c.value).in_(sorted((k, v) for _, k, v in triples)),
               IDENT.c.ci_id != ci_id)).all()
    if not rows:
        return set(), set()
    classes = load_registry(conn).classes
    held, strong = set(), set()
    for key, value, ci_class, name, environment, attributes in rows:
        other = classes.get(ci_class)
        if other is None or not isinstance(attributes, dict):
            continue
        if (key, value) in own_identifiers(other, name, environment, attributes):
            strong.add((family, key, value))
        elif (key, value) in held_values(other, attributes):
            held.add((family, key, value))
    return held, strong


def own_identifiers(cls: ClassInfo, name: str, environment: str | None, attributes: Any) -> list[tuple[str, str]]:
    """The strong identifiers a CI names by its own facts: not the rows it holds as held or secondary
    values (a router's interface MACs), which the index keeps under the same keys."""
    if not isinstance(attributes, dict):
        return []
    return identifier_values(cls.effective_rules, identifying_facts(name, environment, attributes))


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
