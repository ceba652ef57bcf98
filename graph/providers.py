"""What a CI depends on, transitively: every CI whose failure can reach it along impact edges.

Used to group an inventory's hosts by the services they carry ("everything under the shop"). The
walk follows the impact graph backwards (dependent -> provider) over edges that carry impact under
the graph's semantics (graph.semantics: a `none` relationship carries none and is not followed),
whatever the state it would pass on: a redundant member's failure only degrades its group, but the
member is still something the service depends on. A dependency covered by a group (graph.semantics:
a member's direct edge to a dependent of its group carries nothing of its own) is not followed; the
member is reached through its group. Cycles end the walk, they never loop it.

Pure computation over an `ImpactGraph` held still by its caller (LiveGraph.reading()); it must
never import `app/`, a web framework or a database driver. With the graph's compiled view the walk runs
compiled over its arrays (graph.compact), with the same answer; `walk` is the walk over the dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from graph.semantics import KIND_KEY

if TYPE_CHECKING:
    from graph.impact_graph import ImpactGraph


def providers(graph: ImpactGraph, ci_id, keep: set | frozenset | None = None) -> set:
    """The CIs `ci_id` depends on, transitively (never itself, even through a cycle), kept to those in
    `keep` when given (the walk still passes through the others). An unknown CI has none."""
    found = graph.providers(ci_id)
    return found if keep is None else found & keep


def walk(pred: dict, ci_id) -> set:
    """providers() over the graph's predecessor dicts (`ci_id` a CI of the graph)."""
    seen = {ci_id}
    stack = [ci_id]
    while stack:
        for provider, data in pred[stack.pop()].items():
            if data[KIND_KEY] and provider not in seen:
                seen.add(provider)
                stack.append(provider)
    seen.discard(ci_id)
    return seen


def providers_of_each(graph: ImpactGraph, ci_ids: Iterable, keep: set | frozenset | None = None) -> dict:
    """{ci_id: providers(graph, ci_id, keep)} for each of `ci_ids`."""
    return {ci_id: providers(graph, ci_id, keep) for ci_id in ci_ids}
