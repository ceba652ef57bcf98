"""Identification: which existing CI, if any, each reported item is.

The rules, in the order they apply:

1. An item's identifiers are read through its class family's identification rules (strongest first:
   for hosts serial number, product UUID, machine-id, fqdn, MAC) after normalization; junk values
   ("Default string", zero UUIDs and MACs, loopback and link-local addresses, "localhost") are dropped
   and identify nothing. An item left with no usable identifier is an error for that item. They are
   looked up in the class's identity family: a `server` and a `network_device` are one namespace.
2. Items of one batch that share a strong identifier are one machine: they become one CI.
3. The identifier index is asked once for every value of the batch. If the item's strong identifiers
   lead to exactly one CI, that is the item. If they lead to several different CIs, nothing is guessed
   or merged: the item is a *conflict*, reported with the candidate ids, and left unapplied.
4. Held identifiers (a host's IP addresses) are the last and weakest rule, used only when no strong
   identifier matched:
   - an item that knows nothing but an address (an nmap sighting) is the CI that currently holds that
     address, whichever source reported it;
   - an item with strong identifiers that match nothing is the one CI that names, by its own facts,
     every MAC the item reports as secondary (a router's interfaces' MACs, app.services.identity.
     SECONDARY) and is known by more than the item's values: SSH knew a Linux router first by those
     MACs, SNMP walks it after, and the other order was one CI already (SSH's strong MAC matches the
     device's secondary row). A row a CI holds only as secondary is not its own; a CI naming only some
     of them (an HA pair's shared virtual MAC among a firewall's ports) or several such CIs name none;
     a stronger rule contradicting the match (another serial) leaves the item to the rules below, two
     machines and no conflict (phases._resolve);
   - an item with strong identifiers that match nothing takes over a CI whose strong identifiers are
     all values the item reports: nmap's sighting that came first, known by an address, or by a
     router's interface MAC that the router reports as secondary (app.services.identity.SECONDARY);
     never a CI with other strong identifiers of its own: that is another machine, and the address
     has moved to this one (a DHCP lease reused). (nmap's agent sends an address's PTR name as the
     address item's `dns_name`, not as the host's fqdn: as an fqdn the host or device at that
     address, not reporting that name, was a CI beside nmap's.)
   In one batch, an address claimed by two items with strong identifiers (a Docker bridge address on
   every host) is not unique and identifies nothing.
5. A match is refused when a stronger rule contradicts it: if the item was found by its MAC but the CI
   holds another serial number than the item's, they are two machines sharing a MAC (a cloned VM); the
   item is a conflict, not a merge. Weaker identifiers may differ: a re-imaged server keeps its serial
   and gets a new machine-id, and is still the same CI.
6. No match: the item is a new CI.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.models.ingest import IngestItem
from app.services.identifiers import identifier_values, normalize
from app.services.identity import held_values, identifying_facts
from app.services.registry import ClassInfo, Registry
from app.services.storable import storable_problem

Triple = tuple[str, str, str]  # (identity family, key, normalized value)


@dataclass
class PlannedItem:
    index: int
    ref: str
    cls: ClassInfo
    name: str
    facts: dict[str, Any]  # attributes and identifiers together, as they will be stored
    environment: str | None
    owner: str | None
    strong: list[Triple]
    held: list[Triple]
    group: int = -1


@dataclass
class Resolution:
    """The outcome for one group of items that are one machine."""

    items: list[PlannedItem]
    ci_id: Any = None  # an existing CI, or None to create one
    conflict: list[str] = field(default_factory=list)  # candidate CI ids when ambiguous
    matched_by: str | None = None
    by_secondary: bool = False  # found by a MAC it reports as an interface's that the CI names as its own
    reason: str | None = None  # why it is a conflict, when not the plain "several CIs"


class ItemError(NamedTuple):
    ci_class: str
    index: int
    ref: str
    field: str  # within the item
    message: str


# Where storable_problem's path over [name, environment, owner, facts] points, as the item's field.
_CHECKED_FIELDS = {"item.0": "name", "item.1": "environment", "item.2": "owner"}


def plan_items(registry: Registry, items: Iterable[tuple[int, IngestItem]], surely_storable: Callable[[int], bool]
               ) -> tuple[list[PlannedItem], list[ItemError]]:
    """Rule 1 for each item (in batch order): its class, storable facts and usable identifiers, or
    why not. `surely_storable(index)` says the item's bytes need no storable check (batch.py)."""
    planned, errors, refs = [], [], set()
    for index, item in items:
        def refuse(field_name: str, message: str) -> None:
            errors.append(ItemError(item.ci_class, index, item.ref, field_name, message))  # noqa: B023

        if item.ref in refs:
            refuse("ref", f"ref '{item.ref}' appears twice in the batch")
            continue
        refs.add(item.ref)
        cls = registry.classes.get(item.ci_class)
        if cls is None:
            refuse("class", f"unknown class '{item.ci_class}'")
            continue
        facts = {**item.attributes, **item.identifiers}
        problem = None if surely_storable(index) else storable_problem(
            [item.name, item.environment, item.owner, facts], "item")
        if problem:
            where, reason = problem
            refuse(_CHECKED_FIELDS.get(where, where.replace("item.3", "attributes", 1)), reason)
            continue
        identifying = identifying_facts(item.name, item.environment, facts)
        family = cls.identity_family  # server and network_device share one (app.services.registry)
        strong = [(family, k, v) for k, v in identifier_values(cls.effective_rules, identifying)]
        held = [(family, k, v) for k, v in held_values(cls, facts)]
        if not strong and not held:
            usable = [" + ".join(rule) for rule in cls.effective_rules] + list(cls.effective_held)
            refuse("identifiers",
                   f"no identifier usable for class '{cls.name}': give one of {', '.join(usable)} "
                   "(placeholder values such as 'Default string' or loopback addresses do not count)")
            continue
        planned.append(PlannedItem(index=index, ref=item.ref, cls=cls, name=item.name, facts=facts,
                                   environment=item.environment, owner=item.owner, strong=strong, held=held))
    return planned, errors


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def group_items(items: list[PlannedItem]) -> list[list[PlannedItem]]:
    """Rule 2 and the in-batch half of rule 4: items that are one machine, in batch order."""
    forest = _UnionFind(len(items))
    first_with: dict[Triple, int] = {}
    for position, item in enumerate(items):
        for triple in item.strong:
            if triple in first_with:
                forest.union(first_with[triple], position)
            else:
                first_with[triple] = position
    strong_claimants: dict[Triple, set[int]] = defaultdict(set)
    for position, item in enumerate(items):
        if item.strong:
            for triple in item.held:
                strong_claimants[triple].add(forest.find(position))
    for position, item in enumerate(items):
        if item.strong:
            continue
        owners = {owner for triple in item.held for owner in strong_claimants.get(triple, ())}
        if len(owners) == 1:
            forest.union(owners.pop(), position)
    groups: dict[int, list[PlannedItem]] = {}
    for position, item in enumerate(items):
        root = forest.find(position)
        item.group = root
        groups.setdefault(root, []).append(item)
    return list(groups.values())


def non_unique_held(items: list[PlannedItem]) -> set[Triple]:
    """Addresses that several distinct strongly-identified machines of this batch report."""
    claimants: dict[Triple, set[int]] = defaultdict(set)
    for item in items:
        if item.strong:
            for triple in item.held:
                claimants[triple].add(item.group)
    return {triple for triple, groups in claimants.items() if len(groups) > 1}


def resolve(
    group: list[PlannedItem],
    index: dict[Triple, Any],
    strongly_identified: dict[Any, set[Triple]],
    ignored_held: set[Triple],
    own: dict[Any, set[Triple]] | None = None,
) -> Resolution:
    """Rules 3-5 for one group. `index` maps each triple found to its CI; `strongly_identified` holds
    the strong identifiers of the CIs found by a held value that have some (their secondary rows
    included); `own`, of the CIs found by a secondary value, the strong identifiers their own facts name."""
    strong = [triple for item in group for triple in item.strong]
    held = [triple for item in group for triple in item.held if triple not in ignored_held]
    strong_matches = {index[t] for t in strong if t in index}
    if len(strong_matches) > 1:
        return Resolution(group, conflict=sorted(str(ci) for ci in strong_matches))
    if strong_matches:
        key = next(t[1] for t in strong if t in index)
        return Resolution(group, ci_id=strong_matches.pop(), matched_by=key)
    reported = {*strong, *held}
    if strong and own:
        # The one CI, known by more than this machine's values (not a sighting: below), that names every
        # MAC this machine reports as an interface's as its own (SSH knows a Linux router first, SNMP
        # walks it after): that CI. Several such CIs, or one naming only some of them (an HA pair's
        # shared MAC among a firewall's ports), name no one.
        macs = {t for item in group for t in item.held if t[1] in item.cls.single_keys}
        owners = {index[t] for t in macs if t in index and t in own.get(index[t], ())
                  and not strongly_identified.get(index[t], set()) <= reported}
        if len(owners) == 1 and macs <= own[ci_id := next(iter(owners))]:
            return Resolution(group, ci_id=ci_id, matched_by=next(iter(macs))[1], by_secondary=True)
    held_matches = {index[t] for t in held if t in index}
    if strong:
        # Only a CI known by nothing but values this machine reports may become it.
        held_matches = {ci for ci in held_matches if strongly_identified.get(ci, set()) <= reported}
    if len(held_matches) > 1:
        if strong:
            # Several sightings of this machine (nmap saw a router on two segments, by an interface MAC
            # here and by an address there): it is none of them alone. It is made from its strong
            # identifiers and takes the values they held over (phases.reconcile); a conflict would lose
            # the machine on every run.
            return Resolution(group)
        return Resolution(group, conflict=sorted(str(ci) for ci in held_matches))
    if held_matches:
        return Resolution(group, ci_id=held_matches.pop(), matched_by=next(t[1] for t in held if t in index))
    return Resolution(group)


def contradicting_rule(resolution: Resolution, row: Any) -> str | None:
    """Rule 5: the first stronger single-attribute rule on which the item and the matched CI disagree."""
    if resolution.matched_by is None:
        return None
    cls = resolution.items[0].cls
    keys = [rule[0] for rule in cls.effective_rules if len(rule) == 1]
    if resolution.matched_by not in keys:
        return None
    stored = row["attributes"] or {}
    for key in keys[: keys.index(resolution.matched_by)]:
        if isinstance(stored.get(key), list):
            continue  # multi-valued: holding one more value is no contradiction
        theirs = normalize(key, stored.get(key))
        ours = {normalize(key, item.facts.get(key)) for item in resolution.items} - {None}
        if theirs is not None and ours and theirs not in ours:
            return (f"found by {resolution.matched_by}, but the CI's {key} is '{theirs}' and the item's is "
                    f"'{sorted(ours)[0]}': two machines share a {resolution.matched_by}; nothing was merged")
    return None
