"""Root cause and single points of failure: which single failure would explain what is down.

Both questions only care about `down` (rules in `graph.semantics`): degraded and at_risk never
make anything down, so a single failure's effect is its *down closure*, found by a walk that
follows ordinary impact edges from down CIs and counts the down members of redundancy groups.
Down closures are monotone: if x is in the closure of c, the closure of x is inside that of c.

root_cause(symptoms)
    Candidates are the symptoms and every CI upstream of them (a symptom may be its own root).
    Whether a symptom goes down depends only on CIs upstream of it, so each candidate's
    explanation is computed inside the ancestor subgraph of the symptoms (its impact edges copied
    once into plain lists), never the whole graph. Candidates that explain nothing are dropped.
    Rank: most symptoms explained (a symptom that is the candidate counts), then fewest extra CIs
    down (outside the symptoms, the candidate included: a root further up that takes nothing more
    down is less specific than the symptom itself), then id.
    The extra count over the whole graph is the expensive part (a core switch takes a datacenter
    down), so it is settled best-first: every candidate starts with a lower bound, the part of
    its closure inside the ancestor subgraph. The candidate with the smallest bound resumes its
    whole-graph walk (walks are kept, never redone) until it passes the next smallest bound (or a
    cheap size, or a quarter beyond its own bound); if it passed, it goes back with the better
    bound, otherwise its count is exact and it is ranked next, for nobody left can beat it. A
    candidate whose closure holds a settled one (the core network takes DNS down) starts from
    that count without walking: closures are monotone. The last candidate of a level has no
    rival: it is walked only while cheap, and if that does not finish it is ranked with its
    bound and `extra_exact` False. The order is always exact.
    With `extra_cap` (an incident's webhook must answer in a fraction of a second), no walk goes
    past the cap: a candidate whose count passes it ranks after every candidate of its level that
    stays within it, and among others past it by id, with its bound and `extra_exact` False. A root
    that would take more than the cap down besides the symptoms is a weak explanation whatever its
    exact count; the walks of two such candidates cost seconds at a million CIs.

spof(x)
    The CIs upstream of x whose single failure takes x down. Candidates are walked nearest first
    inside x's ancestor subgraph; a walk that reaches x or an already known spof stops at once
    (monotone closures: the known spof would take x down).

With the graph's compiled view (graph.compact), root cause's candidates and whole-graph walks run
compiled over its arrays statement for statement, and spof as one compiled walk (its candidates taken
breadth-first rather than sorted, which changes no answer: closures are monotone, and the points are
sorted at the end): the same answers.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Iterable, NamedTuple

from graph.propagation import spare_members, split_known
from graph.semantics import ORDINARY


class RootCauseCandidate(NamedTuple):
    ci_id: object
    explains: list  # the symptoms its single failure puts down, in the order given
    extra_down: int  # CIs outside the symptoms it would take down, itself included
    extra_exact: bool = True  # False: extra_down is a lower bound, enough to rank it


# Whole-graph walks up to this many extra CIs are cheap enough to make exact even when the
# ranking does not need it.
CHEAP_EXTRA = 20_000


class DownWalk:
    """Down closures of single failures over one graph, sharing group member totals."""

    def __init__(self, g, kind_key: str, spares: dict | None = None, view=None):
        self.node, self.succ, self.pred = g._node, g._succ, g._pred
        self.kind_key = kind_key
        self._spares = {} if spares is None else spares
        # graph.compact's view of g, current: whole-graph walks then run compiled over its arrays.
        self.view = view
        self._outside: tuple | None = None  # (the set, its mask over the view)

    def ancestors(self, targets: Iterable) -> dict:
        """CIs upstream of `targets` along impact edges, with their hop distance (targets at 0)."""
        pred, kind_key = self.pred, self.kind_key
        dist = dict.fromkeys(targets, 0)
        queue = deque(dist)
        while queue:
            v = queue.popleft()
            d = dist[v] + 1
            for u, data in pred[v].items():
                if u not in dist and data[kind_key]:
                    dist[u] = d
                    queue.append(u)
        return dist

    def subgraph(self, within) -> dict:
        """u -> [(v, kind, spare)] for the impact edges inside `within`; spare is how many members
        the head may lose and stay up (None for an edge that carries ordinary impact).

        Found from each head's providers, not each tail's dependents: `within` is an ancestor set, so
        its CIs are the providers (a datacenter's router, thousands of dependents, few providers), and
        reading their dependents cost ~10x the edges kept. The lists' order differs; closures do not
        depend on it (each edge is followed once, whichever comes first)."""
        pred, kind_key, spares, spare_of = self.pred, self.kind_key, self._spares, self._spare
        sub = {u: [] for u in within}
        for v in within:
            spare = None
            for u, data in pred[v].items():
                kind = data[kind_key]
                if kind and u in within:
                    if kind & ORDINARY:
                        sub[u].append((v, kind, None))
                    else:
                        if spare is None:
                            spare = spares.get(v)
                            if spare is None:
                                spare = spare_of(v)
                        sub[u].append((v, kind, spare))
        return sub

    def closure_in(self, start, sub: dict, stop_at=None):
        """The down closure of `start` inside `sub`; None as soon as it reaches `stop_at`."""
        down = {start}
        lost: dict = {}
        stack = [start]
        while stack:
            for v, kind, spare in sub[stack.pop()]:
                if v in down:
                    continue
                if spare is not None:
                    n = lost[v] = lost.get(v, 0) + 1
                    if n <= spare:
                        continue
                if stop_at is not None and v in stop_at:
                    return None
                down.add(v)
                stack.append(v)
        return down

    def extra_walk(self, start, outside: set):
        """A resumable walk (ExtraWalk, or the same walk compiled over the view: graph.compact)."""
        if self.view is None:
            return ExtraWalk(self, start, outside)
        if self._outside is None or self._outside[0] is not outside:
            self._outside = (outside, self.view.mask(outside))
        from graph.compact import ExtraWalkArrays
        return ExtraWalkArrays(self.view, self.kind_key, start, self._outside[1])

    def _spare(self, group) -> int:
        """How many members a group can lose and stay up."""
        spare = self._spares.get(group)
        if spare is None:
            spare = self._spares[group] = spare_members(self.node, self.pred, group, self.kind_key)
        return spare


class ExtraWalk:
    """A resumable whole-graph walk counting the CIs not in `outside` that one failure takes down
    (itself included). `advance(cap)` walks on until the count passes `cap` or the walk ends; it
    stops between CIs, so the count may pass `cap` by one CI's dependents, and is always a true
    lower bound."""

    __slots__ = ("walk", "outside", "down", "lost", "stack", "count")

    def __init__(self, walk: DownWalk, start, outside: set):
        self.walk, self.outside = walk, outside
        self.down = {start}
        self.lost: dict = {}
        self.stack = [start]  # down CIs whose dependents are not looked at yet
        self.count = 0 if start in outside else 1

    def advance(self, cap: int) -> tuple[int, bool]:
        """(count, exact): exact once the walk has ended, else a lower bound past `cap`."""
        walk = self.walk
        succ, kind_key, spares, spare_of = walk.succ, walk.kind_key, walk._spares, walk._spare
        down, lost, stack, outside = self.down, self.lost, self.stack, self.outside
        count = self.count
        while stack and count <= cap:
            for v, data in succ[stack.pop()].items():
                if v in down:
                    continue
                kind = data[kind_key]
                if not kind & ORDINARY:
                    if not kind:
                        continue
                    n = lost[v] = lost.get(v, 0) + 1
                    spare = spares.get(v)
                    if n <= (spare_of(v) if spare is None else spare):
                        continue
                down.add(v)
                stack.append(v)
                if v not in outside:
                    count += 1
        self.count = count
        return count, not stack


def spof(g, ci_id, kind_key: str, spares: dict | None = None, view=None) -> list:
    if ci_id not in g._node:
        return []
    if view is not None:  # the same points, computed compiled (graph.compact)
        return view.spof(ci_id, kind_key)
    walk = DownWalk(g, kind_key, spares)
    upstream = walk.ancestors([ci_id])
    sub = walk.subgraph(upstream)
    found = {ci_id}
    order = sorted(upstream, key=lambda c: (upstream[c], str(c)))
    for candidate in order:
        if not any(spare is None or spare < 1 for _, _, spare in sub[candidate]):
            continue  # alone it takes nothing down
        if candidate != ci_id and walk.closure_in(candidate, sub, stop_at=found) is None:
            found.add(candidate)
    return [c for c in order if c in found and c != ci_id]


def root_cause(g, symptom_ids: Iterable, limit: int, kind_key: str, spares: dict | None = None,
               extra_cap: int | None = None, view=None) -> list[RootCauseCandidate]:
    symptoms, _unknown = split_known(g._node, symptom_ids)
    if not symptoms or limit <= 0:
        return []
    walk = DownWalk(g, kind_key, spares, view)
    symptom_set = set(symptoms)
    levels: dict[int, list] = {}
    if view is not None:  # the same candidates, closures and bounds, computed compiled (graph.compact)
        found, bounds, explained, closures = view.candidates(symptoms, kind_key)
        for candidate, lower_bound, explains in zip(found, bounds, explained):
            levels.setdefault(len(explains), []).append([lower_bound, str(candidate), False, candidate, explains])
        return _ranked(walk, levels, limit, symptom_set, closures, extra_cap)
    upstream = walk.ancestors(symptoms)
    sub = walk.subgraph(upstream)
    closures: dict = {}  # explaining candidate -> its down closure inside the ancestor subgraph
    for candidate in upstream:
        if candidate not in symptom_set and not any(spare is None or spare < 1 for _, _, spare in sub[candidate]):
            continue  # alone it takes nothing down (a redundant member, say): it explains nothing
        down = walk.closure_in(candidate, sub)
        if symptom_set.isdisjoint(down):
            continue
        explains = [s for s in symptoms if s in down]
        lower_bound = sum(1 for c in down if c not in symptom_set)
        levels.setdefault(len(explains), []).append([lower_bound, str(candidate), False, candidate, explains])
        closures[candidate] = down
    return _ranked(walk, levels, limit, symptom_set, closures, extra_cap)


def _ranked(walk: DownWalk, levels: dict, limit: int, symptom_set: set, closures, extra_cap: int | None
            ) -> list[RootCauseCandidate]:
    ranked: list[RootCauseCandidate] = []
    for count in sorted(levels, reverse=True):
        need = limit - len(ranked)
        if need <= 0:
            break
        ranked.extend(_fewest_extra(walk, levels[count], need, symptom_set, closures, extra_cap))
    return ranked


def _fewest_extra(walk: DownWalk, level: list, need: int, symptom_set: set, closures: dict,
                  cap: int | None = None) -> list[RootCauseCandidate]:
    """The `need` candidates of one level with the fewest extra CIs down, best first, walking as
    little as the ranking allows (and never past `cap`). Entries: [bound, id string, exact,
    candidate, explains]; in the heap (rank, id string, exact, candidate, explains, bound), where
    rank is the bound, or cap + 1 for every candidate past the cap."""
    ceiling = float("inf") if cap is None else cap

    def entry(bound, key, exact, candidate, explains):
        return (bound if bound <= ceiling else cap + 1, key, exact, candidate, explains, bound)

    heap = [entry(*e) for e in level]
    heapq.heapify(heap)
    walks: dict = {}
    settled: dict = {}  # candidate -> its exact extra count
    ranked = []
    while heap and len(ranked) < need:
        rank, key, exact, candidate, explains, bound = heapq.heappop(heap)
        if not exact and bound <= ceiling:
            floor = _dominated_floor(candidate, closures, settled, symptom_set)
            if floor > bound:
                heapq.heappush(heap, entry(floor, key, exact, candidate, explains))
                continue
            walk_of = walks.get(key) or walks.setdefault(key, walk.extra_walk(candidate, symptom_set))
            if not heap:
                if bound < CHEAP_EXTRA:  # nothing left to beat: walk on only while it is cheap
                    bound, exact = walk_of.advance(min(CHEAP_EXTRA, ceiling))
            else:
                rival = heap[0]
                # Far enough to settle against the next bound; at least a quarter further each
                # time, so two big candidates overtaking each other take few rounds.
                bound, exact = walk_of.advance(min(max(rival[0], CHEAP_EXTRA, bound + bound // 4), ceiling))
                if exact:
                    settled[candidate] = bound
                if exact or bound > ceiling:  # never walked again: let its memory go now, not with the level
                    del walks[key]
                again = entry(bound, key, exact, candidate, explains)
                if (rival[0], rival[1]) < (again[0], key):
                    heapq.heappush(heap, again)
                    continue
        walks.pop(key, None)
        ranked.append(RootCauseCandidate(candidate, explains, bound, exact))
    return ranked


def _dominated_floor(candidate, closures: dict, settled: dict, symptom_set: set) -> int:
    """A lower bound from settled candidates this one takes down: its closure holds theirs, and
    itself too (one more, unless it is a symptom or they take it down as well)."""
    if not settled:
        return 0
    mine = closures[candidate]
    floor = 0
    for other, extra in settled.items():
        if other in mine:
            if candidate not in symptom_set and candidate not in closures[other]:
                extra += 1
            floor = max(floor, extra)
    return floor
