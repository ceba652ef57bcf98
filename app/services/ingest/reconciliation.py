"""Reconciliation: which source's value an attribute keeps.

Every attribute (and the CI's name) remembers which source set it and when (its provenance). A
precedence list, highest first, decides between sources; the default is
manual > ssh > snmp > nmap > import (and a rule for a CI's `class` across the host families, manual >
ssh > snmp > import > nmap, migration 0018: a person's sheet outranks nmap's OS guess), and rules can
name a class and/or an attribute to differ (the most specific rule wins; a class rule applies to its
subclasses). A source not in the list ranks below every source in it.

- A value that is missing or null is filled by any source.
- A source ranked equal to or above the one that set the current value overwrites it.
- A source ranked below never overwrites it (its report is ignored for that attribute).
- An attribute a source does not report is left as it is: no source deletes another's data.
Edits through the CI API are the source `manual`.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.services.registry import ClassInfo

DEFAULT_PRECEDENCE = ("manual", "ssh", "snmp", "nmap", "import")
NAME_FIELD = "name"


@dataclass(frozen=True)
class PrecedenceTable:
    rules: dict[tuple[str | None, str | None], tuple[str, ...]]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str | None, str | None, list[str]]]) -> "PrecedenceTable":
        rules = {(ci_class, attribute): tuple(sources) for ci_class, attribute, sources in rows}
        rules.setdefault((None, None), DEFAULT_PRECEDENCE)
        return cls(rules)

    def order(self, ci_class: ClassInfo, attribute: str) -> tuple[str, ...]:
        for name in ci_class.ancestors:
            if (name, attribute) in self.rules:
                return self.rules[(name, attribute)]
        if (None, attribute) in self.rules:
            return self.rules[(None, attribute)]
        for name in ci_class.ancestors:
            if (name, None) in self.rules:
                return self.rules[(name, None)]
        return self.rules[(None, None)]

    def may_overwrite(self, ci_class: ClassInfo, attribute: str, incoming: str, current: str | None) -> bool:
        if current is None or incoming == current:
            return True
        order = self.order(ci_class, attribute)
        unranked = len(order)
        rank = {source: position for position, source in enumerate(order)}
        return rank.get(incoming, unranked) <= rank.get(current, unranked)


@dataclass
class Merge:
    name: str
    attributes: dict[str, Any]
    provenance: dict[str, Any]
    diff: dict[str, list[Any]]  # {field: [old, new]} for the change record
    provenance_changed: bool


def merge(
    table: PrecedenceTable,
    ci_class: ClassInfo,
    source: str,
    at: datetime,
    current_name: str,
    current_attributes: dict[str, Any],
    provenance: dict[str, Any],
    reported_name: str,
    reported: dict[str, Any],
) -> Merge:
    stamp = {"source": source, "at": at.isoformat()}
    attributes = dict(current_attributes)
    new_provenance = dict(provenance)
    diff: dict[str, list[Any]] = {}
    provenance_changed = False

    def owner(field: str) -> str | None:
        entry = provenance.get(field)
        return entry.get("source") if isinstance(entry, dict) else None

    name = current_name
    if reported_name != current_name and table.may_overwrite(ci_class, NAME_FIELD, source, owner(NAME_FIELD)):
        diff[NAME_FIELD] = [current_name, reported_name]
        name = reported_name
        new_provenance[NAME_FIELD] = stamp
        provenance_changed = True
    for key, value in reported.items():
        if value is None:
            continue
        old = attributes.get(key)
        if old is None or table.may_overwrite(ci_class, key, source, owner(key)):
            if old != value:
                diff[f"attributes.{key}"] = [old, value]
                attributes[key] = value
            # A changed value is stamped with its setter and now, even when that source set the old one.
            if old != value or (owner(key) != source and _outranks(table, ci_class, key, source, owner(key))):
                new_provenance[key] = stamp
                provenance_changed = True
    return Merge(name, attributes, new_provenance, dict(sorted(diff.items())), provenance_changed)


def _outranks(table: PrecedenceTable, ci_class: ClassInfo, key: str, source: str, current: str | None) -> bool:
    """True when `source` strictly outranks `current`: it takes ownership of a value it agrees with."""
    return current is not None and not table.may_overwrite(ci_class, key, current, source)
