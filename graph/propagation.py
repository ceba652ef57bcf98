"""Impact propagation: what a set of failed (or changed) CIs does to everything downstream.

Used for change review and for an incident's blast radius alike: the failed set is taken
together. The rules are in `graph.semantics`; this module is the hot loop and must stay plain
Python over the networkx adjacency dicts (no per-step views, no per-node dict copies).

How the loop meets the rules:
  - breadth-first, one level (distance) at a time, from the failed CIs: a CI is discovered once,
    by the first CI that reaches it, which gives its distance and its parent on one shortest
    path; everything found at distance d is processed before anything at d + 1;
  - processing a CI passes its current state to its dependents. If a dependent that was already
    processed gets worse, it is queued to be processed again once discovery is over (this is
    what cycles and longer paths to a worse state cause); a CI is processed again only if its
    state changed since, so each is processed at most once per state and every cycle ends;
  - a redundancy group counts its members as they are processed down; a member is down at most
    once, so it is counted once. The member total is counted on first contact;
  - with `max_depth`, CIs at the bound still update CIs already found but discover none;
  - the answer's entries (paths included) are built when read, from the loop's own dicts.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import ItemsView, Iterable, Mapping, ValuesView
from dataclasses import dataclass, field
from typing import NamedTuple

from graph.semantics import AT_RISK, DEGRADED, DOWN, MEMBER, ORDINARY, STATE_NAMES


class ImpactedCI(NamedTuple):
    state: str  # "down", "degraded" or "at_risk"
    distance: int  # hops from the nearest failed CI along impact edges
    path: list  # one shortest explaining path: failed CI, ..., this CI


@dataclass
class ImpactResult:
    failed: list  # the failed CIs that are in the graph, in the order given, without repeats
    unknown: list = field(default_factory=list)  # ids given as failed that the graph does not know
    # ci_id -> ImpactedCI, in distance order; the failed CIs are not here. A read-only Mapping
    # (ImpactedMap) that builds each entry, path included, when it is read.
    impacted: Mapping = field(default_factory=dict)

    def distances(self) -> dict:
        """ci_id -> hops from the nearest failed CI, without building paths."""
        if isinstance(self.impacted, ImpactedMap):
            return self.impacted.distances()
        return {ci_id: hit.distance for ci_id, hit in self.impacted.items()}

    def states(self) -> dict:
        """ci_id -> state, without building paths."""
        if isinstance(self.impacted, ImpactedMap):
            return self.impacted.states()
        return {ci_id: hit.state for ci_id, hit in self.impacted.items()}

    def count_by_state(self) -> dict[str, int]:
        counts = {"down": 0, "degraded": 0, "at_risk": 0}
        if isinstance(self.impacted, ImpactedMap):
            counts.update(self.impacted.count_by_state())
            return counts
        for state in self.states().values():
            counts[state] += 1
        return counts

    def states_of(self, ci_ids: Iterable) -> list:
        """The states of the impacted CIs given, in their order, without building paths."""
        if isinstance(self.impacted, ImpactedMap):
            return self.impacted.states_of(ci_ids)
        return [self.impacted[ci_id].state for ci_id in ci_ids]

    def nearest(self, n: int) -> list:
        """The `n` impacted CIs nearest the failed ones, by (distance, id), without building paths."""
        if isinstance(self.impacted, ImpactedMap):
            return self.impacted.nearest(n)
        distance = self.distances()
        return heapq.nsmallest(n, distance, key=lambda ci_id: (distance[ci_id], ci_id))


def spare_members(node: dict, pred: dict, group, kind_key: str) -> int:
    """How many members a redundancy group can lose and stay up: members - k (k None means 1)."""
    k = node[group]["min_members"]
    total = sum(1 for data in pred[group].values() if data[kind_key] & MEMBER)
    return total - (1 if k is None else k)


def split_known(node: dict, ids: Iterable) -> tuple[list, list]:
    known, unknown, seen = [], [], set()
    for ci_id in ids:
        if ci_id in seen:
            continue
        seen.add(ci_id)
        (known if ci_id in node else unknown).append(ci_id)
    return known, unknown


def impact(g, failed_ids: Iterable, kind_key: str, max_depth: int | None = None, spares: dict | None = None) -> ImpactResult:
    """See the module docstring. `spares` caches spare_members per group between calls; the
    caller drops a group's entry whenever its members or min_members change."""
    node, succ, pred = g._node, g._succ, g._pred
    failed, unknown = split_known(node, failed_ids)
    state = dict.fromkeys(failed, DOWN)
    parent: dict = {}  # impacted CI -> its predecessor on one shortest path, in discovery order
    lost: dict = {}  # group -> members down so far
    spares = {} if spares is None else spares  # group -> members it can lose and stay up
    done: dict = {}  # CI -> the state it had when its dependents were last updated
    redo: list = []  # processed CIs that got worse since
    level, d = failed, 0
    while level or redo:
        if not level:
            # Breadth-first discovery is over; settle what got worse after being processed.
            level, redo, d = redo, [], None
        at_bound = d is not None and d == max_depth
        d1 = None if d is None else d + 1
        nxt: list = []
        for u in level:
            s = state[u]
            if d1 is None and done[u] == s:
                continue  # queued twice for redo: the first visit settled it
            done[u] = s
            s_ord = DOWN if s == DOWN else AT_RISK
            for v, data in succ[u].items():
                kind = data[kind_key]
                if not kind:
                    continue
                sv = state.get(v)
                if sv is None:
                    if at_bound or d1 is None:
                        continue
                    parent[v] = u
                    nxt.append(v)
                    if kind == ORDINARY:
                        state[v] = s_ord
                        continue
                    sv = 0
                elif sv == DOWN:
                    continue
                new = s_ord if kind & ORDINARY else 0
                if kind & MEMBER and new != DOWN:
                    if s == DOWN:
                        n = lost[v] = lost.get(v, 0) + 1
                        spare = spares.get(v)
                        if spare is None:
                            spare = spares[v] = spare_members(node, pred, v, kind_key)
                        new = DOWN if n > spare else DEGRADED
                    elif new < AT_RISK:
                        new = AT_RISK
                if new > sv:
                    state[v] = new
                    if v in done:
                        redo.append(v)
        level = nxt
        if d is not None:
            d = d1
    return ImpactResult(failed, unknown, ImpactedMap(state, parent))


class ImpactedMap(Mapping):
    """ci_id -> ImpactedCI, built on access from the propagation's own dicts.

    Building a path per CI up front cost as much as the propagation itself on big answers, and
    many callers only need states or counts; a path is a walk up the parent links when asked.
    """

    __slots__ = ("_parent", "_state")

    def __init__(self, state: dict, parent: dict):
        self._state, self._parent = state, parent

    def __getitem__(self, ci_id) -> ImpactedCI:
        if ci_id not in self._parent:
            raise KeyError(ci_id)
        path = self.path(ci_id)
        return ImpactedCI(STATE_NAMES[self._state[ci_id]], len(path) - 1, path)

    def __iter__(self):
        return iter(self._parent)

    def __len__(self) -> int:
        return len(self._parent)

    def __contains__(self, ci_id) -> bool:
        return ci_id in self._parent

    def path(self, ci_id) -> list:
        parent = self._parent
        path = [ci_id]
        while ci_id in parent:
            ci_id = parent[ci_id]
            path.append(ci_id)
        path.reverse()
        return path

    def items(self) -> ItemsView:
        return _ImpactedItems(self)

    def values(self) -> ValuesView:
        return _ImpactedValues(self)

    def entries(self):
        """(ci_id, ImpactedCI) in distance order, each path built from its parent's."""
        state, prefixes = self._state, {}
        for ci_id, via in self._parent.items():
            prefix = prefixes[ci_id] = prefixes.get(via, (via,)) + (ci_id,)
            yield ci_id, ImpactedCI(STATE_NAMES[state[ci_id]], len(prefix) - 1, list(prefix))

    def distances(self) -> dict:
        """ci_id -> hops from the nearest failed CI, in one pass (a parent always comes before its
        children in `_parent`: the order entries() relies on too)."""
        dist: dict = {}
        for ci_id, via in self._parent.items():
            dist[ci_id] = dist.get(via, 0) + 1
        return dist

    def states(self) -> dict:
        state = self._state
        return {ci_id: STATE_NAMES[state[ci_id]] for ci_id in self._parent}

    def states_of(self, ci_ids: Iterable) -> list:
        ci_ids = list(ci_ids)
        missing = next((ci_id for ci_id in ci_ids if ci_id not in self._parent), None)
        if missing is not None:
            raise KeyError(missing)  # a failed CI is in `_state` too, but is not impacted
        state = self._state
        return [STATE_NAMES[state[ci_id]] for ci_id in ci_ids]

    def count_by_state(self) -> dict[str, int]:
        """state -> how many impacted CIs are in it. Counted over the states' values in their dict's order
        (a lookup per impacted CI cost 16 ms at 50,000: each one a cache miss), less the failed CIs, which
        are in `_state` too, down from start to end, and not impacted."""
        counts = Counter(self._state.values())
        counts[DOWN] -= len(self._state) - len(self._parent)
        return {STATE_NAMES[state]: count for state, count in counts.items() if count}

    def nearest(self, n: int) -> list:
        """The `n` impacted CIs nearest the failed ones, by (distance, id). `_parent` is in discovery
        order, so distances never decrease along it: only the levels up to the one holding the n-th CI
        are read, and of that last level only the ids needed are picked (a blast radius of 50,000 CIs whose 500
        nearest lie within two hops reads those two hops)."""
        dist: dict = {}
        nearer: list = []  # every CI of the levels before `level`, each level by id
        level, level_distance = [], 0
        for ci_id, via in self._parent.items():
            d = dist[ci_id] = dist.get(via, 0) + 1
            if d != level_distance:
                if len(nearer) + len(level) >= n:
                    break
                nearer += sorted(level)
                level, level_distance = [], d
            level.append(ci_id)
        return nearer + heapq.nsmallest(max(0, n - len(nearer)), level)

    def __repr__(self) -> str:
        return f"ImpactedMap({dict(self.items())!r})"


class _ImpactedItems(ItemsView):
    def __iter__(self):
        return self._mapping.entries()


class _ImpactedValues(ValuesView):
    def __iter__(self):
        return (hit for _, hit in self._mapping.entries())
