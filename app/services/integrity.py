"""References the database no longer checks, checked on demand (`karta db check`).

Migrations 0004 and 0006 dropped the foreign keys that cost ingest most of its database time; the
service keeps what they guaranteed (those migrations say how). This finds the rows that would point
at nothing, should a code path ever break those rules or someone edit the tables by hand, and
repairs them the way the service would have: a relationship whose end or type is gone is ended,
with its change record; identifiers and sightings of what is gone are deleted.
"""

from dataclasses import dataclass

from sqlalchemy import Connection, delete, exists, not_, or_, select

from app.models import CIIdentifier, CISource, ConfigurationItem, Relationship, RelationshipSource, RelationshipType
from app.services.history import UnitOfWork
from app.services.relationships import REL_COLUMNS, end_relationships

CI = ConfigurationItem.__table__
REL = Relationship.__table__
REL_TYPE = RelationshipType.__table__
REL_SOURCE = RelationshipSource.__table__
IDENT = CIIdentifier.__table__
CI_SOURCE = CISource.__table__
SAMPLE = 5


def _missing_ci(column):
    return not_(exists(select(CI.c.id).where(CI.c.id == column)))


@dataclass(frozen=True, eq=False)  # compared by identity: its fields are SQL expressions
class Check:
    name: str
    what: str  # "N <what>"
    table: object
    key: object  # the column that names a dangling row in the report
    dangling: object  # the condition a dangling row meets


CHECKS = [
    Check("relationship_ends", "relationships whose source or target CI does not exist", REL, REL.c.id,
          or_(_missing_ci(REL.c.source_id), _missing_ci(REL.c.target_id))),
    Check("relationship_types", "relationships of a type that does not exist", REL, REL.c.id,
          not_(exists(select(REL_TYPE.c.name).where(REL_TYPE.c.name == REL.c.type)))),
    Check("relationship_sightings", "relationship sightings of relationships that do not exist", REL_SOURCE,
          REL_SOURCE.c.relationship_id, not_(exists(select(REL.c.id).where(REL.c.id == REL_SOURCE.c.relationship_id)))),
    Check("identifiers", "identifier index entries of CIs that do not exist", IDENT, IDENT.c.ci_id,
          _missing_ci(IDENT.c.ci_id)),
    Check("ci_sightings", "CI sightings of CIs that do not exist", CI_SOURCE, CI_SOURCE.c.ci_id,
          _missing_ci(CI_SOURCE.c.ci_id)),
]
_RELATIONSHIP_CHECKS = [check for check in CHECKS if check.table is REL]


@dataclass
class Finding:
    check: Check
    count: int
    sample: list[str]  # a few of the dangling rows' keys, to look at

    def __str__(self) -> str:
        return f"{self.count} {self.check.what} (e.g. {', '.join(self.sample)})"


def find_dangling(conn: Connection) -> list[Finding]:
    """Every check that finds rows pointing at nothing, with how many and a few of them."""
    findings = []
    for check in CHECKS:
        keys = conn.execute(select(check.key).where(check.dangling).order_by(check.key)).scalars().all()
        if keys:
            findings.append(Finding(check, len(keys), [str(key) for key in dict.fromkeys(keys)][:SAMPLE]))
    return findings


def repair(uow: UnitOfWork) -> list[Finding]:
    """Repair what find_dangling finds, in one transaction; returns what was found."""
    conn = uow.conn
    findings = find_dangling(conn)
    broken = {f.check.name for f in findings}
    if broken & {check.name for check in _RELATIONSHIP_CHECKS}:
        ending = conn.execute(select(*REL_COLUMNS).where(or_(*(check.dangling for check in _RELATIONSHIP_CHECKS)))
                              .order_by(REL.c.id)).mappings().all()
        end_relationships(uow, ending)  # with their sightings, each recorded in history
    for check in CHECKS:
        if check.name in broken and check not in _RELATIONSHIP_CHECKS:
            conn.execute(delete(check.table).where(check.dangling))
    return findings
