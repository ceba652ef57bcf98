"""Change records applied to a compiled view (graph.compact) without the graph's dicts.

Why: a worker starting from a snapshot file has the view's arrays ~1 s after reading it, and the networkx
dicts ~4 s later at 1,000,000 CIs (~60 s at 10,000,000). The view can answer impact questions as soon as
the changes since the file was written are in it; this module puts them there with no dicts but the CIs'
payloads (`node`: ci_id -> its payload dict, one insert per CI to lay out).

How: the changes are applied, by ImpactGraph's own code (so every rule, covered dependencies included, is
the one the dicts follow), to a graph holding only the rows they can read: every CI a change names (its
ends) and every CI next to one of those in the view, each with its whole succ and pred rows read from the
view. That is enough, because a change to edge u -> v reads and writes the rows of u, v, their members,
groups and dependents, all one hop from u or v (ImpactGraph's "covered dependencies" are decided locally
for that reason); edges a change makes join two of its ends, so the hop is the view's, before the changes.
The rows of every CI the changes touched are then read into the view's overlay (CompactView.refresh), in
the order ImpactGraph keeps them: the view ends as the one the dicts would have given, row for row.

Not covered: a graph's `_spares` (the Python loop's cache; the view keeps its own member counts), and a
change of semantics (every edge is laid again: a full load).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Iterable

import numpy as np

from graph.impact_graph import ImpactGraph

# The operations, named as ImpactGraph's methods, and how many ends (CI ids) lead their arguments.
OPERATIONS = {"upsert_ci": 1, "remove_ci": 1, "add_relationship": 2, "remove_relationship": 2}


class ViewOutOfStep(RuntimeError):
    """The view and the payloads disagree, or a change reached past the rows read: the view cannot be
    trusted (the caller lets it and the payloads go, and loads the graph in full)."""


def apply(view, node: dict, tables: ImpactGraph, changes: Iterable[tuple]) -> set:
    """Apply `changes` ((operation, *arguments) each, operation one of OPERATIONS, in order) to `view` and
    `node`; returns the CI ids whose rows were read again. `tables` is the graph the view's edge data
    dicts and the payload dicts come from (its `_types` and `_payloads`, shared; its own dicts are neither
    read nor written). Raises ViewOutOfStep when the view and `node` disagree; on any exception, `view` and
    `node` may have taken part of the changes: let both go."""
    changes = list(changes)
    for change in changes:
        if not isinstance(change, tuple) or change[:1] == () or change[0] not in OPERATIONS:
            raise ValueError(f"not a change: {change!r}")
    ends = {ci_id for change in changes for ci_id in change[1:1 + OPERATIONS[change[0]]]}
    succ, pred = _rows(view, node, ends)
    touched: set = set()
    local = ImpactGraph.over(tables, node, succ, pred, touched)
    read = set(succ)
    for operation, *arguments in changes:
        getattr(local, operation)(*arguments)
    if not touched <= read | ends:
        raise ViewOutOfStep(f"a change touched CIs whose rows were not read: {sorted(map(str, touched - read - ends))[:5]}")
    view.pending.update(touched)
    view.refresh(SimpleNamespace(_node=node, _succ=succ))
    return touched


def _rows(view, node: dict, ends: set) -> tuple[dict, dict]:
    """The succ and pred dicts of every CI in `ends` that `node` holds and of every CI next to one in the
    view, each whole and in the view's order (the dicts' own)."""
    index, ids, table = view.index, view.ids, view.table
    around: dict = {}  # CI id -> its index, in the order met
    for ci_id in ends:
        if ci_id in node:
            i = index.get(ci_id)
            if i is None:
                raise ViewOutOfStep(f"CI {ci_id!r} is in the payloads but not in the view")
            around[ci_id] = i
    p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata = view.predecessors()
    rows = {}
    for ci_id, i in list(around.items()):
        heads, edata = _succ_row(view, i)
        tails, t_edata = _pred_row(view, i, p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata)
        rows[ci_id] = (heads, edata, tails, t_edata)
        for j in np.concatenate((heads, tails)).tolist():
            around.setdefault(ids[j], j)
    succ, pred = {}, {}
    for ci_id, i in around.items():
        if ci_id not in node:
            raise ViewOutOfStep(f"the view has edges of CI {ci_id!r}, which the payloads do not hold")
        heads, edata, tails, t_edata = rows.get(ci_id) or (
            *_succ_row(view, i), *_pred_row(view, i, p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata))
        succ[ci_id] = dict(zip(map(ids.__getitem__, heads.tolist()), map(table.__getitem__, edata.tolist())))
        pred[ci_id] = dict(zip(map(ids.__getitem__, tails.tolist()), map(table.__getitem__, t_edata.tolist())))
    return succ, pred


def _succ_row(view, i: int) -> tuple[np.ndarray, np.ndarray]:
    """CI i's successors and their edge data rows, as the compiled loops pick its row."""
    k = view.slot[i]
    if k >= 0:
        start = view.o_start[k]
        return view.o_heads[start:start + view.o_len[k]], view.o_edata[start:start + view.o_len[k]]
    if i < view.base_n:
        return view.heads[view.indptr[i]:view.indptr[i + 1]], view.edata[view.indptr[i]:view.indptr[i + 1]]
    return view.heads[:0], view.edata[:0]


def _pred_row(view, i: int, p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata) -> tuple[np.ndarray, np.ndarray]:
    """CI i's predecessors and the edge data rows of their edges into it: the base's whose tail's row is
    the base's, then the overlay's."""
    tails, edata = p_tails[:0], p_edata[:0]
    if i < view.base_n:
        tails, edata = p_tails[p_indptr[i]:p_indptr[i + 1]], p_edata[p_indptr[i]:p_indptr[i + 1]]
        kept = view.slot[tails] < 0
        tails, edata = tails[kept], edata[kept]
    lo, hi = np.searchsorted(op_heads, i, "left"), np.searchsorted(op_heads, i, "right")
    if hi > lo:
        tails = np.concatenate((tails, op_tails[lo:hi].astype(tails.dtype)))
        edata = np.concatenate((edata, op_edata[lo:hi].astype(edata.dtype)))
    return tails, edata
