"""Which of a set of CIs (services) each CI reaches along impact edges, for all CIs at once.

For Prometheus's targets (every host, with the services its failure reaches): a walk upstream from
each service costs the sum of their upstream sizes (4,000 services over 100,000 CIs: 20 s); this
takes one pass instead:
  - `upstream_part` copies the part of the graph upstream of any service (a few dict reads per edge,
    which is all that needs the graph held still);
  - `reached` finds its strongly connected components (a cycle reaches what any of its CIs reaches)
    with Tarjan's algorithm, which closes a component only after every component it reaches, so each
    component's set is the union of its successors' sets, computed as it closes. A component with one
    non-empty successor set shares it: a chain holds one set however long it is.
Pure computation over adjacency dicts; it imports nothing of app/.
"""

from __future__ import annotations

from collections.abc import Iterable

EMPTY: frozenset = frozenset()


def upstream_part(g, starts: Iterable) -> dict:
    """node -> its successors within the part of `g` (a networkx DiGraph, edges along impact) from
    which some node of `starts` can be reached; `starts` included."""
    succ, pred = g._succ, g._pred  # the adjacency dicts themselves: the public views cost a call per step
    part = {node: None for node in starts if node in succ}
    frontier = list(part)
    while frontier:
        for provider in pred[frontier.pop()]:
            if provider not in part:
                part[provider] = None
                frontier.append(provider)
    return {node: [dependent for dependent in succ[node] if dependent in part] for node in part}


def reached(part: dict, targets: set) -> dict:
    """node -> frozenset of the `targets` it reaches (itself included), for every node of `part`."""
    index: dict = {}
    low: dict = {}
    on_stack: set = set()
    stack: list = []
    reach: dict = {}
    counter = 0
    for root, first in part.items():
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(first))]
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(part[successor])))
                    advanced = True
                    break
                if successor in on_stack and index[successor] < low[node]:
                    low[node] = index[successor]
            if advanced:
                continue
            work.pop()
            if work and low[node] < low[work[-1][0]]:
                low[work[-1][0]] = low[node]
            if low[node] == index[node]:
                _close(node, part, stack, on_stack, reach, targets)
    return reach


def _close(root, part: dict, stack: list, on_stack: set, reach: dict, targets: set) -> None:
    """Pop root's component and give all its nodes one set: its own targets and its successors'."""
    members = []
    while True:
        node = stack.pop()
        on_stack.discard(node)
        members.append(node)
        if node == root:
            break
    inside = set(members)
    sets = {id(found): found for node in members for successor in part[node]
            if successor not in inside and (found := reach[successor])}
    own = frozenset(node for node in members if node in targets)
    if own:
        sets[id(own)] = own
    if not sets:
        found = EMPTY
    elif len(sets) == 1:
        (found,) = sets.values()
    else:
        found = frozenset().union(*sets.values())
    for node in members:
        reach[node] = found
