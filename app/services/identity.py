"""Claiming identifiers for a CI in the identifier index, with duplicates refused by name."""

import uuid
from typing import Any

from sqlalchemy import Connection, delete, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from app.models import CIIdentifier, ConfigurationItem
from app.services.errors import Conflict
from app.services.identifiers import identifier_values
from app.services.registry import ClassInfo
from app.services.sightings import forget_fingerprints

IDENT = CIIdentifier.__table__
CI = ConfigurationItem.__table__


def identifying_facts(name: str, environment: str | None, attributes: dict[str, Any]) -> dict[str, Any]:
    """What identification rules may read: the attributes, plus the CI's name and environment."""
    return {**attributes, "name": name, "environment": environment}


def held_values(cls: ClassInfo, facts: dict[str, Any]) -> list[tuple[str, str]]:
    return identifier_values([[key] for key in cls.effective_held], facts)


def claim_identifiers(conn: Connection, ci_id: uuid.UUID, cls: ClassInfo, facts: dict[str, Any]) -> None:
    """Make the index hold exactly the identifiers `facts` give this CI.

    A strong identifier held by another CI is refused (409). A held one (a host's IP address) is taken
    over from whichever CI reported it before: the address moved, and the newest report is the truth.
    """
    wanted = {(cls.family, key, value) for key, value in identifier_values(cls.effective_rules, facts)}
    if wanted:
        _refuse_duplicates(conn, ci_id, cls.family, wanted)
    held = {(cls.family, key, value) for key, value in held_values(cls, facts)} - wanted
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
        _refuse_duplicates(conn, ci_id, cls.family, missing)
        raise


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
