"""The CI ids and payloads of a graph without dicts, as arrays: ~45 bytes a CI instead of ~200, shareable.

Why: a worker answering from its compiled view (graph.compact, started view first from a snapshot file) held,
per CI, its id as a Python string, the view's index (id -> position) and the payloads' dict (id -> payload):
~180 bytes a CI, 1.8 GiB at 10,000,000 CIs, in every worker of a host. Here the ids of the view's base are one
array of fixed-width UTF-8 bytes, sorted (a CI's position is found by binary search), with each CI's rank in it
and the inverse; graph.shared_base maps those three arrays into every worker of a host. The payloads are one
small integer per CI into the graph's payload table. Only what changed since the base (CIs appended, payloads
swapped, CIs removed) is kept in Python dicts.

`IdTable` stands in for the view's `ids` list (positions -> ids; `append` for a CI the graph gained) and its
`index` (`IdTable.index`: ids -> positions, dict-like); `NodeTable` for the graph's `_node` dict (ids -> payload
dicts, a mutable mapping, iterated in a dict's order). Both answer as the list and dicts they replace, entry
for entry (tests/graph/test_id_table.py holds them to it under random changes).

Pure: numpy and the standard library.
"""

from __future__ import annotations

import operator
from collections.abc import MutableMapping

import numpy as np

# Ids wider than this (UTF-8 bytes) are not laid out as a table (the graph keeps its list and dicts): Karta's
# ids are UUIDs, 36 bytes; a table is as wide as its widest id, for every CI.
MAX_WIDTH = 64
# Ids decoded at a time by iteration.
SLICE = 1 << 14
# Lookups an IdTable remembers (a change batch looks the same CIs up again and again: ImpactGraph's code, the
# view's rows, the payloads), cleared when full: positions never change, and a CI appended is found first.
FOUND_MAX = 1 << 16


def encoded(ids: list, width: int | None = None) -> np.ndarray | None:
    """The ids as an array of fixed-width UTF-8 bytes ('S<width>', in their order), None if one is wider than
    MAX_WIDTH (or `width`), not a string, holds a NUL (a table's padding) or cannot be encoded."""
    try:
        raw = [ci_id.encode() for ci_id in ids]
    except (AttributeError, UnicodeEncodeError):
        return None
    widest = max(map(len, raw), default=0)
    if widest > (MAX_WIDTH if width is None else width) or any(b"\0" in key for key in raw):
        return None
    return np.array(raw, dtype=f"S{max(width or widest, 1)}")


def keys_of(blob, count: int) -> np.ndarray | None:
    """The `count` NUL-separated UTF-8 ids of `blob` (a snapshot file's ids section, its NULs counted already)
    laid out as `encoded` lays them out, with no Python string per id; None where they make no table (an id
    wider than MAX_WIDTH). UTF-8 is not checked here (graph.snapshot does)."""
    raw = np.frombuffer(blob, np.uint8)
    if not count:
        return np.zeros(0, "S1")
    nul = np.flatnonzero(raw == 0)
    if nul.shape[0] != count - 1:
        raise ValueError("the ids section does not hold `cis` ids")
    starts = np.concatenate((np.zeros(1, np.int64), nul + 1))
    lengths = np.concatenate((nul, np.array([raw.shape[0]], np.int64))) - starts
    widest = int(lengths.max())
    if widest > MAX_WIDTH:
        return None
    width = max(widest, 1)
    if widest and bool((lengths == width).all()):  # (Karta's ids: UUIDs, all 36 bytes)
        keys = np.delete(raw, nul).reshape(count, width)
    else:
        keys = np.zeros((count, width), np.uint8)
        for k in range(widest):
            has = np.flatnonzero(lengths > k)
            keys[has, k] = raw[starts[has] + k]
    return np.ascontiguousarray(keys).view(f"S{width}").reshape(count)


def sorted_parts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(the keys sorted, each key's rank among them (int32), the position of each rank (int32)), None if a key
    is there twice."""
    order = np.argsort(keys, kind="stable").astype(np.int32)
    ordered = keys[order]
    if ordered.shape[0] > 1 and not bool((ordered[1:] > ordered[:-1]).all()):
        return None
    ranks = np.empty(order.shape[0], np.int32)
    ranks[order] = np.arange(order.shape[0], dtype=np.int32)
    return ordered, ranks, order


def problem(keys: np.ndarray, ranks: np.ndarray, order: np.ndarray, mine: np.ndarray) -> str | None:
    """Why (`keys`, `ranks`, `order`) are not sorted_parts(`mine`) (None: they are); no sort, vectorised passes
    (graph.shared_base checks another worker's table with it)."""
    n = mine.shape[0]
    if keys.dtype != mine.dtype or (keys.shape[0], ranks.shape[0], order.shape[0]) != (n, n, n):
        return "id table sizes"
    if n and (int(ranks.min()) < 0 or int(ranks.max()) >= n or int(order.min()) < 0 or int(order.max()) >= n):
        return "id table ranges"
    if n > 1 and not bool((keys[1:] > keys[:-1]).all()):
        return "id table order"
    for start in range(0, n, 1 << 20):  # (bounded temporaries)
        part = slice(start, start + (1 << 20))
        if not np.array_equal(order[ranks[part]], np.arange(start, min(n, start + (1 << 20)), dtype=order.dtype)):
            return "id table ranks"
        if not np.array_equal(keys[ranks[part]], mine[part]):
            return "id table ids"
    return None


def names_at(ids, positions: np.ndarray) -> list:
    """The ids at `positions` (an integer array) of a view's ids: a list's, or an IdTable's (decoded in one pass)."""
    names = getattr(ids, "names", None)
    return list(map(ids.__getitem__, positions.tolist())) if names is None else names(positions)


class IdTable:
    """The view's ids (a list's interface: `len`, `[i]`, slices, iteration, `append`) over the base's sorted
    fixed-width ids, with `index` (ids -> positions, a dict's interface). Not thread-safe: used under the
    graph's lock, as the list it replaces."""

    def __init__(self, keys: np.ndarray, ranks: np.ndarray, order: np.ndarray):
        self.keys, self.ranks, self.order = keys, ranks, order
        self.width = keys.dtype.itemsize
        self.base_n = keys.shape[0]
        self._added: list = []  # CIs appended, at base_n + their place here
        self._added_at: dict = {}
        self._found: dict = {}  # ids looked up lately -> their base position, or -1 (FOUND_MAX)
        self.index = IdIndex(self)

    @classmethod
    def of(cls, ids: list) -> "IdTable | None":
        """The table of `ids` (unique), None if they cannot make one (see `encoded`)."""
        keys = encoded(ids)
        parts = None if keys is None else sorted_parts(keys)
        return None if parts is None else cls(*parts)

    def __len__(self) -> int:
        return self.base_n + len(self._added)

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            out = self.names(np.arange(start, min(stop, self.base_n), dtype=np.int64)) if start < self.base_n else []
            if stop > self.base_n:
                out += self._added[max(start - self.base_n, 0):stop - self.base_n]
            return out
        i = operator.index(i)
        if i < 0:
            i += len(self)
        if 0 <= i < self.base_n:
            return self.keys[self.ranks[i]].decode()
        if i < 0:
            raise IndexError("list index out of range")
        return self._added[i - self.base_n]

    def names(self, positions) -> list:
        """The ids at `positions` (an integer array, each in range), in order: the base's decoded in one pass,
        the appended ones taken from their list."""
        positions = np.asarray(positions, np.int64)
        if not positions.size:
            return []
        if int(positions.min()) < 0:
            return [self[i] for i in positions.tolist()]
        appended = positions >= self.base_n
        if not appended.any():
            return list(map(bytes.decode, self.keys[self.ranks[positions]].tolist()))
        out = [None] * positions.shape[0]
        at = np.flatnonzero(~appended)
        for j, name in zip(at.tolist(), map(bytes.decode, self.keys[self.ranks[positions[at]]].tolist())):
            out[j] = name
        added = self._added
        for j, i in zip(np.flatnonzero(appended).tolist(), (positions[appended] - self.base_n).tolist()):
            out[j] = added[i]  # (IndexError past the end, as a list's)
        return out

    def __iter__(self):
        for start in range(0, self.base_n, SLICE):
            yield from self.names(np.arange(start, min(self.base_n, start + SLICE), dtype=np.int64))
        yield from list(self._added)

    def append(self, ci_id) -> None:
        if self.find(ci_id) >= 0:
            raise ValueError(f"CI {ci_id!r} is in the table already")
        self._added_at[ci_id] = len(self)
        self._added.append(ci_id)

    def find(self, ci_id) -> int:
        """The position of `ci_id`, -1 if the table does not hold it."""
        try:
            at = self._added_at.get(ci_id)
        except TypeError:  # unhashable: in no dict, and no id
            return -1
        if at is not None:
            return at
        at = self._found.get(ci_id)
        if at is not None:
            return at
        key = self._key(ci_id)
        if key is None:
            return -1
        at = -1
        if self.base_n:
            j = int(self.keys.searchsorted(key))
            if j < self.base_n and self.keys[j] == key:
                at = int(self.order[j])
        if type(ci_id) is str:  # (a subclass may compare otherwise: not remembered)
            if len(self._found) >= FOUND_MAX:
                self._found.clear()
            self._found[ci_id] = at
        return at

    def _key(self, ci_id) -> bytes | None:
        """`ci_id` as the table's keys hold it, None if no key can be it (not a string, not encodable, wider
        than the table, or holding a NUL, the keys' padding)."""
        if not isinstance(ci_id, str):
            return None
        try:
            key = ci_id.encode()
        except UnicodeEncodeError:
            return None
        return key if len(key) <= self.width and b"\0" not in key else None

    def positions(self, ci_ids) -> np.ndarray:
        """find() of each of `ci_ids` (int64, -1 for those not held)."""
        ci_ids = list(ci_ids)
        if len(ci_ids) < 64 or not self.base_n:
            return np.fromiter(map(self.find, ci_ids), np.int64, len(ci_ids))
        out = np.full(len(ci_ids), -1, np.int64)
        keys, at = [], []
        for j, ci_id in enumerate(ci_ids):
            try:
                added = self._added_at.get(ci_id)
            except TypeError:  # unhashable: no id
                continue
            if added is not None:
                out[j] = added
            else:
                key = self._key(ci_id)
                if key is not None:
                    keys.append(key)
                    at.append(j)
        if keys:
            wanted = np.array(keys, dtype=self.keys.dtype)
            found = np.minimum(np.searchsorted(self.keys, wanted), self.base_n - 1)
            hit = self.keys[found] == wanted
            out[np.array(at, np.int64)[hit]] = self.order[found[hit]]
        return out

    def subset(self, keep: np.ndarray) -> "IdTable | None":
        """The table of the ids at positions `keep` (increasing, each in range), numbered by their place in it,
        None if they cannot make one (an appended id too wide, say). The base's kept keys stay sorted (no
        sort); CIs appended that are kept become base ones (then sorted)."""
        keep = np.asarray(keep, np.int64)
        base = keep[keep < self.base_n]
        added = keep[keep >= self.base_n]
        b = base.shape[0]
        # The kept base CIs' ranks among themselves (no sort: a mask of the ranks kept, counted).
        kept = np.zeros(self.base_n, bool)
        kept[self.ranks[base]] = True
        new_rank = np.cumsum(kept, dtype=np.int32) - 1
        ranks = new_rank[self.ranks[base]]
        order = np.empty(b, np.int32)
        order[ranks] = np.arange(b, dtype=np.int32)
        keys = self.keys[kept]  # sorted still
        if not added.size:
            return IdTable(keys, ranks, order)
        # CIs appended and kept become base CIs: their keys (a few, sorted) merged into the kept ones.
        extra = encoded([self._added[i - self.base_n] for i in added.tolist()])
        if extra is None:  # (not strings, wider than MAX_WIDTH, or not encodable)
            return None
        if extra.dtype.itemsize > self.width:  # an appended id wider than the base's: the table widened
            keys = keys.astype(extra.dtype)
        else:
            extra = extra.astype(keys.dtype)
        by_key = np.argsort(extra, kind="stable")
        extra = extra[by_key]
        if extra.shape[0] > 1 and not bool((extra[1:] > extra[:-1]).all()):
            return None
        at = np.searchsorted(keys, extra)
        inside = at < b
        if bool((keys[at[inside]] == extra[inside]).any()):
            return None  # an appended id equal to a base one
        order = np.insert(order, at, (b + by_key).astype(np.int32))
        keys = np.insert(keys, at, extra)
        ranks = np.empty(order.shape[0], np.int32)
        ranks[order] = np.arange(order.shape[0], dtype=np.int32)
        return IdTable(keys, ranks, order)


class Taken:
    """The ids of the CIs at `positions` (increasing) of an IdTable, as a snapshot's capture takes them
    (graph.snapshot.Capture): `len`, slices (lists of ids), the ids' UTF-8 joined by NULs (the file's section,
    with no string per id), and a slice's payloads off a NodeTable."""

    def __init__(self, table: IdTable, positions: np.ndarray):
        self.table, self.positions = table, np.asarray(positions, np.int64)

    def __len__(self) -> int:
        return self.positions.shape[0]

    def __getitem__(self, part: slice) -> list:
        return self.table.names(self.positions[part])

    def payloads(self, nodes, start: int, stop: int) -> list:
        """The payloads (nodes: the graph's `_node`) of the ids from `start` to `stop`; KeyError if one is gone."""
        if isinstance(nodes, NodeTable):
            return nodes.payloads_at(self.table, self.positions[start:stop])
        return list(map(nodes.__getitem__, self[start:stop]))

    def joined(self) -> bytes:
        table, positions = self.table, self.positions
        split = int(np.searchsorted(positions, table.base_n))  # (increasing: the CIs appended since last)
        if split < positions.shape[0]:
            added = "\0".join(table.names(positions[split:])).encode()
            return Taken(table, positions[:split]).joined() + b"\0" + added if split else added
        keys = table.keys[table.ranks[positions]]
        width = table.width
        matrix = keys.view(np.uint8).reshape(-1, width)
        if not positions.size or not bool(matrix[:, -1].all()):  # some narrower than the widest: padding dropped
            return b"\0".join(keys.tolist())
        out = np.zeros((positions.shape[0], width + 1), np.uint8)
        out[:, :width] = matrix
        return out.tobytes()[:-1]


class IdIndex:
    """An IdTable's ids -> positions, as the view's index dict answers (`[]`, `get`, `in`, `len`); setting a
    position is allowed for a CI just appended (CompactView._append) only."""

    __slots__ = ("_table",)

    def __init__(self, table: IdTable):
        self._table = table

    def __getitem__(self, ci_id) -> int:
        i = self._table.find(ci_id)
        if i < 0:
            raise KeyError(ci_id)
        return i

    def get(self, ci_id, default=None):
        i = self._table.find(ci_id)
        return default if i < 0 else i

    def __contains__(self, ci_id) -> bool:
        return self._table.find(ci_id) >= 0

    def __setitem__(self, ci_id, i) -> None:
        if self._table.find(ci_id) != i:
            raise ValueError(f"CI {ci_id!r} is not at {i} in the table")

    def __len__(self) -> int:
        return len(self._table)


class NodeTable(MutableMapping):
    """The graph's `_node` (ids -> payload dicts) over an IdTable's base CIs (each's payload row of `payloads`),
    with what changed since in dicts: the base CIs whose payload was swapped, those removed, and the CIs added
    (or removed and added again), which come last in iteration, as in a dict. Not thread-safe (under the
    graph's lock, as the dict it replaces)."""

    def __init__(self, ids: IdTable, rows: np.ndarray, payloads: list):
        if rows.shape[0] != ids.base_n:
            raise ValueError("a payload row per CI of the table")
        self._ids, self._rows, self._payloads = ids, rows, payloads
        self._n = ids.base_n  # base CIs: those of the table then (its appended ones are never base CIs)
        self._out: set = set()  # positions of base CIs removed (if added again: in _extra)
        self._swapped: dict = {}  # position of a base CI in place -> its payload, when no longer its row's
        self._extra: dict = {}

    @property
    def table(self) -> IdTable:
        """The IdTable whose positions this reads (the view's, unless the view fell back to a list of ids)."""
        return self._ids

    def copy(self) -> "NodeTable":
        """A copy (the arrays shared, never written; the changes' dicts copied): the payloads as they stand."""
        other = NodeTable.__new__(NodeTable)
        other._ids, other._rows, other._payloads, other._n = self._ids, self._rows, self._payloads, self._n
        other._out, other._swapped, other._extra = set(self._out), dict(self._swapped), dict(self._extra)
        return other

    def _base(self, ci_id) -> int:
        i = self._ids.find(ci_id)
        return i if 0 <= i < self._n and i not in self._out else -1

    def __getitem__(self, ci_id):
        payload = self._extra.get(ci_id)
        if payload is not None:
            return payload
        i = self._base(ci_id)
        if i < 0:
            raise KeyError(ci_id)
        payload = self._swapped.get(i)
        return self._payloads[self._rows[i]] if payload is None else payload

    def get(self, ci_id, default=None):
        try:
            return self[ci_id]
        except KeyError:
            return default

    def __contains__(self, ci_id) -> bool:
        return ci_id in self._extra or self._base(ci_id) >= 0

    def __setitem__(self, ci_id, payload) -> None:
        if payload is None:
            raise ValueError("a CI's payload is a dict")
        i = -1 if ci_id in self._extra else self._base(ci_id)
        if i < 0:  # (a base CI removed and set again is one of the extra, last, as in a dict)
            self._extra[ci_id] = payload
        elif payload is self._payloads[self._rows[i]]:  # its row's again (a class set as it was): nothing kept
            self._swapped.pop(i, None)
        else:
            self._swapped[i] = payload

    def __delitem__(self, ci_id) -> None:
        if ci_id in self._extra:
            del self._extra[ci_id]
            return
        i = self._base(ci_id)
        if i < 0:
            raise KeyError(ci_id)
        self._out.add(i)
        self._swapped.pop(i, None)

    def __len__(self) -> int:
        return self._n - len(self._out) + len(self._extra)

    def payloads_of(self, ci_ids) -> list:
        """self.get(ci) of each of `ci_ids` (None for a CI not held), the lookups at once (ImpactGraph.tally's
        classes of the tens of thousands of CIs an incident holds)."""
        ci_ids = list(ci_ids)
        at = self._ids.positions(ci_ids)
        known = np.flatnonzero(at >= 0)
        out = [None] * len(ci_ids)
        for j, payload in zip(known.tolist(), self.payloads_at(self._ids, at[known], strict=False)):
            out[j] = payload
        if self._extra:  # CIs the table does not know (a view that fell back to a list of ids appends none)
            for j in np.flatnonzero(at < 0).tolist():
                out[j] = self._extra.get(ci_ids[j])
        return out

    def payloads_at(self, table, positions: np.ndarray, strict: bool = True) -> list:
        """self[ci] for the CIs at `positions` of `table` (in order), at C speed when `table` is this one's (the
        view's): a capture's payloads (graph.snapshot), the dicts' lay-out (graph.view_changes). A CI not held
        raises KeyError, or, not `strict`, gives None."""
        positions = np.asarray(positions, np.int64)
        if table is not self._ids or (positions.size and int(positions.min()) < 0):
            get = self.__getitem__ if strict else self.get
            return list(map(get, names_at(table, positions)))  # (`table` may be a view's list of ids)
        base = positions < self._n
        whole = bool(base.all())
        picked = positions if whole else positions[base]
        found = list(map(self._payloads.__getitem__, self._rows[picked].tolist()))
        if whole:
            out = found
        else:
            out = [None] * positions.shape[0]
            for j, payload in zip(np.flatnonzero(base).tolist(), found):
                out[j] = payload
        if self._out or self._swapped:  # the changes since: a lookup per CI of the slice, no more
            removed, swapped, extra = self._out, self._swapped, self._extra
            for j, i in zip(np.flatnonzero(base).tolist() if not whole else range(len(out)), picked.tolist()):
                if i in removed:  # removed; maybe set again since (then one of the extra)
                    out[j] = extra.get(table[i]) if extra else None
                    if out[j] is None and strict:
                        raise KeyError(table[i])
                else:
                    payload = swapped.get(i)
                    if payload is not None:
                        out[j] = payload
        if not whole:  # CIs appended to the table since: each one of the extra
            extra = self._extra
            for j, ci_id in zip(np.flatnonzero(~base).tolist(), table.names(positions[~base])):
                payload = extra.get(ci_id)
                if payload is None and strict:
                    raise KeyError(ci_id)
                out[j] = payload
        return out

    def held_at(self, table, positions: np.ndarray) -> np.ndarray:
        """Whether each CI at `positions` of `table` is held (a bool array)."""
        return np.array([payload is not None for payload in self.payloads_at(table, positions, strict=False)], bool)

    def rebased(self, table: IdTable, keep: np.ndarray) -> "NodeTable":
        """This mapping over `table`, the IdTable.subset(`keep`) of this one's table (a view made fresh that
        numbered its CIs again, CompactView.rebased): each CI kept is one of the new base, its payload a row
        again (a CI kept that this mapping does not hold, one gone that the view keeps, is left out, as here).
        The base's rows taken at once; what changed since (payloads swapped, CIs removed, added, appended) a
        lookup each. Iterated in the new table's order (a CI's place among the others is no answer's)."""
        keep = np.asarray(keep, np.int64)
        if keep.shape[0] != table.base_n:
            raise ValueError("a position kept per CI of the new table")
        table_rows = list(self._payloads)
        rows_of: dict = {id(payload): i for i, payload in enumerate(table_rows)}

        def row_of(payload) -> int:
            if id(payload) not in rows_of:
                rows_of[id(payload)] = len(table_rows)
                table_rows.append(payload)
            return rows_of[id(payload)]

        base = keep < self._n
        rows = np.zeros(keep.shape[0], np.uint32)
        rows[base] = self._rows[keep[base]]
        moved: list = []  # (new position, payload or None: not held)
        for i, payload in list(self._swapped.items()) + [(i, None) for i in self._out]:
            j = int(np.searchsorted(keep, i))
            if j < keep.shape[0] and keep[j] == i:
                moved.append((j, payload if payload is not None else self._extra.get(self._ids[i])))
        added = np.flatnonzero(~base)
        moved += zip(added.tolist(), map(self._extra.get, self._ids.names(keep[added])))
        out = set()
        for j, payload in moved:
            if payload is None:
                out.add(j)
            else:
                rows[j] = row_of(payload)
        dtype = np.uint8 if len(table_rows) <= 1 << 8 else np.uint16 if len(table_rows) <= 1 << 16 else np.uint32
        made = NodeTable(table, rows.astype(dtype), table_rows)
        made._out = out
        return made

    def __iter__(self):
        out = self._out
        for start in range(0, self._n, SLICE):
            positions = np.arange(start, min(self._n, start + SLICE), dtype=np.int64)
            if out:
                positions = positions[[i not in out for i in positions.tolist()]]
            yield from self._ids.names(positions)
        yield from list(self._extra)
