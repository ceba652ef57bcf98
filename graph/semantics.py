"""What a relationship means for impact, and the rules every analysis in `graph/` follows.

This module is data and rules only: it must never import `app/`, a web framework or a database
driver. The rules, in the order the code applies them:

Direction
    Every relationship type says which way impact flows. `target_to_source`: A depends_on B, so
    B's failure impacts A. `source_to_target`: A contains B, so A's failure impacts B. `none`: the
    relationship is kept (neighborhoods and exports show it) but carries no impact. The graph
    stores each edge in the direction impact flows, provider -> dependent; a `none` relationship
    (and one whose type has no semantics yet) is stored source -> target. Two CIs may be related
    by several types at once: the edge holds the set of its types, and removing one type leaves
    the others.

States, worst first
    `down` (cannot serve), `degraded` (a redundancy group that lost members but still has
    enough), `at_risk` (depends on something degraded or at_risk). A failed CI counts as down for
    its dependents. The worst state a CI reaches wins.

Ordinary impact edge (membership=False)
    A dependent whose provider is down is down; whose provider is degraded or at_risk is at_risk.

Redundancy group (membership=True)
    A CI with membership in-edges is a redundancy group over those members, with k = its
    `min_members` (None means 1). Counting only members lost to this failure: fewer than k members
    still up -> down; at least one member lost but k still up -> degraded; a member that is
    degraded or at_risk counts as up but makes the group at_risk. A group may also have ordinary
    providers; the worst state wins. A group whose min_members exceeds its member count is not
    reported down until one of its members is actually impacted.

Covered dependencies
    When A depends on a redundancy group G (an edge G -> A that carries ordinary impact) and M is
    a member of G (an edge M -> G that carries membership), the edge M -> A, if there is one,
    carries no ordinary impact: M's failure reaches A only through G (G degraded: A at_risk; G
    down: A down). Discovery sees every instance behind a proxy as a direct dependency of the
    proxy (it connects to each); a group the proxy depends on says that any of them serves, so
    the direct edges must not take the proxy down one instance at a time. The edge keeps its
    types (neighborhoods, exports and the relationship list show it as recorded) and any
    membership it carries; only its ordinary impact is cleared. M, G and A are three distinct
    CIs. Coverage is decided on the kinds the edges' types give under the full semantics, before
    any coverage (so it never depends on which other edges are covered, and a change re-decides
    only the edges around it), and a covered edge has its ordinary impact cleared under every
    type filter too: `types` chooses which relationships carry impact, not which groups count,
    so a filter that leaves out membership does not bring the direct dependency back (M then
    reaches A through nothing). Two groups that are members of each other and both depended on
    by A cover each other's edges to A: such data says nothing sensible, and the rule stays local.

Propagation
    States only ever get worse while propagating, so the answer is the least fixed point reached
    from the failed set: cycles terminate, and a back edge that adds nothing changes nothing. A
    CI is impacted exactly when it can be reached from the failed set along impact edges (every
    such edge passes on at least at_risk). Its `distance` is the number of hops from the nearest
    failed CI, and its `path` one shortest chain of impact edges from a failed CI to it.

Filters
    `types` keeps only the named relationship types as impact carriers (membership included); a
    covered edge stays covered whatever the filter (see above).
    `max_depth` keeps the CIs within that many hops of the failed set; their states are computed
    over the edges among them, so a CI beyond the bound neither appears nor passes anything on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable, Literal

ImpactDirection = Literal["target_to_source", "source_to_target", "none"]

# Integer states keep the hot loop to int comparisons; the public names are the strings below.
OK, AT_RISK, DEGRADED, DOWN = 0, 1, 2, 3
STATE_NAMES = {AT_RISK: "at_risk", DEGRADED: "degraded", DOWN: "down"}

# What an edge carries, as bits of the edge data's kind: ordinary impact, membership impact.
ORDINARY, MEMBER = 1, 2

# Key of the type set in every edge data dict, of the unfiltered kind, and of whether the edge is
# covered (its dependent depends on a group its provider is a member of: see the rules above).
TYPES_KEY = "types"
KIND_KEY = "kind"
COVERED_KEY = "covered"


@dataclass(frozen=True, slots=True)
class RelationshipSemantics:
    """How one relationship type passes impact on."""

    impact: ImpactDirection = "target_to_source"
    membership: bool = False

    def __post_init__(self) -> None:
        if self.impact not in ("target_to_source", "source_to_target", "none"):
            raise ValueError(f"unknown impact direction {self.impact!r}")

    def kind(self) -> int:
        if self.impact == "none":
            return 0
        return MEMBER if self.membership else ORDINARY


NO_IMPACT = RelationshipSemantics(impact="none")

# The relationship types the design names. The service reads the real ones from its database
# (types are data); this is what tests, benchmarks and a fresh install start from.
STANDARD_SEMANTICS = {
    "depends_on": RelationshipSemantics(impact="target_to_source"),  # A depends_on B: B's failure impacts A
    "runs_on": RelationshipSemantics(impact="target_to_source"),
    "connects_to": RelationshipSemantics(impact="target_to_source"),  # host connects_to switch
    "member_of": RelationshipSemantics(impact="source_to_target", membership=True),  # node member_of cluster
    "contains": RelationshipSemantics(impact="source_to_target"),  # rack contains server
}


class EdgeTypeSets:
    """One shared, read-only data dict per set of relationship types found on an edge, and per
    whether the edge is covered.

    A graph of millions of edges has a handful of distinct type sets, so every edge points at one
    of these dicts instead of owning one. Each dict holds the type set, the kind under the full
    semantics, one extra kind per registered type filter, so the hot loop does a single lookup
    whichever filter is in force, and COVERED_KEY. A covered edge (rules: "Covered dependencies")
    points at the second table's dict for its types: the same kinds with ORDINARY cleared under
    every key. Whether an edge is covered depends on other edges, never on its own types, so
    `with_type` and `without_type` keep the flag and the graph re-decides it only for the edges
    around one whose kind changed. Never mutate an edge's dict to change its types: swap it.
    """

    MAX_FILTERS = 64

    def __init__(self, semantics: dict[str, RelationshipSemantics]):
        self.semantics = dict(semantics)
        self._by_types: dict[frozenset, dict] = {}
        self._covered: dict[frozenset, dict] = {}
        self._filters: dict[frozenset, str] = {}

    def of(self, types: frozenset) -> dict:
        data = self._by_types.get(types)
        if data is None:
            data = {TYPES_KEY: types, KIND_KEY: self._kind(types, None), COVERED_KEY: False}
            for allowed, key in self._filters.items():
                data[key] = self._kind(types, allowed)
            self._by_types[types] = data
        return data

    def covered(self, types: frozenset) -> dict:
        """The dict of a covered edge of these types: ORDINARY cleared under every kind key."""
        data = self._covered.get(types)
        if data is None:
            # From the uncovered dict, which then exists too (raw_kind and present_types read it).
            data = {key: kind & ~ORDINARY for key, kind in self.of(types).items() if key != TYPES_KEY}
            data[TYPES_KEY], data[COVERED_KEY] = types, True
            self._covered[types] = data
        return data

    def variant(self, data: dict, covered: bool) -> dict:
        """The dict for the same types, covered or not."""
        if data[COVERED_KEY] == covered:
            return data
        return self.covered(data[TYPES_KEY]) if covered else self.of(data[TYPES_KEY])

    def raw_kind(self, data: dict) -> int:
        """The edge's kind under the full semantics before coverage: what coverage is decided on."""
        return self._by_types[data[TYPES_KEY]][KIND_KEY] if data[COVERED_KEY] else data[KIND_KEY]

    def single(self, type_name: str) -> dict:
        return self.of(frozenset((sys.intern(type_name),)))

    def with_type(self, data: dict | None, type_name: str) -> dict:
        """The dict once `type_name` is added (a new edge: uncovered until the graph decides)."""
        if data is None:
            return self.single(type_name)
        types = data[TYPES_KEY]
        if type_name in types:
            return data
        types = types | {sys.intern(type_name)}
        return self.covered(types) if data[COVERED_KEY] else self.of(types)

    def without_type(self, data: dict, type_name: str) -> dict | None:
        types = data[TYPES_KEY] - {type_name}
        if not types:
            return None
        return self.covered(types) if data[COVERED_KEY] else self.of(types)

    def kind_key(self, types: Iterable[str] | None) -> str:
        """The data key holding each edge's kind when only `types` carry impact."""
        if types is None:
            return KIND_KEY
        allowed = frozenset(types)
        key = self._filters.get(allowed)
        if key is None:
            if len(self._filters) >= self.MAX_FILTERS:
                self._forget_filters()
            key = f"kind:{len(self._filters)}:{','.join(sorted(allowed))}"
            self._filters[allowed] = key
            for types_, data in self._by_types.items():
                data[key] = self._kind(types_, allowed)
            for types_, data in self._covered.items():
                data[key] = self._kind(types_, allowed) & ~ORDINARY
        return key

    def _forget_filters(self) -> None:
        for key in self._filters.values():
            for table in (self._by_types, self._covered):
                for data in table.values():
                    data.pop(key, None)
        self._filters.clear()

    def _kind(self, types: frozenset, allowed: frozenset | None) -> int:
        kind = 0
        for name in types:
            if allowed is None or name in allowed:
                kind |= self.semantics.get(name, NO_IMPACT).kind()
        return kind

    def semantics_of(self, type_name: str) -> RelationshipSemantics:
        return self.semantics.get(type_name, NO_IMPACT)

    def present_types(self) -> set[str]:
        return set().union(*self._by_types) if self._by_types else set()
