"""An integer-indexed copy of the impact graph's adjacency, and impact propagation compiled over it.

Why: on a graph of a million CIs, `graph.propagation.impact` spends its time on cache misses in
networkx's dicts (a lookup per edge into a million-entry dict), not on its own logic. This module
keeps, beside the networkx graph (which stays the graph every algorithm is written against), the
same adjacency as arrays, and runs the very loop of `propagation.impact`, statement for statement,
compiled with numba over them. Each CI's successors are laid out in its dict's order, so the
compiled loop discovers CIs in the same order, picks the same parent on the same shortest path and
gives the same states as the Python loop: answers are identical, entry for entry (tests/graph/
test_compact.py holds them to it on random graphs and random changes). Root cause's candidates and
whole-graph walks, the single points of failure (graph.causes), graph.providers' walk and
ImpactGraph.neighborhood's run compiled over the same arrays, with the same answers.

Layout (a `CompactView`):
  - every CI has an index (`ids[i]`, `index[ci_id]`); a CI the graph gained since the base was
    built is appended. `ids` is a list and `index` a dict, or, in a view made from a snapshot file, a
    graph.id_table.IdTable and its index (the ids as fixed-width bytes, sorted, found by binary search:
    ~45 bytes a CI instead of ~180, and shared by a host's workers);
  - the base: CSR arrays of the successors as they were when the view was built (`indptr`,
    `heads`, and per edge the index of its shared data dict in `table`);
  - an overlay for the CIs changed since (the graph calls `touch` for every CI whose successors or
    payload it changes): each such CI's row is read again from the dicts, appended to the overlay
    arrays, and `slot[i]` points at it; the base row is then ignored. A removed CI gets an empty row;
  - the predecessors, for the walks over providers: the base's by head (CSR, made once), and the
    overlay rows' edges sorted by head, patched with the rows read again since when a walk next needs
    them (the kept edges copied, not sorted again; made afresh once half the overlay's rows are due);
  - per CI its redundancy `k` (`min_members`, None read as 1) and, per kind key (a type filter),
    how many members each group has: counted from the base and corrected by the overlay's rows at
    the key's first question, then moved by each refresh for the rows it reads again (their old
    edges out, their new ones in); the group's spare members are `members - k`, as
    `propagation.spare_members` counts them.
  - a view whose overlay has grown past a fraction of the graph asks to be rebuilt (`stale`).

A view is built in slices of CIs, the graph's lock taken per slice (`build`), so that a worker's
other threads are not held for the seconds a million CIs take. Whatever changes while it is built is
recorded by `touch` from its start, so a row read in a slice that later changed is read again into
the overlay: the view is exact as soon as it is installed, whatever happened meanwhile.

Pure computation: it imports numpy and numba, never `app/`, a web framework or a database driver.
"""

from __future__ import annotations

import heapq
from array import array
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
from numba import njit

from graph.id_table import names_at as _names
from graph.propagation import ImpactedCI, ImpactedMap
from graph.semantics import AT_RISK, DEGRADED, DOWN, MEMBER, ORDINARY, STATE_NAMES

MIN_MEMBERS_KEY = "min_members"
# A view whose overlay holds more rows than this share of its CIs (at least REBUILD_MIN_ROWS), or more
# edges than this share of the base's (at least REBUILD_MIN_EDGES), asks to be built afresh: the overlay
# is read through a second array and grows with the changes (a row rewritten in place while it fits).
REBUILD_SHARE = 0.125
REBUILD_MIN_ROWS = 50_000
REBUILD_MIN_EDGES = 500_000
# min_members as the arrays hold it: clipped into a range where `members - k` cannot overflow. No answer
# changes: past the bound a group is down at its first lost member either way, and before it never.
K_BOUND = 1 << 30
# Per-filter caches kept at most (a filter is a set of relationship types asked for).
FILTERS_KEPT = 64
# The compiled walks' per-CI arrays, in order (CompactView._scratch).
_SCRATCH_TYPES = (np.int32, np.int8, np.int32, np.int32, np.int32)


def clipped_k(k) -> int:
    """A CI's `min_members` as the arrays hold it (None counts as 1)."""
    return 1 if k is None else max(-K_BOUND, min(K_BOUND, k))


# ---- the compiled loops ------------------------------------------------------------------------
#
# Each loop picks a CI's row (its overlay row when it changed since the base was built, else its base row)
# with the same few lines, written out in each: a compiled helper returning (lo, hi, heads, edata), even
# inlined by numba, made impact 3x slower at 1,000,000 CIs (0.35 -> 1.1 ms a question, measured).


def _compiled(function):
    """numba's compiled function, cached on disk (next to this file, else in the user's cache directory)
    so that a worker that starts loads it instead of compiling it for ~2 s; compiled in each process when
    neither is writable (NUMBA_CACHE_DIR names another place)."""
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True)(function)



@_compiled
def _propagate(indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, kinds, members, kk,
               failed, max_depth, state, done, lost, order, parent, dist):  # pragma: no cover - compiled
    """propagation.impact over the arrays; state/done hold -1 and lost 0 for every CI on entry, and
    again on return. Returns (how many CIs were discovered, their final states): the discovered CIs
    are order[:n], each found from parent[:n], dist[:n] hops from the failed ones."""
    n_order = 0
    for f in failed:
        state[f] = DOWN
    level = [np.int64(x) for x in failed]
    redo = [np.int64(0)]
    redo.pop()
    d = 0
    redoing = False
    while len(level) > 0 or len(redo) > 0:
        if len(level) == 0:
            level = redo
            redo = [np.int64(0)]
            redo.pop()
            redoing = True
        at_bound = (not redoing) and d == max_depth
        nxt = [np.int64(0)]
        nxt.pop()
        for u in level:
            s = state[u]
            if redoing and done[u] == s:
                continue
            done[u] = s
            s_ord = DOWN if s == DOWN else AT_RISK
            k = slot[u]
            if k < 0 and u < base_n:
                lo, hi, hs, es = indptr[u], indptr[u + 1], heads, edata
            elif k >= 0:
                lo = o_start[k]
                hi = lo + o_len[k]
                hs, es = o_heads, o_edata
            else:
                lo, hi, hs, es = 0, 0, heads, edata
            for j in range(lo, hi):
                v = hs[j]
                kind = kinds[es[j]]
                if kind == 0:
                    continue
                sv = state[v]
                if sv < 0:
                    if at_bound or redoing:
                        continue
                    order[n_order] = v
                    parent[n_order] = u
                    dist[n_order] = d + 1
                    n_order += 1
                    nxt.append(np.int64(v))
                    if kind == ORDINARY:
                        state[v] = s_ord
                        continue
                    sv = 0
                elif sv == DOWN:
                    continue
                new = s_ord if kind & ORDINARY else 0
                if kind & MEMBER and new != DOWN:
                    if s == DOWN:
                        lost[v] += 1
                        new = DOWN if lost[v] > members[v] - kk[v] else DEGRADED
                    elif new < AT_RISK:
                        new = AT_RISK
                if new > sv:
                    state[v] = new
                    if done[v] >= 0:
                        redo.append(np.int64(v))
        level = nxt
        if not redoing:
            d += 1
    states = np.empty(n_order, np.int8)
    for i in range(n_order):
        v = order[i]
        states[i] = state[v]
        state[v] = -1
        done[v] = -1
        lost[v] = 0
    for f in failed:
        state[f] = -1
        done[f] = -1
    return n_order, states


@_compiled
def _advance(indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, kinds, members, kk, down, lost,
             stack, sp, outside, count, cap):  # pragma: no cover - compiled
    """causes.ExtraWalk.advance over the arrays, statement for statement: walk on (the stack's top first,
    each row in its dict's order) until the count of CIs down outside `outside` passes `cap` or the walk
    ends. Returns (count, the stack's new size)."""
    while sp > 0 and count <= cap:
        sp -= 1
        u = stack[sp]
        k = slot[u]
        if k < 0 and u < base_n:
            lo, hi, hs, es = indptr[u], indptr[u + 1], heads, edata
        elif k >= 0:
            lo = o_start[k]
            hi = lo + o_len[k]
            hs, es = o_heads, o_edata
        else:
            lo, hi, hs, es = 0, 0, heads, edata
        for j in range(lo, hi):
            v = hs[j]
            if down[v]:
                continue
            kind = kinds[es[j]]
            if not kind & ORDINARY:
                if not kind:
                    continue
                lost[v] += 1
                if lost[v] <= members[v] - kk[v]:
                    continue
            down[v] = 1
            stack[sp] = v
            sp += 1
            if not outside[v]:
                count += 1
    return count, sp


@_compiled
def _grow(array, size):  # pragma: no cover - compiled
    """`array` with room for `size` entries (doubling)."""
    if array.shape[0] >= size:
        return array
    bigger = np.empty(max(size, 2 * array.shape[0]), array.dtype)
    bigger[:array.shape[0]] = array
    return bigger


@_compiled
def _upstream(base_n, slot, p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata, kinds, seeds,
              dist):  # pragma: no cover - compiled
    """The CIs upstream of `seeds` along impact edges, breadth-first over providers, the seeds first, each
    once (causes.DownWalk.ancestors); in `dist` (zeroed) each one's hop distance + 1, 0 elsewhere. Returns
    them in that order and how many there are."""
    up = np.empty(16, np.int64)
    count = 0
    for i in range(seeds.shape[0]):
        v = seeds[i]
        if dist[v] == 0:
            dist[v] = 1
            up = _grow(up, count + 1)
            up[count] = v
            count += 1
    head = 0
    while head < count:
        v = up[head]
        head += 1
        d = dist[v] + 1
        lo, hi = (p_indptr[v], p_indptr[v + 1]) if v < base_n else (0, 0)
        for j in range(lo, hi):
            u = p_tails[j]
            if slot[u] >= 0 or dist[u] or not kinds[p_edata[j]]:
                continue  # a changed CI's edges are in the overlay
            dist[u] = d
            up = _grow(up, count + 1)
            up[count] = u
            count += 1
        lo = np.searchsorted(op_heads, v, side="left")
        hi = np.searchsorted(op_heads, v, side="right")
        for j in range(lo, hi):
            u = op_tails[j]
            if dist[u] or not kinds[op_edata[j]]:
                continue
            dist[u] = d
            up = _grow(up, count + 1)
            up[count] = u
            count += 1
    return up, count


@_compiled
def _candidates(indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, p_indptr, p_tails, p_edata,
                op_heads, op_tails, op_edata, kinds, members, kk, symptoms):  # pragma: no cover - compiled
    """causes.root_cause's first part over the arrays: the symptoms' ancestors along impact edges, and for
    every ancestor that can explain something (a symptom, or one with an edge inside the ancestors that
    carries ordinary impact or reaches a group with no spare member) its down closure inside the ancestors
    (causes.DownWalk.closure_in). Returns, for each candidate whose closure holds a symptom, in the
    ancestors' breadth-first order: its index, its closure's size outside the symptoms (the lower bound),
    the positions in `symptoms` it explains (CSR), and its closure (CSR)."""
    n = slot.shape[0]
    inside = np.zeros(n, np.int32)  # an ancestor's hop distance + 1, 0 elsewhere
    sym = np.full(n, -1, np.int32)
    for i in range(symptoms.shape[0]):
        sym[symptoms[i]] = i
    up, count = _upstream(base_n, slot, p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata, kinds, symptoms,
                          inside)
    down_at = np.zeros(n, np.int32)  # the candidate (ordinal + 1) whose closure holds the CI
    lost_at = np.zeros(n, np.int32)
    lost = np.zeros(n, np.int32)
    stack = np.empty(max(count, 1), np.int64)
    cands = np.empty(16, np.int64)
    bounds = np.empty(16, np.int64)
    e_ptr = np.zeros(17, np.int64)
    e_pos = np.empty(16, np.int32)
    c_ptr = np.zeros(17, np.int64)
    c_nodes = np.empty(16, np.int32)
    kept = 0
    for ordinal in range(count):
        c = up[ordinal]
        k = slot[c]
        if k < 0 and c < base_n:
            lo, hi, hs, es = indptr[c], indptr[c + 1], heads, edata
        elif k >= 0:
            lo = o_start[k]
            hi = lo + o_len[k]
            hs, es = o_heads, o_edata
        else:
            lo, hi, hs, es = 0, 0, heads, edata
        if sym[c] < 0:
            able = False
            for j in range(lo, hi):
                v = hs[j]
                kind = kinds[es[j]]
                if kind and inside[v] and (kind & ORDINARY or members[v] - kk[v] < 1):
                    able = True
                    break
            if not able:
                continue
        stamp = ordinal + 1
        down_at[c] = stamp
        stack[0] = c
        sp = 1
        c_start = c_ptr[kept]
        c_nodes = _grow(c_nodes, c_start + 1)
        c_nodes[c_start] = c
        size = 1
        while sp > 0:
            sp -= 1
            u = stack[sp]
            k = slot[u]
            if k < 0 and u < base_n:
                lo, hi, hs, es = indptr[u], indptr[u + 1], heads, edata
            elif k >= 0:
                lo = o_start[k]
                hi = lo + o_len[k]
                hs, es = o_heads, o_edata
            else:
                lo, hi, hs, es = 0, 0, heads, edata
            for j in range(lo, hi):
                v = hs[j]
                kind = kinds[es[j]]
                if not kind or not inside[v] or down_at[v] == stamp:
                    continue
                if not kind & ORDINARY:
                    if lost_at[v] != stamp:
                        lost_at[v] = stamp
                        lost[v] = 0
                    lost[v] += 1
                    if lost[v] <= members[v] - kk[v]:
                        continue
                down_at[v] = stamp
                stack[sp] = v
                sp += 1
                c_nodes = _grow(c_nodes, c_start + size + 1)
                c_nodes[c_start + size] = v
                size += 1
        explained = 0
        e_start = e_ptr[kept]
        for i in range(symptoms.shape[0]):
            if down_at[symptoms[i]] == stamp:
                e_pos = _grow(e_pos, e_start + explained + 1)
                e_pos[e_start + explained] = i
                explained += 1
        if explained == 0:
            continue  # its closure is dropped: the next kept one is written over it
        cands = _grow(cands, kept + 1)
        bounds = _grow(bounds, kept + 1)
        e_ptr = _grow(e_ptr, kept + 2)
        c_ptr = _grow(c_ptr, kept + 2)
        cands[kept] = c
        bounds[kept] = size - explained
        e_ptr[kept + 1] = e_start + explained
        c_ptr[kept + 1] = c_start + size
        kept += 1
    return cands[:kept], bounds[:kept], e_ptr[:kept + 1], e_pos[:e_ptr[kept]], c_ptr[:kept + 1], c_nodes[:c_ptr[kept]]


@_compiled
def _spof(indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, p_indptr, p_tails, p_edata,
          op_heads, op_tails, op_edata, kinds, members, kk, target, dist, found, down_at, lost_at,
          lost):  # pragma: no cover - compiled
    """causes.spof over the arrays: the target's ancestors along impact edges with their hop distance, then
    each ancestor that can take something down (causes.spof's test) walked inside the ancestors, nearest
    first, until its down closure reaches the target or a single point of failure already found (closures
    are monotone: that one takes the target down). Returns the points found (indexes, the target left out)
    and their distances, in the order found. `dist` (hop distance + 1, 0 for a CI not upstream), `found`,
    `down_at`, `lost_at` and `lost`, one entry per CI, come zeroed and are left zeroed (only the ancestors'
    entries are ever written, and they are cleared before returning): the view keeps them from one question
    to the next, where five arrays of a million entries made and zeroed cost more than a small answer."""
    up, count = _upstream(base_n, slot, p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata, kinds,
                          np.array([target], np.int64), dist)
    found[target] = 1
    stack = np.empty(max(count, 1), np.int64)
    points = np.empty(max(count, 1), np.int64)
    kept = 0
    for ordinal in range(1, count):
        c = up[ordinal]
        k = slot[c]
        if k < 0 and c < base_n:
            lo, hi, hs, es = indptr[c], indptr[c + 1], heads, edata
        elif k >= 0:
            lo = o_start[k]
            hi = lo + o_len[k]
            hs, es = o_heads, o_edata
        else:
            lo, hi, hs, es = 0, 0, heads, edata
        able = False
        for j in range(lo, hi):
            v = hs[j]
            kind = kinds[es[j]]
            if kind and dist[v] and (kind & ORDINARY or members[v] - kk[v] < 1):
                able = True
                break
        if not able:
            continue  # alone it takes nothing down
        stamp = ordinal + 1
        down_at[c] = stamp
        stack[0] = c
        sp = 1
        hit = False
        while sp > 0 and not hit:
            sp -= 1
            u = stack[sp]
            k = slot[u]
            if k < 0 and u < base_n:
                lo, hi, hs, es = indptr[u], indptr[u + 1], heads, edata
            elif k >= 0:
                lo = o_start[k]
                hi = lo + o_len[k]
                hs, es = o_heads, o_edata
            else:
                lo, hi, hs, es = 0, 0, heads, edata
            for j in range(lo, hi):
                v = hs[j]
                kind = kinds[es[j]]
                if not kind or not dist[v] or down_at[v] == stamp:
                    continue
                if not kind & ORDINARY:
                    if lost_at[v] != stamp:
                        lost_at[v] = stamp
                        lost[v] = 0
                    lost[v] += 1
                    if lost[v] <= members[v] - kk[v]:
                        continue
                if found[v]:
                    hit = True
                    break
                down_at[v] = stamp
                stack[sp] = v
                sp += 1
        if hit:
            found[c] = 1
            points[kept] = c
            kept += 1
    points = points[:kept]
    distances = dist[points] - 1
    for i in range(count):
        v = up[i]
        dist[v] = 0
        found[v] = 0
        down_at[v] = 0
        lost_at[v] = 0
        lost[v] = 0
    return points, distances


@_compiled
def _providers(base_n, slot, p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata, kinds, target,
               dist):  # pragma: no cover - compiled
    """graph.providers' walk over the arrays: the CIs upstream of `target` along impact edges, itself left
    out. `dist` comes zeroed and is left zeroed (see _spof)."""
    up, count = _upstream(base_n, slot, p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata, kinds,
                          np.array([target], np.int64), dist)
    for i in range(count):
        dist[up[i]] = 0
    return up[1:count]


@_compiled
def _neighborhood(indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, p_indptr, p_tails, p_edata,
                  op_heads, op_tails, op_edata, allow, start, depth, down, up, dist):  # pragma: no cover - compiled
    """ImpactGraph.neighborhood's walk over the arrays: the CIs within `depth` hops of `start` along edges
    whose data row `allow`s them, following dependents (`down`) and providers (`up`); then every allowed
    edge among them (the caller keeps the types asked for of each). Returns the CIs (breadth-first) and the
    edges as tails, heads and data rows. `dist` comes zeroed and is left zeroed (see _spof)."""
    seen = np.empty(16, np.int64)
    dist[start] = 1
    seen[0] = start
    count = 1
    head = 0
    while head < count:
        u = seen[head]
        head += 1
        d = dist[u]  # hops + 1: what a CI found from u gets is d + 1
        if d > depth:
            continue
        if down:
            k = slot[u]
            if k < 0 and u < base_n:
                lo, hi, hs, es = indptr[u], indptr[u + 1], heads, edata
            elif k >= 0:
                lo = o_start[k]
                hi = lo + o_len[k]
                hs, es = o_heads, o_edata
            else:
                lo, hi, hs, es = 0, 0, heads, edata
            for j in range(lo, hi):
                v = hs[j]
                if dist[v] or not allow[es[j]]:
                    continue
                dist[v] = d + 1
                seen = _grow(seen, count + 1)
                seen[count] = v
                count += 1
        if up:
            lo, hi = (p_indptr[u], p_indptr[u + 1]) if u < base_n else (0, 0)
            for j in range(lo, hi):
                v = p_tails[j]
                if slot[v] >= 0 or dist[v] or not allow[p_edata[j]]:
                    continue  # a changed CI's edges are in the overlay
                dist[v] = d + 1
                seen = _grow(seen, count + 1)
                seen[count] = v
                count += 1
            lo = np.searchsorted(op_heads, u, side="left")
            hi = np.searchsorted(op_heads, u, side="right")
            for j in range(lo, hi):
                v = op_tails[j]
                if dist[v] or not allow[op_edata[j]]:
                    continue
                dist[v] = d + 1
                seen = _grow(seen, count + 1)
                seen[count] = v
                count += 1
    tails, ends, rows = _among(indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, seen[:count],
                               dist, allow)
    for i in range(count):
        dist[seen[i]] = 0
    return seen[:count], tails, ends, rows


@_compiled
def _among(indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, nodes, inside,
           allow):  # pragma: no cover - compiled
    """The edges among `nodes` (each once; `inside` is non-zero for each of them, 0 elsewhere) whose data row
    `allow`s them: per edge its tail, its head and its data row, each tail's in its row's order, the tails in
    the order given."""
    tails = np.empty(16, np.int64)
    ends = np.empty(16, np.int64)
    rows = np.empty(16, np.int64)
    m = 0
    for i in range(nodes.shape[0]):
        u = nodes[i]
        k = slot[u]
        if k < 0 and u < base_n:
            lo, hi, hs, es = indptr[u], indptr[u + 1], heads, edata
        elif k >= 0:
            lo = o_start[k]
            hi = lo + o_len[k]
            hs, es = o_heads, o_edata
        else:
            lo, hi, hs, es = 0, 0, heads, edata
        for j in range(lo, hi):
            v = hs[j]
            if inside[v] and allow[es[j]]:
                tails = _grow(tails, m + 1)
                ends = _grow(ends, m + 1)
                rows = _grow(rows, m + 1)
                tails[m], ends[m], rows[m] = u, v, es[j]
                m += 1
    return tails[:m], ends[:m], rows[:m]


@_compiled
def _current_rows(indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, keep,
                  remap):  # pragma: no cover - compiled
    """The rows of the CIs `keep` as they stand (overlay or base), laid out as a base: (indptr, heads, data rows),
    every head renumbered by `remap` (its position among `keep`); and False when a head is one `remap` drops
    (-1): a row naming a CI the graph no longer holds (never, in a view kept by the graph)."""
    n = keep.shape[0]
    ptr = np.zeros(n + 1, np.int64)
    for t in range(n):
        u = keep[t]
        k = slot[u]
        if k >= 0:
            width = o_len[k]
        elif u < base_n:
            width = indptr[u + 1] - indptr[u]
        else:
            width = 0
        ptr[t + 1] = ptr[t] + width
    out_heads = np.empty(ptr[n], np.int32)
    out_edata = np.empty(ptr[n], np.int32)
    for t in range(n):
        u = keep[t]
        k = slot[u]
        if k < 0 and u < base_n:
            lo, hi, hs, es = indptr[u], indptr[u + 1], heads, edata
        elif k >= 0:
            lo = o_start[k]
            hi = lo + o_len[k]
            hs, es = o_heads, o_edata
        else:
            lo, hi, hs, es = 0, 0, heads, edata
        at = ptr[t]
        for j in range(lo, hi):
            v = remap[hs[j]]
            if v < 0:
                return ptr, out_heads, out_edata, False
            out_heads[at] = v
            out_edata[at] = es[j]
            at += 1
    return ptr, out_heads, out_edata, True


@_compiled
def _count_members(indptr, heads, edata, kinds, n):  # pragma: no cover - compiled
    """Per CI, how many base edges carrying membership point at it."""
    counts = np.zeros(n, np.int32)
    for j in range(indptr[-1]):
        if kinds[edata[j]] & MEMBER:
            counts[heads[j]] += 1
    return counts


@_compiled
def _fix_members(counts, indptr, heads, edata, base_n, slot, o_start, o_len, o_heads, o_edata, kinds,
                 changed):  # pragma: no cover - compiled
    """Correct base member counts (in place) for the CIs in `changed`: their base rows out, their
    overlay rows in."""
    for u in changed:
        if u < base_n:
            for j in range(indptr[u], indptr[u + 1]):
                if kinds[edata[j]] & MEMBER:
                    counts[heads[j]] -= 1
        k = slot[u]
        for j in range(o_start[k], o_start[k] + o_len[k]):
            if kinds[o_edata[j]] & MEMBER:
                counts[o_heads[j]] += 1


@_compiled
def _move_members(counts, kinds, indptr, heads, edata, slot, o_start, o_len, o_heads, o_edata, old_heads, old_edata,
                  first, done):  # pragma: no cover - compiled
    """Move member counts (in place) for rows just read again: the replaced overlay rows' edges (`old_heads`,
    `old_edata`) and the base rows of the CIs in `first` out, the current overlay rows of the CIs in `done` in."""
    for j in range(old_heads.shape[0]):
        if kinds[old_edata[j]] & MEMBER:
            counts[old_heads[j]] -= 1
    for u in first:
        for j in range(indptr[u], indptr[u + 1]):
            if kinds[edata[j]] & MEMBER:
                counts[heads[j]] -= 1
    for u in done:
        k = slot[u]
        for j in range(o_start[k], o_start[k] + o_len[k]):
            if kinds[o_edata[j]] & MEMBER:
                counts[o_heads[j]] += 1


# ---- the view ------------------------------------------------------------------------------------


def _grown(array: np.ndarray, size: int, fill) -> np.ndarray:
    """`array` with room for at least `size` entries (doubling), new entries set to `fill`."""
    if array.shape[0] >= size:
        return array
    bigger = np.full(max(size, 2 * array.shape[0], 1024), fill, array.dtype)
    bigger[:array.shape[0]] = array
    return bigger


class CompactView:
    """See the module docstring. Used only under the owning graph's lock."""

    def __init__(self, ids, index, indptr: np.ndarray, heads: np.ndarray, edata: np.ndarray,
                 table: list, kk: np.ndarray, pending: set):
        # ids: a list, or a graph.id_table.IdTable; index: a dict, or the table's index (the same interface).
        self.ids, self.index = ids, index
        self.base_n = len(ids)
        self.indptr, self.heads, self.edata = indptr, heads, edata
        self.table = table
        self._table_index = {id(data): i for i, data in enumerate(table)}
        capacity = max(self.base_n, 1)
        self.kk = _grown(kk, capacity, 1)
        self.slot = np.full(capacity, -1, np.int32)
        self.o_start = np.zeros(1024, np.int64)
        self.o_len = np.zeros(1024, np.int32)
        self.o_cap = np.zeros(1024, np.int64)  # room of each row, rewritten in place while the CI's row fits
        self.o_heads = np.zeros(4096, np.int32)
        self.o_edata = np.zeros(4096, np.int32)
        self.rows = 0  # overlay rows used
        self.o_used = 0  # overlay edges used
        self.changed: list[int] = []  # CIs with an overlay row, each once
        self.pending = pending  # CIs touched since the last refresh (the graph adds to it)
        self.made_from = "graph"  # or "snapshot" (from_snapshot)
        self._kinds: dict[str, tuple[int, np.ndarray]] = {}
        # Per kind key, each CI's member count as the graph stands: made once per key (the base's counted,
        # corrected by every overlay row), then kept by refresh(), which moves the counts of the rows it reads
        # again (their old edges out, their new ones in) instead of them all being counted again.
        self._counts: dict[str, np.ndarray] = {}
        self._pred: tuple | None = None  # the base's predecessors (CSR), made by build() before the view is installed
        self._pred_overlay: tuple | None = None  # the overlay rows' edges by head (predecessors())
        self._pred_dirty: set = set()  # CIs whose rows were read again since: patched in at the next use
        self.state = np.full(capacity, -1, np.int8)
        self.done = np.full(capacity, -1, np.int8)
        self.lost = np.zeros(capacity, np.int32)
        self.order = np.empty(capacity, np.int32)
        self.parent = np.empty(capacity, np.int32)
        self.dist = np.empty(capacity, np.int32)
        self._walk_scratch: tuple | None = None  # the compiled walks' per-CI arrays (_scratch)
        self.shared_base = None  # graph.shared_base.Base whose mapping holds the base's arrays, if shared
        self.gone: list = []  # CIs the graph no longer held that a rebase kept, with empty rows (rebased)
        self.kept: np.ndarray | None = None  # (rebased)

    def __len__(self) -> int:
        return len(self.ids)

    def links(self) -> int:
        """How many edges the rows hold as they stand (ImpactGraph.number_of_links of a graph whose dicts
        are not laid out)."""
        changed = np.array(self.changed, np.int64)
        replaced = changed[changed < self.base_n]
        return int(self.indptr[-1] - (self.indptr[replaced + 1] - self.indptr[replaced]).sum()
                   + self.o_len[self.slot[changed]].sum(dtype=np.int64))

    @property
    def stale(self) -> bool:
        return (self.rows > max(REBUILD_MIN_ROWS, REBUILD_SHARE * self.base_n)
                or self.o_used > max(REBUILD_MIN_EDGES, REBUILD_SHARE * self.heads.shape[0]))

    # ---- keeping current -------------------------------------------------------------------------

    def refresh(self, graph) -> None:
        """Read the rows of the CIs touched since the last refresh from the graph's dicts (under its lock).
        A CI leaves `pending` only once its row is read: a refresh that fails midway leaves the rest due."""
        if not self.pending:
            return
        node, succ = graph._node, graph._succ
        index, touched = self.index, list(self.pending)
        for ci_id in touched:  # new CIs first: a row may name one as its head
            if ci_id not in index:
                self._append(ci_id)
        positions_of = getattr(self.ids, "positions", None)  # a graph.id_table.IdTable: a row's heads at once
        heads_at: dict = {}
        for ci_id in touched:
            row = succ.get(ci_id)
            if row is not None:
                at = None if positions_of is None else positions_of(row)
                if at is None or bool((at < 0).any()):
                    for v in row:
                        if v not in index:  # defensive: every CI the graph gained was touched
                            self._append(v)
                    if at is not None:
                        at = positions_of(row)
                if at is not None:
                    heads_at[ci_id] = at
        slot, kk, data_index = self.slot, self.kk, self._data_index
        if self._pred_overlay is not None:  # whatever is read below, even if not all of it: patched in when used
            self._pred_dirty.update(index[ci_id] for ci_id in touched)
            if len(self._pred_dirty) > len(self.changed) // 2:  # a patch would cost what making them afresh does
                self._pred_overlay = None
                self._pred_dirty.clear()
        counted = bool(self._counts)  # member counts kept: the rows replaced are noted, to move them
        old, from_base, done = [], [], []
        try:
            for ci_id in touched:
                i = index[ci_id]
                row = succ.get(ci_id)
                payload = node.get(ci_id)
                if payload is not None:
                    kk[i] = clipped_k(payload[MIN_MEMBERS_KEY])
                width = 0 if row is None else len(row)
                k = slot[i]
                if counted:
                    if k >= 0:
                        start, end = self.o_start[k], self.o_start[k] + self.o_len[k]
                        old.append((self.o_heads[start:end].copy(), self.o_edata[start:end].copy()))
                    elif i < self.base_n:
                        from_base.append(i)
                    done.append(i)
                if k < 0 or self.o_cap[k] < width:  # a new row, with room to grow by a quarter
                    room = width + width // 4 + 4
                    self._room(room)  # first: if it fails, nothing says the CI has a row (it stays pending)
                    if k < 0:
                        self.changed.append(i)
                    k = slot[i] = self.rows
                    self.o_start[k], self.o_cap[k] = self.o_used, room
                    self.rows += 1
                    self.o_used += room
                start = self.o_start[k]
                if width:
                    at = heads_at.get(ci_id)
                    self.o_heads[start:start + width] = [index[v] for v in row] if at is None else at
                    self.o_edata[start:start + width] = [data_index(data) for data in row.values()]
                self.o_len[k] = width
                self.pending.discard(ci_id)
            # Emptied one by one, a set keeps the table it grew to (50,000 CIs read in one refresh: 2 MiB),
            # and every later refresh's list() walks all of it (0.5 ms a question): clear() lets it go.
            if not self.pending:
                self.pending.clear()
            if counted:
                self._moved(old, from_base, done)
        except BaseException:  # a row half read, or counts half moved: they are counted afresh when next asked
            self._counts.clear()
            raise

    def _append(self, ci_id) -> None:
        i = len(self.ids)
        n = i + 1
        # The arrays grown first: if an allocation fails, the view is as it was (the CI stays pending).
        grown = (_grown(self.kk, n, 1), _grown(self.slot, n, -1), _grown(self.state, n, -1),
                 _grown(self.done, n, -1), _grown(self.lost, n, 0))
        walks = None
        if self.order.shape[0] < n:
            walks = tuple(np.empty(grown[2].shape[0], np.int32) for _ in range(3))
        self.kk, self.slot, self.state, self.done, self.lost = grown
        if walks is not None:
            self.order, self.parent, self.dist = walks
        self.ids.append(ci_id)
        self.index[ci_id] = i

    def _room(self, width: int) -> None:
        if self.rows + 1 > self.o_start.shape[0]:
            self.o_start = _grown(self.o_start, self.rows + 1, 0)
            self.o_len = _grown(self.o_len, self.rows + 1, 0)
            self.o_cap = _grown(self.o_cap, self.rows + 1, 0)
        if self.o_used + width > self.o_heads.shape[0]:
            self.o_heads = _grown(self.o_heads, self.o_used + width, 0)
            self.o_edata = _grown(self.o_edata, self.o_used + width, 0)

    def _data_index(self, data: dict) -> int:
        i = self._table_index.get(id(data))
        if i is None:
            i = self._table_index[id(data)] = len(self.table)
            self.table.append(data)  # held here, so its id is never reused
        return i

    # ---- answering -------------------------------------------------------------------------------

    def kinds(self, kind_key: str) -> np.ndarray:
        """Each shared edge dict's kind under `kind_key` (the graph registered the key on every dict first)."""
        cached = self._kinds.get(kind_key)
        if cached is None or cached[0] != len(self.table):
            if len(self._kinds) >= FILTERS_KEPT:
                self._kinds.clear()
            cached = self._kinds[kind_key] = (len(self.table),
                                              np.array([data[kind_key] for data in self.table], np.int8))
        return cached[1]

    def members(self, kind_key: str, kinds: np.ndarray) -> np.ndarray:
        """Per CI, how many members it has (edges carrying membership into it) as the graph stands. Kept
        current by refresh(): only a key's first question counts every edge and overlay row, and every key's
        next one once FILTERS_KEPT keys were kept (all let go then), a refresh failed, or the graph forgot
        the type filter."""
        counts = self._counts.get(kind_key)
        if counts is None:
            counts = _grown(_count_members(self.indptr, self.heads, self.edata, kinds, self.base_n), len(self.ids), 0)
            if self.changed:
                _fix_members(counts, self.indptr, self.heads, self.edata, self.base_n, self.slot, self.o_start,
                             self.o_len, self.o_heads, self.o_edata, kinds, np.array(self.changed, np.int64))
            if len(self._counts) >= FILTERS_KEPT:
                self._counts.clear()
            self._counts[kind_key] = counts
        elif counts.shape[0] < len(self.ids):
            counts = self._counts[kind_key] = _grown(counts, len(self.ids), 0)
        return counts

    def _moved(self, old: list, from_base: list, done: list) -> None:
        """Bring every kept member count up to date with the rows just read again: `old`, the overlay rows
        they replaced ((heads, data rows) copies), `from_base`, CIs whose base row they replaced, and `done`,
        every CI whose row was read (its new row is the overlay's)."""
        old_heads = np.concatenate([heads for heads, _ in old]) if old else np.zeros(0, np.int32)
        old_edata = np.concatenate([edata for _, edata in old]) if old else np.zeros(0, np.int32)
        first, done = np.array(from_base, np.int64), np.array(done, np.int64)
        for kind_key in list(self._counts):
            try:
                kinds = self.kinds(kind_key)
            except KeyError:  # a type filter the graph forgot (EdgeTypeSets._forget_filters): no dict holds it
                del self._counts[kind_key]
                self._kinds.pop(kind_key, None)
                continue
            counts = self._counts[kind_key] = _grown(self._counts[kind_key], len(self.ids), 0)
            _move_members(counts, kinds, self.indptr, self.heads, self.edata, self.slot, self.o_start, self.o_len,
                          self.o_heads, self.o_edata, old_heads, old_edata, first, done)

    def predecessors(self) -> tuple:
        """(p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata): the base's edges by head (CSR; a
        tail whose row changed is skipped by the reader, its edges being in the overlay), and the overlay
        rows' current edges sorted by head (for a binary search)."""
        if self._pred_overlay is None:
            self._pred_overlay = self._overlay_edges(np.array(self.changed, np.int64))
            self._pred_dirty.clear()
        elif self._pred_dirty:
            dirty = np.fromiter(self._pred_dirty, np.int64, len(self._pred_dirty))
            self._pred_overlay = self._patched(self._pred_overlay, dirty)
            self._pred_dirty.clear()
        return self._base_predecessors() + self._pred_overlay

    def _overlay_edges(self, cis: np.ndarray) -> tuple:
        """(heads, tails, data rows) of these CIs' overlay rows as they stand (CIs without one have none),
        sorted by head."""
        if not cis.shape[0]:
            return _no_overlay_predecessors()
        rows = self.slot[cis]
        cis, rows = cis[rows >= 0], rows[rows >= 0]
        lens = self.o_len[rows].astype(np.int64)
        starts = self.o_start[rows]
        total = int(lens.sum())
        # The positions of every such CI's current row's edges, row after row.
        at = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens) + np.arange(total)
        heads, tails, edata = self.o_heads[at], np.repeat(cis, lens), self.o_edata[at]
        order = np.argsort(heads, kind="stable")
        return heads[order], tails[order], edata[order]

    def _patched(self, edges: tuple, dirty: np.ndarray) -> tuple:
        """`edges` (predecessors()' overlay part) with the `dirty` CIs' edges replaced by their rows as they
        stand: their old edges dropped, their rows' (sorted alone) merged in by head. The kept edges are
        copied, not sorted again (sorting all of them cost ~40 ns an edge)."""
        heads, tails, edata = edges
        keep = ~np.isin(tails, dirty)
        heads, tails, edata = heads[keep], tails[keep], edata[keep]
        new_heads, new_tails, new_edata = self._overlay_edges(dirty)
        at = np.searchsorted(heads, new_heads, side="right")
        return np.insert(heads, at, new_heads), np.insert(tails, at, new_tails), np.insert(edata, at, new_edata)

    def _base_predecessors(self) -> tuple:
        """(p_indptr, p_tails, p_edata): the base's edges by head, made once."""
        if self._pred is None:
            tails = np.repeat(np.arange(self.base_n, dtype=np.int32), np.diff(self.indptr))
            order = np.argsort(self.heads, kind="stable")
            p_indptr = np.zeros(self.base_n + 1, np.int64)
            np.cumsum(np.bincount(self.heads, minlength=self.base_n), out=p_indptr[1:])
            self._pred = (_frozen(p_indptr), _frozen(tails[order]), _frozen(self.edata[order]))
        return self._pred

    def candidates(self, symptoms: list, kind_key: str) -> tuple[list, list, list, "Closures"]:
        """causes.root_cause's candidates, computed compiled: (candidate ids, their lower bounds, the
        symptoms each explains, in the order given, their closures inside the ancestors)."""
        kinds = self.kinds(kind_key)
        members = self.members(kind_key, kinds)
        index, ids = self.index, self.ids
        at = np.array([index[ci_id] for ci_id in symptoms], np.int64)
        cands, bounds, e_ptr, e_pos, c_ptr, c_nodes = _candidates(
            self.indptr, self.heads, self.edata, self.base_n, self.slot, self.o_start, self.o_len, self.o_heads,
            self.o_edata, *self.predecessors(), kinds, members, self.kk, at)
        found = _names(ids, cands)
        positions, ptr = e_pos.tolist(), e_ptr.tolist()
        explains = [[symptoms[p] for p in positions[ptr[i]:ptr[i + 1]]] for i in range(len(found))]
        return found, bounds.tolist(), explains, Closures(ids, found, c_ptr, c_nodes)

    def spof(self, ci_id, kind_key: str) -> list:
        """causes.spof computed compiled: the CIs whose single failure takes `ci_id` (a CI the view knows)
        down, nearest first, then by id (for ids whose str() differ: the service's are strings)."""
        kinds = self.kinds(kind_key)
        with self._scratch(5) as scratch:
            points, dist = _spof(self.indptr, self.heads, self.edata, self.base_n, self.slot, self.o_start,
                                 self.o_len, self.o_heads, self.o_edata, *self.predecessors(), kinds,
                                 self.members(kind_key, kinds), self.kk, self.index[ci_id], *scratch)
        found = _names(self.ids, points)
        return [c for _, _, c in sorted(zip(dist.tolist(), map(str, found), found), key=lambda t: t[:2])]

    def providers(self, ci_id, kind_key: str) -> set:
        """graph.providers' walk computed compiled: the CIs upstream of `ci_id` (a CI the view knows)."""
        with self._scratch(1) as (dist,):
            found = _providers(self.base_n, self.slot, *self.predecessors(), self.kinds(kind_key), self.index[ci_id],
                               dist)
        return set(_names(self.ids, found))

    def neighborhood(self, ci_id, depth: int, down: bool, up: bool, allowed: frozenset | None,
                     types_key: str) -> tuple[set, dict]:
        """ImpactGraph.neighborhood's walk computed compiled: the CIs within `depth` hops of `ci_id` (a CI the
        view knows) along edges holding a type in `allowed` (any edge: None), and {u: {v: data}} for such
        edges among them."""
        table = self.table
        allow = np.fromiter((allowed is None or not allowed.isdisjoint(data[types_key]) for data in table),
                            np.int8, len(table))
        # A walk down never reads the predecessors: the overlay's are not sorted again for it.
        pred = self.predecessors() if up else self._base_predecessors() + _no_overlay_predecessors()
        with self._scratch(1) as (dist,):
            seen, tails, ends, rows = _neighborhood(
                self.indptr, self.heads, self.edata, self.base_n, self.slot, self.o_start, self.o_len,
                self.o_heads, self.o_edata, *pred, allow, self.index[ci_id], max(-1, min(depth, 1 << 30)), down,
                up, dist)
        found = _names(self.ids, seen)
        name = dict(zip(seen.tolist(), found))
        among: dict = {u: {} for u in found}
        for u, v, row in zip(tails.tolist(), ends.tolist(), rows.tolist()):
            among[name[u]][name[v]] = table[row]
        return set(found), among

    def among(self, ci_ids) -> dict:
        """{u: {v: data}} for the edges whose two ends are both among `ci_ids` (those the view knows), each u's
        in its row's order: ImpactGraph.edges_among's adjacency, read off the arrays."""
        at = self._positions(ci_ids)
        nodes = np.fromiter(dict.fromkeys(at[at >= 0].tolist()), np.int64)
        inside = np.zeros(len(self.ids), np.int8)
        inside[nodes] = 1
        tails, ends, rows = _among(self.indptr, self.heads, self.edata, self.base_n, self.slot, self.o_start,
                                   self.o_len, self.o_heads, self.o_edata, nodes, inside,
                                   np.ones(len(self.table), np.int8))
        table = self.table
        name = dict(zip(nodes.tolist(), _names(self.ids, nodes)))
        among: dict = {name[u]: {} for u in nodes.tolist()}
        for u, v, row in zip(tails.tolist(), ends.tolist(), rows.tolist()):
            among[name[u]][name[v]] = table[row]
        return among

    def upstream_part(self, seeds) -> dict:
        """graph.reach.upstream_part over the arrays: node -> its successors within the part of the graph from
        which one of `seeds` (CIs the view knows) can be reached along any edge, the seeds included; the part
        breadth-first from the seeds, each node's successors in its row's order."""
        seeds = list(seeds)
        at = self._positions(seeds)
        if bool((at < 0).any()):
            raise KeyError(seeds[int(np.flatnonzero(at < 0)[0])])
        at = np.fromiter(dict.fromkeys(at.tolist()), np.int64)
        every = np.ones(len(self.table), np.int8)  # every edge is followed, whatever it carries
        with self._scratch(1) as (dist,):
            up, count = _upstream(self.base_n, self.slot, *self.predecessors(), every, at, dist)
            part = up[:count]
            dist[part] = 0
        inside = np.zeros(len(self.ids), np.int8)
        inside[part] = 1
        tails, ends, _ = _among(self.indptr, self.heads, self.edata, self.base_n, self.slot, self.o_start,
                                self.o_len, self.o_heads, self.o_edata, part, inside, every)
        name = dict(zip(part.tolist(), _names(self.ids, part)))
        found: dict = {name[u]: [] for u in part.tolist()}
        for u, v in zip(tails.tolist(), ends.tolist()):
            found[name[u]].append(name[v])
        return found

    # ---- made afresh without the dicts -------------------------------------------------------------

    def _gone(self, node: dict) -> list:
        """The view's CIs the graph no longer holds (not in `node`): each was read again (an empty row) when it
        went, so only the overlay's CIs and those a rebase kept are looked at."""
        ids = self.ids
        return sorted({i for i in (*self.changed, *self.gone) if ids[i] not in node})

    def current_rows(self, node: dict) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
        """Every CI of the graph (`node`: its payloads) in the view's order, with its row as it stands: (the
        ids, indptr, heads as positions among those ids, data rows of `table`). No CI may be pending."""
        if self.pending:
            raise RuntimeError("the view has rows to read again")
        gone = self._gone(node)
        keep, remap = self._kept(gone)
        indptr, heads, edata = self._rows_of(keep, remap)
        ids = self.ids
        if not isinstance(ids, list):  # a graph.id_table.IdTable: no string per CI (id_table.Taken)
            from graph.id_table import Taken

            return Taken(ids, keep), indptr, heads, edata
        return (_names(ids, keep) if gone else list(ids)), indptr, heads, edata

    def _kept(self, gone: list, drop: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(the CIs kept, each CI's number among them): the `gone` ones dropped, else kept in place; either way
        a row naming one of them is refused (-1 in the numbering: _current_rows)."""
        n = len(self.ids)
        if not drop:
            keep = np.arange(n, dtype=np.int64)
            remap = keep.copy()
            remap[gone] = -1
            return keep, remap
        mask = np.ones(n, bool)
        mask[gone] = False
        keep = np.flatnonzero(mask)
        remap = np.full(n, -1, np.int64)
        remap[keep] = np.arange(keep.shape[0])
        return keep, remap

    def _rows_of(self, keep: np.ndarray, remap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indptr, heads, edata, whole = _current_rows(self.indptr, self.heads, self.edata, self.base_n, self.slot,
                                                    self.o_start, self.o_len, self.o_heads, self.o_edata, keep, remap)
        if not whole:
            raise ValueError("a row of the view names a CI the graph no longer holds")
        return indptr, heads, edata

    def relinked(self) -> None:
        """Take note that the graph swapped every entry of `table` for another dict (new semantics that change no
        kind nor coverage: ImpactGraph.set_semantics): what was derived from the old dicts is let go."""
        self._table_index = {id(data): i for i, data in enumerate(self.table)}
        self._kinds.clear()
        self._counts.clear()

    def rebased(self, node: dict) -> "CompactView":
        """This view with an empty overlay: each CI's row as it stands made its base row, the predecessors
        merged likewise (no sort), so that a view grown stale is made fresh without the dicts. The CIs the graph
        no longer holds (not in `node`) keep their index and an empty row, unless they are more than
        REBUILD_SHARE of the view's: they are dropped then and the others numbered again (a new index). No CI
        may be pending. The new view shares this one's ids, index (when kept) and edge data table."""
        if self.pending:
            raise RuntimeError("the view has rows to read again")
        n = len(self.ids)
        gone = self._gone(node)
        drop = len(gone) > REBUILD_SHARE * n
        keep, remap = self._kept(gone, drop)
        indptr, heads, edata = self._rows_of(keep, remap)
        # The predecessors as they stand: the base's edges whose tail's row is still the base's, and the overlay
        # rows' edges, both ordered by head, merged.
        p_indptr, p_tails, p_edata, op_heads, op_tails, op_edata = self.predecessors()
        kept = self.slot[p_tails] < 0
        p_heads = np.repeat(np.arange(self.base_n, dtype=np.int32), np.diff(p_indptr))[kept]
        at = np.searchsorted(p_heads, op_heads, side="right")
        by_head = np.insert(p_heads, at, op_heads.astype(np.int32))
        tails = np.insert(p_tails[kept], at, op_tails.astype(np.int32))
        rows = np.insert(p_edata[kept], at, op_edata.astype(np.int32))
        del p_heads, kept, at
        if drop:  # a CI gone has no edge left
            by_head, tails = remap[by_head].astype(np.int32), remap[tails].astype(np.int32)
        # A table of ids (graph.id_table) is made anew when CIs are dropped, and when CIs were appended to it since
        # it was made (folded in: their strings, and their payloads kept one by one, let go); None when an id
        # cannot be in one.
        subset = getattr(self.ids, "subset", None)
        table = subset(keep) if subset is not None and (drop or self.ids.base_n < len(self.ids)) else None
        if table is not None:
            ids, index = table, table.index
        elif drop:
            ids = _names(self.ids, keep)
            index = _index_of(ids)
        else:
            ids, index = self.ids, self.index
        m = len(ids)
        pred_indptr = np.zeros(m + 1, np.int64)
        np.cumsum(np.bincount(by_head, minlength=m), out=pred_indptr[1:])
        view = CompactView(ids, index, _frozen(indptr), _frozen(heads), _frozen(edata), self.table, self.kk[keep],
                           set())
        view.made_from = "rebased"
        view.gone = [] if drop else gone
        # The CIs kept, by their index here, when they were numbered again into a table of ids (graph.id_table):
        # the graph's payload table follows (ImpactGraph._rebased), then lets it go.
        view.kept = keep if table is not None else None
        view._pred = (_frozen(pred_indptr), _frozen(tails), _frozen(rows))
        return view

    @contextmanager
    def _scratch(self, count: int):
        """The first `count` of the compiled walks' per-CI arrays (int32, int8, int32, int32, int32), all
        zero: each walk clears what it wrote before returning, so they are kept from one question to the
        next (five arrays of a million entries made and zeroed afresh cost 0.33 ms, more than most
        answers). What they hold: 4 bytes per CI of the view's capacity once providers or a neighborhood
        was asked, 17 once spof was. A walk that fails midway may leave them dirty: they are let go then."""
        n = self.slot.shape[0]
        held, self._walk_scratch = self._walk_scratch, None
        if held is None or held[0].shape[0] != n:  # none yet, or the view grew: made again, zeroed
            held = ()
        arrays = held + tuple(np.zeros(n, dtype) for dtype in _SCRATCH_TYPES[len(held):count])
        yield arrays[:count]
        self._walk_scratch = arrays

    def mask(self, ci_ids) -> np.ndarray:
        """1 for each of `ci_ids` (CIs the view knows), 0 elsewhere."""
        out = np.zeros(self.state.shape[0], np.int8)
        at = self._positions(ci_ids)
        out[at[at >= 0]] = 1
        return out

    def _positions(self, ci_ids) -> np.ndarray:
        """The index of each of `ci_ids` (int64; -1 for a CI the view does not know): an IdTable's lookups at once."""
        positions = getattr(self.ids, "positions", None)
        if positions is not None:
            return positions(ci_ids)
        get = self.index.get
        return np.fromiter((get(ci_id, -1) for ci_id in ci_ids), np.int64)

    def propagate(self, failed: list, kind_key: str, max_depth: int | None) -> "CompactImpacted":
        """The impacted CIs as propagation.impact finds them, as an ImpactedMap read off arrays."""
        kinds = self.kinds(kind_key)
        members = self.members(kind_key, kinds)
        at = np.array([self.index[ci_id] for ci_id in failed], np.int64)
        n, states = _propagate(self.indptr, self.heads, self.edata, self.base_n, self.slot, self.o_start,
                               self.o_len, self.o_heads, self.o_edata, kinds, members, self.kk, at,
                               -1 if max_depth is None else max_depth, self.state, self.done, self.lost,
                               self.order, self.parent, self.dist)
        return CompactImpacted(self.ids, self.index, failed, self.order[:n].copy(), self.parent[:n].copy(),
                               self.dist[:n].copy(), states)


def _no_overlay_predecessors() -> tuple:
    """(op_heads, op_tails, op_edata) of an overlay without rows, typed as predecessors() makes them."""
    return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32)


class Closures:
    """candidate id -> its down closure (a frozenset of ids), made from the arrays when first read: root
    cause reads a few of the thousands it computes."""

    __slots__ = ("_ids", "_at", "_ptr", "_nodes", "_made")

    def __init__(self, ids: list, candidates: list, ptr: np.ndarray, nodes: np.ndarray):
        self._ids, self._ptr, self._nodes = ids, ptr, nodes
        self._at = dict(zip(candidates, range(len(candidates))))
        self._made: dict = {}

    def __getitem__(self, candidate) -> frozenset:
        made = self._made.get(candidate)
        if made is None:
            i = self._at[candidate]
            made = self._made[candidate] = frozenset(_names(self._ids, self._nodes[self._ptr[i]:self._ptr[i + 1]]))
        return made

    def __contains__(self, candidate) -> bool:
        return candidate in self._at

    def __len__(self) -> int:
        return len(self._at)


class ExtraWalkArrays:
    """causes.ExtraWalk over a view's arrays (the same walk, compiled): a resumable whole-graph walk
    counting the CIs not in `outside` that one failure takes down, itself included. The view must not
    change while it is used (the graph's lock held, as ImpactGraph.root_cause does)."""

    __slots__ = ("_view", "_kinds", "_members", "_outside", "_down", "_lost", "_stack", "_sp", "count")

    def __init__(self, view: CompactView, kind_key: str, start, outside: np.ndarray):
        capacity = view.state.shape[0]
        self._view, self._outside = view, outside
        self._kinds = view.kinds(kind_key)
        self._members = view.members(kind_key, self._kinds)
        at = view.index[start]
        self._down = np.zeros(capacity, np.int8)  # calloc'd: only the pages a walk touches are ever mapped
        self._lost = np.zeros(capacity, np.int32)
        self._stack = np.empty(capacity, np.int32)  # a CI is pushed once, when it goes down
        self._down[at], self._stack[0], self._sp = 1, at, 1
        self.count = 0 if outside[at] else 1

    def advance(self, cap) -> tuple[int, bool]:
        view = self._view
        self.count, self._sp = _advance(view.indptr, view.heads, view.edata, view.base_n, view.slot, view.o_start,
                                        view.o_len, view.o_heads, view.o_edata, self._kinds, self._members, view.kk,
                                        self._down, self._lost, self._stack, self._sp, self._outside, self.count,
                                        int(min(cap, 1 << 62)))
        return self.count, self._sp == 0


class CompactImpacted(ImpactedMap):
    """An ImpactedMap (ci_id -> ImpactedCI, in discovery order) read off the compiled loop's arrays: the
    ids, dicts and paths of the tens of thousands of CIs a large answer holds are made only when asked
    for, and counts by state and the nearest CIs are read off the arrays. Same answers as the dicts'
    map: `_state` and `_parent` build the very dicts propagation.impact would have (tests compare them)."""

    __slots__ = ("_ids", "_index", "_failed", "_order", "_via", "_dist", "_codes", "_keys", "_pos")

    def __init__(self, ids: list, index: dict, failed: list, order, via, dist, codes):
        self._ids, self._index, self._failed = ids, index, failed  # ids only grow: entries never change
        self._order, self._via, self._dist, self._codes = order, via, dist, codes
        self._keys: list | None = None
        self._pos: dict | None = None

    # The base class's two dicts, built when read.
    @property
    def _state(self) -> dict:
        state = dict.fromkeys(self._failed, DOWN)
        state.update(zip(self.keys_list(), self._codes.tolist()))
        return state

    @property
    def _parent(self) -> dict:
        return dict(zip(self.keys_list(), _names(self._ids, self._via)))

    def positions_in(self, ids) -> np.ndarray | None:
        """The index of each of this map's CIs, in its order, among `ids`: None unless `ids` are the view's that
        answered (ImpactGraph.tally reads their classes by position)."""
        return self._order if ids is self._ids else None

    def keys_list(self) -> list:
        if self._keys is None:
            self._keys = _names(self._ids, self._order)
        return self._keys

    def _position(self, ci_id) -> int | None:
        if self._pos is None:
            self._pos = dict(zip(self._order.tolist(), range(len(self._order))))
        i = self._index.get(ci_id)
        return None if i is None else self._pos.get(i)

    def __getitem__(self, ci_id) -> ImpactedCI:
        at = self._position(ci_id)
        if at is None:
            raise KeyError(ci_id)
        path = self.path(ci_id)
        return ImpactedCI(STATE_NAMES[int(self._codes[at])], len(path) - 1, path)

    def __iter__(self):
        return iter(self.keys_list())

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, ci_id) -> bool:
        return self._position(ci_id) is not None

    def path(self, ci_id) -> list:
        ids, via, path = self._ids, self._via, [ci_id]
        at = self._position(ci_id)
        while at is not None:
            ci_id = ids[via[at]]
            path.append(ci_id)
            at = self._position(ci_id)
        path.reverse()
        return path

    def entries(self):
        prefixes = {}
        for ci_id, via, code in zip(self.keys_list(), _names(self._ids, self._via), self._codes.tolist()):
            prefix = prefixes[ci_id] = prefixes.get(via, (via,)) + (ci_id,)
            yield ci_id, ImpactedCI(STATE_NAMES[code], len(prefix) - 1, list(prefix))

    def distances(self) -> dict:
        return dict(zip(self.keys_list(), self._dist.tolist()))

    def states(self) -> dict:
        return dict(zip(self.keys_list(), map(STATE_NAMES.__getitem__, self._codes.tolist())))

    def states_of(self, ci_ids) -> list:
        codes, out = self._codes, []
        for ci_id in ci_ids:
            at = self._position(ci_id)
            if at is None:
                raise KeyError(ci_id)
            out.append(STATE_NAMES[int(codes[at])])
        return out

    def count_by_state(self) -> dict[str, int]:
        counts = np.bincount(self._codes, minlength=DOWN + 1).tolist() if len(self._codes) else [0] * (DOWN + 1)
        return {STATE_NAMES[state]: counts[state] for state in (AT_RISK, DEGRADED, DOWN) if counts[state]}

    def nearest(self, n: int) -> list:
        """As ImpactedMap.nearest: every level before the one holding the n-th CI, each by id, then the
        smallest ids of that level (distances never decrease along the discovery order)."""
        dist, total = self._dist, len(self._order)
        if n <= 0 or not total:
            return []
        last = int(dist[min(n, total) - 1])
        before = int(np.searchsorted(dist, last, "left"))
        end = int(np.searchsorted(dist, last, "right"))
        keys, out, start = self.keys_list(), [], 0
        while start < before:  # whole levels, each by id
            stop = int(np.searchsorted(dist, dist[start], "right"))
            out += sorted(keys[start:stop])
            start = stop
        return out + heapq.nsmallest(max(0, n - before), keys[before:end])


# ---- building ------------------------------------------------------------------------------------

SLICE = 16_384


def build(graph, lock, sinks: list, current, install, slice_size: int = SLICE, between=None) -> CompactView | None:
    """A view of `graph` (a networkx DiGraph), its rows read a slice of CIs at a time under `lock`.

    `sinks` is the graph's list of sets that its `touch` adds to: one is added for the build and
    becomes the view's `pending`, so every CI changed from the build's start is read again into the
    overlay. `current()` says which graph the build runs on (a load or a change of semantics re-lays
    every edge and moves it: the build is then given up and None returned). `install(view)` is called
    under the lock the moment the view is exact. `between` is called after each slice without the
    lock (tests change the graph there)."""
    with lock:
        started = current()
        tracked: set = set()
        sinks.append(tracked)
        ids = list(graph._node)
    installed = False
    try:
        index = {ci_id: i for i, ci_id in enumerate(ids)}
        n = len(ids)
        counts = np.zeros(n + 1, np.int64)
        heads, edata = array("i"), array("i")
        kk = np.ones(max(n, 1), np.int32)
        table: list = []
        table_index: dict = {}

        def data_index(data: dict) -> int:
            i = table_index.get(id(data))
            if i is None:
                i = table_index[id(data)] = len(table)
                table.append(data)
            return i

        for start in range(0, n, slice_size):
            with lock:
                if current() != started:
                    return None
                node, succ = graph._node, graph._succ
                for i in range(start, min(n, start + slice_size)):
                    ci_id = ids[i]
                    row = succ.get(ci_id)
                    if row is None:  # removed since the build started: touched, read again
                        continue
                    try:
                        row_heads = [index[v] for v in row]
                    except KeyError:  # a head added since the start: this CI was touched too
                        tracked.add(ci_id)
                        continue
                    counts[i + 1] = len(row_heads)
                    heads.extend(row_heads)
                    edata.extend([data_index(data) for data in row.values()])
                    kk[i] = clipped_k(node[ci_id][MIN_MEMBERS_KEY])
            if between is not None:
                between()
        indptr = _frozen(np.cumsum(counts))
        heads_np = _frozen(np.frombuffer(heads, np.int32).copy() if heads else np.zeros(0, np.int32))
        edata_np = _frozen(np.frombuffer(edata, np.int32).copy() if edata else np.zeros(0, np.int32))
        del heads, edata
        view = CompactView(ids, index, indptr, heads_np, edata_np, table, kk, tracked)
        view.predecessors()  # the base's side, sorted here without the lock (root cause reads it)
        with lock:
            if current() != started:
                return None
            view.refresh(graph)
            install(view)
            installed = True
            return view
    finally:
        if not installed:
            with lock:
                sinks[:] = [sink for sink in sinks if sink is not tracked]  # by identity: empty sets are equal


def _index_of(ids: list) -> dict:
    """{ci_id: its position in `ids`}, made a slice at a time: one C call over 10 million ids would hold the GIL
    for seconds."""
    index: dict = {}
    for start in range(0, len(ids), SLICE):
        index.update(zip(ids[start:start + SLICE], range(start, start + SLICE)))
    return index


def _frozen(array: np.ndarray) -> np.ndarray:
    """`array`, read-only. A base's `heads` and `edata` always are, however made (numba compiles a loop once
    per kind of array it is given: one kind, one compilation)."""
    array.setflags(write=False)
    return array


def from_snapshot(ids: list, counts: np.ndarray | None, heads: np.ndarray, edata: np.ndarray, payload: np.ndarray,
                  table: list, ks: list, pending: set, predecessors: tuple | None = None, *,
                  indptr: np.ndarray | None = None) -> CompactView:
    """The view of a graph just read from a snapshot file (graph.snapshot), from the file's own arrays
    instead of the dicts: per CI its successor count, per edge its head and its edge data row (int32, in
    each CI's dict order), per CI its payload row; `table` is the graph's data dict of each edge data row,
    `ks` the min_members of each payload row, `pending` the CIs changed since the file was read. The
    snapshot's reader checked every index in range and the counts against the edges. `predecessors`, if
    the reader ordered the edges by head already: (p_indptr int64, tails int32, edge data rows int32), as
    `CompactView._base_predecessors` makes them. `indptr` (where each CI's row starts, and the end), if given
    instead of `counts` (graph.shared_base's, read-only)."""
    n = len(ids)
    if indptr is None:
        if counts.shape[0] != n:
            raise ValueError("the snapshot's arrays are at odds with each other")
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
    if indptr.shape[0] != n + 1 or int(indptr[-1]) != heads.shape[0] or heads.shape[0] != edata.shape[0]:
        raise ValueError("the snapshot's arrays are at odds with each other")  # a checked file never is
    if predecessors is not None and (predecessors[0].shape[0] != n + 1 or int(predecessors[0][-1]) != heads.shape[0]
                                     or predecessors[1].shape[0] != heads.shape[0]
                                     or predecessors[2].shape[0] != heads.shape[0]):
        raise ValueError("the snapshot's predecessors are at odds with its edges")
    kk = np.array([clipped_k(k) for k in ks], np.int32)[payload] if n else np.ones(0, np.int32)
    index = _index_of(ids) if isinstance(ids, list) else ids.index  # (a graph.id_table.IdTable's)
    view = CompactView(ids, index, _frozen(indptr), _frozen(heads), _frozen(edata), list(table), kk, pending)
    view.made_from = "snapshot"
    if predecessors is not None:  # read-only, as _base_predecessors makes them: numba compiles per kind of array
        view._pred = tuple(map(_frozen, predecessors))
    return view


def warm_up() -> None:
    """Compile every loop (or load it from numba's cache) on a two-CI graph."""
    view = CompactView(["a", "b"], {"a": 0, "b": 1}, _frozen(np.array([0, 1, 1], np.int64)), _frozen(np.array([1], np.int32)),
                       _frozen(np.array([0], np.int32)), [{"kind": ORDINARY}], np.ones(2, np.int32), set())
    view.propagate(["a"], "kind", None).keys_list()
    view.candidates(["b"], "kind")
    view.spof("b", "kind")
    view.providers("b", "kind")
    view.neighborhood("a", 2, True, True, None, "kind")
    view.among(["a", "b"])
    view.upstream_part(["b"])
    view.current_rows({"a": None, "b": None})
    ExtraWalkArrays(view, "kind", "a", view.mask(["b"])).advance(10)
    view.changed.append(0)  # and the count of members corrected by the overlay's rows (counted afresh)
    view.slot[0] = 0
    view._counts.clear()
    view.members("kind", view.kinds("kind"))
    view.pending.add("a")  # then moved by a refresh reading "a"'s row again
    view.refresh(SimpleNamespace(_node={"a": {MIN_MEMBERS_KEY: None}}, _succ={"a": {"b": view.table[0]}}))
