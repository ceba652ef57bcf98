"""Change records applied to a compiled view (graph.compact) without the graph's dicts.

Why: a worker starting from a snapshot file has the view's arrays ~1 s after reading it, and the networkx
dicts ~4 s later at 1,000,000 CIs (~60 s at 10,000,000). The view can answer impact questions as soon as
the changes since the file was written are in it; this module puts them there with no dicts but the CIs'
payloads (`node`: ci_id -> its payload dict; a dict, or a graph.id_table.NodeTable over the view's ids).

How: the changes are applied, by ImpactGraph's own code (so every rule, covered dependencies included, is
the one the dicts follow), to a graph whose succ and pred dicts hold a CI's row only once that code asks for
it (`_Rows`), read then from the view. A row is written only after it is read, so a row not read yet is the
view's as it stood before the changes: every row the code reads is the one the dicts would hold at that
point. The rows of every CI the changes touched are then read into the view's overlay (CompactView.refresh),
in the order ImpactGraph keeps them: the view ends as the one the dicts would have given, row for row. What a
batch costs is the rows it reads (those the dicts' way walks too), not its CIs' neighbourhoods.

Not covered: a graph's `_spares` (the Python loop's cache; the view keeps its own member counts), and a
change of semantics (every edge is laid again: a full load).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Iterable

import numpy as np

import networkx as nx

from graph.id_table import names_at
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
    index = view.index
    for change in changes:
        for ci_id in change[1:1 + OPERATIONS[change[0]]]:
            if ci_id in node and ci_id not in index:
                raise ViewOutOfStep(f"CI {ci_id!r} is in the payloads but not in the view")
    predecessors = view.predecessors()
    removed: set = set()  # CIs a change removed: a row read while one is removed still names it
    succ = _Rows(view, node, removed, lambda i: _succ_row(view, i))
    pred = _Rows(view, node, removed, lambda i: _pred_row(view, i, *predecessors))
    touched: set = set()
    local = ImpactGraph.over(tables, node, succ, pred, touched)
    for operation, *arguments in changes:
        if operation == "remove_ci":
            removed.add(arguments[0])
        getattr(local, operation)(*arguments)
    view.pending.update(touched)
    view.refresh(SimpleNamespace(_node=node, _succ=succ))
    return touched


class _Rows(dict):
    """One side of the graph (succ or pred), each CI's row read from the view when ImpactGraph's code first
    asks for it. A CI is there when the payloads hold it and the view knows it (its row, maybe empty), or
    once the code set its row (a CI made by the changes); not once the code deleted it."""

    def __init__(self, view, node: dict, removed: set, row) -> None:
        super().__init__()
        self._view, self._node, self._removed, self._row, self._gone = view, node, removed, row, set()

    def _known(self, ci_id) -> bool:
        return ci_id not in self._gone and ci_id in self._node and ci_id in self._view.index

    def __missing__(self, ci_id):
        if not self._known(ci_id):
            raise KeyError(ci_id)
        ids, table, node, removed = self._view.ids, self._view.table, self._node, self._removed
        ends, data = self._row(self._view.index[ci_id])
        others = suspects = names_at(ids, ends)
        if len(others) > 64 and hasattr(node, "held_at"):  # a graph.id_table.NodeTable: a hub's row by position
            suspects = [others[j] for j in np.flatnonzero(~node.held_at(ids, ends)).tolist()]
        for other in suspects:
            if other not in node and other not in removed:
                raise ViewOutOfStep(f"the view has an edge of CI {other!r}, which the payloads do not hold")
        row = dict(zip(others, map(table.__getitem__, data.tolist())))
        dict.__setitem__(self, ci_id, row)
        return row

    def __contains__(self, ci_id) -> bool:
        return dict.__contains__(self, ci_id) or self._known(ci_id)

    def get(self, ci_id, default=None):
        try:
            return self[ci_id]
        except KeyError:
            return default

    def __setitem__(self, ci_id, row) -> None:
        dict.__setitem__(self, ci_id, row)
        self._gone.discard(ci_id)

    def __delitem__(self, ci_id) -> None:
        self[ci_id]  # noqa: B018 - a CI the side does not hold raises KeyError, as a dict's del does
        dict.__delitem__(self, ci_id)
        self._gone.add(ci_id)


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
    key = op_heads.dtype.type(i)  # a Python int would make numpy convert all of op_heads at each call
    lo, hi = np.searchsorted(op_heads, key, "left"), np.searchsorted(op_heads, key, "right")
    if hi > lo:
        tails = np.concatenate((tails, op_tails[lo:hi].astype(tails.dtype)))
        edata = np.concatenate((edata, op_edata[lo:hi].astype(edata.dtype)))
    return tails, edata


# The dicts are laid out a slice of CIs at a time, the graph's other threads getting the GIL in between, and
# the lay-out asked between slices whether it is still wanted.
LAY_OUT_SLICE = 1 << 14


def lay_out(view, node: dict, tables: ImpactGraph, stop=None) -> "nx.DiGraph":
    """The networkx graph (nodes, succ and pred dicts) of the base of a view made by CompactView.rebased, whose
    CIs' payloads were `node` then (its overlay, which changes applied since fill, is not read): each CI's succ
    dict its row, in the row's order, each pred dict its
    predecessors as the view's base holds them (their order among the CIs; no answer depends on it), every
    edge on the view's very edge data dict (`tables`' shared dicts, as the graph's own). The CIs of the view
    that `node` does not hold (gone, with empty rows) are left out. Needs no lock: the base's arrays never
    change, and the view's ids list only grows. `stop()`, asked between slices: true, this raises
    LayOutGivenUp."""
    import gc
    from itertools import islice, repeat

    from graph.impact_graph import LayOutGivenUp

    laid = ImpactGraph(tables._types.semantics)
    laid._types, laid._payloads = tables._types, tables._payloads
    g = laid.graph
    n, ids, table = view.base_n, view.ids, view.table
    if not isinstance(ids, list):  # a graph.id_table.IdTable: the ids as the dicts will hold them, decoded once
        ids = list(ids)
    p_indptr, p_tails, p_edata = view._base_predecessors()
    counts, p_counts = memoryview(np.diff(view.indptr)), memoryview(np.diff(p_indptr))
    was_enabled = gc.isenabled()
    gc.disable()  # millions of containers made: no collection walks them meanwhile (none is a cycle)
    try:
        payloads_at = getattr(node, "payloads_at", None)  # (a graph.id_table.NodeTable: by position)
        for start in range(0, n, LAY_OUT_SLICE):  # the CIs in the view's order, as both sides list them
            part = ids[start:min(n, start + LAY_OUT_SLICE)]
            g._node.update(zip(part, map(node.get, part) if payloads_at is None else
                               payloads_at(view.ids, np.arange(start, start + len(part)), strict=False)))
        for side, ends, rows, widths in ((g._succ, view.heads, view.edata, counts),
                                         (g._pred, p_tails, p_edata, p_counts)):
            # C-level passes (no Python frame per CI or edge), as graph.snapshot lays a file's dicts out.
            pairs = zip(map(ids.__getitem__, memoryview(ends)), map(table.__getitem__, memoryview(rows)))
            for start in range(0, n, LAY_OUT_SLICE):
                if stop is not None and stop():
                    raise LayOutGivenUp()
                side.update(zip(ids[start:min(n, start + LAY_OUT_SLICE)],
                                map(dict, map(islice, repeat(pairs), widths[start:start + LAY_OUT_SLICE]))))
        for ci_id in [ids[i] for i in view.gone]:  # the CIs gone, kept by the view with empty rows
            if ci_id not in node:
                del g._node[ci_id], g._succ[ci_id], g._pred[ci_id]
    finally:
        if was_enabled:
            gc.enable()
    if len(g._node) != len(node) or None in g._node.values():
        raise ViewOutOfStep(f"the view holds {len(g._node)} CIs, the payloads {len(node)}")
    gc.freeze()  # as a load does: the new dicts out of the collector's reach
    return g
