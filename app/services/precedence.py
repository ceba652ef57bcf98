"""Source precedence rules: which source's value wins, per class and attribute (admin only).

The rules are replaced as one set and recorded as one object in the change feed (object type
`precedence`, id app.services.registry_ids.PRECEDENCE_ID), with the whole set before and after.
"""

from typing import Any

from sqlalchemy import Connection, delete, insert, select

from app.models import PrecedenceRule
from app.models.ingest import PrecedenceRuleModel
from app.services.errors import InvalidInput, field_error
from app.services.history import UnitOfWork
from app.services.registry import Registry, load_registry
from app.services.registry_ids import PRECEDENCE_ID
from app.services.storable import require_storable

PRECEDENCE = PrecedenceRule.__table__


def list_rules(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(PRECEDENCE).order_by(PRECEDENCE.c.id)).mappings().all()
    return [{"class": r["ci_class"], "attribute": r["attribute"], "sources": r["sources"]} for r in rows]


def _check(rules: list[PrecedenceRuleModel], registry: Registry) -> None:
    require_storable([rule.model_dump() for rule in rules], "body")
    seen = set()
    for position, rule in enumerate(rules):
        if rule.ci_class is not None and rule.ci_class not in registry.classes:
            raise InvalidInput(f"Rule {position} names class '{rule.ci_class}', which does not exist.",
                               [field_error(f"{position}.class", "unknown class")])
        if (rule.ci_class, rule.attribute) in seen:
            raise InvalidInput("Two rules for the same class and attribute.", [field_error(str(position), "duplicate")])
        seen.add((rule.ci_class, rule.attribute))
        repeated = sorted({source for source in rule.sources if rule.sources.count(source) > 1})
        if repeated:
            raise InvalidInput(f"Rule {position} names source '{repeated[0]}' twice: its place would be ambiguous.",
                               [field_error(f"{position}.sources", f"'{repeated[0]}' appears twice")])


def replace_rules(uow: UnitOfWork, rules: list[PrecedenceRuleModel]) -> list[dict[str, Any]]:
    """Replace every rule; one change record holds the set before and after."""
    _check(rules, load_registry(uow.conn))  # not the worker's cache: a class another worker just made counts
    before = list_rules(uow.conn)
    uow.conn.execute(delete(PRECEDENCE))
    if rules:
        uow.conn.execute(insert(PRECEDENCE), [{"ci_class": r.ci_class, "attribute": r.attribute, "sources": r.sources}
                                              for r in rules])
    after = [{"class": r.ci_class, "attribute": r.attribute, "sources": r.sources} for r in rules]
    if after != before:
        uow.record("precedence", PRECEDENCE_ID, "update", {"rules": [before, after]})
    return after
