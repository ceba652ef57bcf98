"""An impact graph written to a file and read back: a new worker starts from it, not from the database.

Building a million-CI graph from the database takes 15-30 s, a bit more than half of it `bulk_load`
deciding every edge and creating millions of small containers, the rest streaming the rows. A
snapshot holds the graph as it is in memory, coverage decided, so reading it back only lays out the
networkx dicts: 8-10 s at 1,000,000 CIs on a 2-core machine, a third of a load from the database (BENCHMARKS.md, "A graph that starts from a snapshot"). The
service then applies the change feed from the snapshot's `applied_seq` (app/services/live_graph.py).

The file is our own format, not pickle: loading a pickle runs whatever code the file names, so
anyone able to write the directory could run code in every worker; this format is read as numbers
and strings only. (pickle.loads of the same graph took 2.3 s against 3.9 s for format 1 on a faster
machine: a pickle stream without globals, read by an unpickler that refuses them all, may be the faster
safe one.)
Layout:

    MAGIC | header length (4 bytes, little-endian) | header (JSON) | body | blake2b-256 of all before

The header says what the body is and what it was written for: the format version, the database's
schema revision and a digest of the relationship semantics (both passed in by the caller), a digest
of the code that decides the stored state (this package's coverage rules), `applied_seq`, and the
caller's `lineage`, an identity of the database's history at `applied_seq` that the caller checks
against its database before trusting the file (the header is padded with spaces so that the body
starts 8-aligned). The body is flat arrays, then one '\\0'-joined string of CI ids: per CI its
successor count; per edge, in adjacency order, its head's CI index and its edge data index (4 bytes
each, aligned); a payload index per CI.
Payloads (class, min_members) and edge data (types, covered) are small tables in the header, turned
back into the graph's shared dicts.

A graph that gets its compiled view (graph/compact.py) gets it from copies of the file's arrays,
without building one from the dicts. The file is read into memory whole (not mapped): the digest then
covers the very bytes that are checked and decoded, whoever writes into the file meanwhile.

The predecessors are not stored: every edge u -> v is pred[v][u] on succ[u][v]'s data dict, so the
reader builds the pred side from the succ side, as bulk_load does from the relationships. (Format 1
stored both sides, and a file's pred side then had to be checked against its succ side before it
could be trusted, ~40% of a load; building the pred side costs what laying out the stored one did:
BENCHMARKS.md, "The pred side built from succ".) A pred dict's
order is its predecessors' order among the CIs, which a graph that grew change by change need not
have had: no answer depends on it (the analyses sort what they return, and closures do not depend
on the order edges are followed).

Anything that does not match (another format, schema, semantics or code; a truncated or altered
file; a lineage the caller refuses) raises `SnapshotRejected`: the caller logs it and loads from its
database. A snapshot is never partly used.

Writing takes the graph's content in a `Capture` (under the graph's lock, in slices the caller may
interleave with its own work: see `Capture.take`), then encodes and writes it with no lock held, to a
temporary file in the same directory, fsynced, then renamed over the old one: a reader opens either
the old file or the new one, whole. Several workers of one host share the directory; an exclusive
file lock (`writer_lock`) lets one write at a time. Files are created with mode 0600.

Like the rest of graph/, this module never imports `app/`, a web framework, an ORM or anything HTTP.
"""

from __future__ import annotations

import codecs
import gc
import hashlib
import json
import logging
import os
import struct
import sys
import tempfile
import time
import uuid
from array import array
from collections import deque
from dataclasses import asdict, dataclass
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Callable

import filelock

from graph import impact_graph
from graph import semantics as semantics_module
from graph.impact_graph import CLASS_KEY, MIN_MEMBERS_KEY, ImpactGraph
from graph.semantics import COVERED_KEY, TYPES_KEY, RelationshipSemantics

log = logging.getLogger("karta.graph")

# 1 stored the pred side too; 2 put the ids first and its edge data indexes in the narrowest type: a file of
# either is refused (full load), never misread.
FORMAT_VERSION = 3
MAGIC = b"KARTA-GRAPH-SNAPSHOT\n"
# The body's sections, in order: arrays (per CI its successor count; per edge its head's CI index and its
# data's index; a payload index per CI), then the CI ids. The body starts at an offset of the file that is a
# multiple of ALIGN (the header is padded with spaces) and the three 4-byte arrays come first, so each starts
# 4-aligned: read as memoryviews and numpy arrays where they lie in the body, with no copy made to align them.
SECTIONS = ("succ_counts", "succ_ends", "succ_data", "payload", "ids")
ALIGN = 8
DIGEST_BYTES = 32
_LENGTH = struct.Struct("<I")
# Indexes of CIs and edges are 4-byte unsigned: 4 billion of each is beyond any graph held in memory.
INDEX = "I"
if array(INDEX).itemsize != 4:  # pragma: no cover - every platform CPython runs on today
    INDEX = "L"


class SnapshotRejected(Exception):
    """A snapshot that must not be used; the message says why (for the log)."""


@dataclass(frozen=True)
class SnapshotHeader:
    format: int
    schema_revision: str
    semantics_digest: str
    code_digest: str
    applied_seq: int
    lineage: str
    cis: int
    links: int  # pairs of CIs related by at least one relationship
    written_at: float  # time.time() when encoded


def semantics_digest(semantics: dict[str, RelationshipSemantics]) -> str:
    """A digest of the relationship semantics: coverage and edge kinds in the file were decided under them."""
    canonical = sorted((name, s.impact, s.membership) for name, s in semantics.items())
    return hashlib.blake2b(json.dumps(canonical).encode(), digest_size=16).hexdigest()


def _code_digest() -> str:
    """A digest of the modules whose rules decide what a snapshot stores (which edges are covered, what
    an edge's data holds): a release that changes them must not trust a file an older one wrote, even
    if FORMAT_VERSION was not moved. Unreadable sources (a frozen install) give a digest no other
    process shares: snapshots are then written but never trusted."""
    h = hashlib.blake2b(digest_size=16)
    for module in (impact_graph, semantics_module, sys.modules[__name__]):
        try:
            h.update(Path(module.__file__).read_bytes())
        except (OSError, TypeError):
            h.update(uuid.uuid4().bytes)
    return h.hexdigest()


CODE_DIGEST = _code_digest()


def writer_lock(path: Path | str) -> filelock.FileLock:
    """The lock a process holds while writing the snapshot at `path` (a file beside it); readers need none."""
    return filelock.FileLock(f"{path}.lock")


class Capture:
    """The content of a graph at one moment, taken so that it can be encoded with no lock held.

    The CIs and their payloads are taken at construction; `take` then takes the adjacency of the next
    CIs (of a graph without dicts, the rows are taken at construction off its compiled view, and `take` takes
    the next CIs' payloads). Every call holds the graph's own lock, and the content is consistent only if the graph did not
    change between the first call and the last: the caller checks that (the service compares its
    applied_seq between slices) or holds the graph still from construction to a single `take()`. Only references are taken (ids, the shared
    payload and edge data dicts), into flat lists: at 1,000,000 CIs and 3 million edges this holds
    ~70 MB for the time of the write."""

    def __init__(self, graph: ImpactGraph):
        self.succ_counts: list[int] = []
        self.succ_ends: list = []
        self.succ_data: list[dict] = []
        # A graph without dicts (started view first) is taken off its compiled view: its rows here, as arrays
        # made afresh (counts, heads as CI positions, data rows, and the view's edge data table; ~0.1 s under the
        # lock at 1,000,000 CIs), its CIs' payloads by `take`, in slices, as the dicts' rows are.
        self.rows: tuple | None = None
        self.payloads = []
        with graph._lock:
            node = graph.graph._node
            self.applied_seq = graph.applied_seq
            self.semantics = graph.semantics
            rows = graph.view_rows()
            if rows is None:
                self.ids = list(node)
                self.payloads = list(node.values())
            else:
                import numpy as np  # the view's own import

                self.ids, indptr, heads, edata, table = rows
                if len(self.ids) != len(node):
                    raise ValueError(f"the compiled view holds {len(self.ids)} CIs, the payloads {len(node)}")
                self.rows = (np.diff(indptr), heads, edata, table)
        self._graph = graph
        self._next = 0

    @property
    def done(self) -> bool:
        return self._next >= len(self.ids)

    def take(self, limit: int | None = None) -> bool:
        """Take the adjacency of the next `limit` CIs (of all those left: None); True once all are taken.
        A CI removed since construction means the graph changed: the capture is then inconsistent, and
        this raises KeyError (the caller starts again)."""
        start = self._next
        stop = len(self.ids) if limit is None else min(len(self.ids), start + limit)
        if self.rows is not None:  # the rows are taken: the payloads, which a change swaps
            with self._graph._lock:
                node = self._graph.graph._node
                if isinstance(self.ids, list):
                    self.payloads.extend(map(node.__getitem__, self.ids[start:stop]))
                else:  # graph.id_table.Taken: off the payloads' table, no string per CI
                    self.payloads.extend(self.ids.payloads(node, start, stop))
            self._next = stop
            return self.done
        ids = self.ids[start:stop]
        with self._graph._lock:
            # C-level passes over the succ dicts (the pred side is not stored).
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                nbrs = list(map(self._graph.graph._succ.__getitem__, ids))
                self.succ_counts.extend(map(len, nbrs))
                self.succ_ends.extend(chain.from_iterable(nbrs))
                self.succ_data.extend(chain.from_iterable(map(dict.values, nbrs)))
            finally:
                if was_enabled:
                    gc.enable()
        self._next = stop
        return self.done

    def release(self) -> None:
        """Let go of what was taken, a slice at a time: freeing a list of 3 million references is one C call
        that touches every CI id (~0.2 s), and holds the GIL throughout."""
        self.rows = None
        if not isinstance(self.ids, list):  # (graph.id_table.Taken: arrays)
            self.ids = []
        for taken in (self.ids, self.payloads, self.succ_counts, self.succ_ends, self.succ_data):
            while taken:
                del taken[-SLICE:]


def _smallest(count: int) -> str:
    return "B" if count <= 0xFF else "H" if count <= 0xFFFF else INDEX


# Long passes run in slices: a C-level pass (array(map(dict.__getitem__, ...))) never lets go of the GIL,
# and a pass over 3 million edges would stall the worker's request threads for a second (16,384 items:
# ~10-30 ms).
SLICE = 1 << 14


def _sliced(typecode: str, items: list, index: dict | None = None, by_identity: bool = False) -> array:
    """array(typecode) of index[item] (of index[id(item)]; of the items themselves without an index)
    for every item, a slice at a time."""
    out = array(typecode)
    for start in range(0, len(items), SLICE):
        part = items[start:start + SLICE]
        out.extend(part if index is None else map(index.__getitem__, map(id, part) if by_identity else part))
    return out


def _array(values) -> array:
    """array(INDEX) of a numpy array of non-negative integers below 2**32."""
    import numpy as np  # a capture off a compiled view only: numpy is imported already

    out = array(INDEX)
    out.frombytes(values.astype(np.dtype(INDEX)).tobytes())
    return out


def encode(capture: Capture, *, schema_revision: str, lineage: str) -> list:
    """The file's parts, in order (bytes and arrays), the digest last. No lock is held.

    The collector is paused meanwhile, as for a load: the capture's lists hold millions of references,
    and every collection of the oldest generation would walk them (encoding makes no cycles)."""
    if not capture.done:
        raise ValueError("the capture is not complete")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _encode(capture, schema_revision, lineage)
    finally:
        if was_enabled:
            gc.enable()


def _encode(capture: Capture, schema_revision: str, lineage: str) -> list:
    ids = capture.ids
    try:
        if isinstance(ids, list):
            blob = b"\0".join("\0".join(ids[start:start + SLICE]).encode() for start in range(0, len(ids), SLICE))
        else:  # graph.id_table.Taken: joined off the table
            blob = ids.joined()
    except TypeError:
        raise ValueError("a snapshot holds string CI ids only") from None
    if blob.count(b"\0") != max(len(ids) - 1, 0):
        raise ValueError("a CI id holds a NUL character")
    # The shared dicts, numbered by identity: a graph has a few dozen payloads and edge data dicts.
    payload_index: dict[int, int] = {}
    payload_table = []
    for payload in {id(p): p for p in capture.payloads}.values():
        payload_index[id(payload)] = len(payload_table)
        payload_table.append([payload[CLASS_KEY], payload[MIN_MEMBERS_KEY]])
    data_table = []
    if capture.rows is not None:  # taken off a compiled view: the edges are arrays of positions already
        import numpy as np

        counts, heads, edata, table = capture.rows
        used = np.unique(edata)  # the table's rows some edge holds, each once
        renumber = np.zeros(len(table), np.int64)
        renumber[used] = np.arange(used.shape[0])
        data_table = [[sorted(table[row][TYPES_KEY]), bool(table[row][COVERED_KEY])] for row in used.tolist()]
        edges = [_array(counts), _array(heads), _array(renumber[edata])]
        links = heads.shape[0]
    else:
        data_index: dict[int, int] = {}
        for data in {id(d): d for d in capture.succ_data}.values():
            data_index[id(data)] = len(data_table)
            data_table.append([sorted(data[TYPES_KEY]), bool(data[COVERED_KEY])])
        position: dict = {}
        for start in range(0, len(ids), SLICE):
            position.update(zip(ids[start:start + SLICE], range(start, start + SLICE)))
        edges = [_sliced(INDEX, capture.succ_counts), _sliced(INDEX, capture.succ_ends, position),
                 _sliced(INDEX, capture.succ_data, data_index, by_identity=True)]
        links = len(capture.succ_ends)
        for start in range(0, len(ids), SLICE):  # freed a slice at a time (see Capture.release)
            deque(map(position.pop, ids[start:start + SLICE]), maxlen=0)
    body = [*edges, _sliced(_smallest(len(payload_table)), capture.payloads, payload_index, by_identity=True), blob]
    layout = [[name, getattr(part, "typecode", None), len(part) * getattr(part, "itemsize", 1)]
              for name, part in zip(SECTIONS, body)]
    header = SnapshotHeader(format=FORMAT_VERSION, schema_revision=schema_revision,
                            semantics_digest=semantics_digest(capture.semantics), code_digest=CODE_DIGEST,
                            applied_seq=capture.applied_seq, lineage=lineage, cis=len(ids),
                            links=links, written_at=time.time())
    head = json.dumps({**asdict(header), "byteorder": sys.byteorder, "layout": layout, "payloads": payload_table,
                       "edge_data": data_table}).encode()
    head += b" " * (-(len(MAGIC) + _LENGTH.size + len(head)) % ALIGN)  # the body starts aligned
    parts = [MAGIC, _LENGTH.pack(len(head)), head, *body]
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for part in parts:
        digest.update(part)
    parts.append(digest.digest())
    return parts


def write(parts: list, path: Path | str) -> int:
    """Write encoded parts to `path` atomically (temporary file in its directory, fsync, rename, fsync of
    the directory); its size. Hold `writer_lock(path)` around it when several processes may write."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return size


def remove_leftovers(path: Path | str) -> None:
    """Temporary files a writer killed half way left beside `path` (call holding `writer_lock`)."""
    path = Path(path)
    for leftover in path.parent.glob(f"{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def save(graph: ImpactGraph, path: Path | str, *, schema_revision: str, lineage: str) -> int:
    """Capture `graph` in one hold of its lock and write it to `path` under the writer's lock; its size.
    (The service captures in slices instead: app/services/live_graph.py.)"""
    with graph._lock:
        capture = Capture(graph)
        capture.take()
    parts = encode(capture, schema_revision=schema_revision, lineage=lineage)
    with writer_lock(path):
        return write(parts, path)


# The header is a few tables of a few dozen rows: a megabyte is far beyond any real one, and parsing is
# bounded before json.loads sees it (a deeply nested header exhausts the parser's recursion).
HEADER_LIMIT = 1 << 20
# Every integer in the header must fit the database's and the arrays' 64-bit integers: applied_seq goes
# into the caller's queries, sizes into allocations.
INTEGER_LIMIT = 1 << 63
# The writer stores CI and edge indexes in INDEX (4 bytes): a file claiming more of either is no file of ours.
COUNT_LIMIT = 1 << 32
# CI id bytes per CI, on average, '\0' included: the service's ids are UUID strings (36 bytes); the bound only
# keeps a file from making the reader allocate memory no real graph of its CI count would need.
ID_BYTES_LIMIT = 4096
_HASH_CHUNK = 1 << 20


def _integer(value, name: str) -> int:
    if type(value) is not int or not 0 <= value < INTEGER_LIMIT:  # bool is an int subclass: refused too
        raise SnapshotRejected(f"garbled header ({name})")
    return value


def _read(path: Path | str, body: bool = True) -> tuple[dict, SnapshotHeader, memoryview | None, bytes]:
    """The raw header (a dict), the header, the body and the digest of a whole, unaltered file (no body when
    `body` is false: the digest is then checked reading the file a chunk at a time, never holding it).

    The body is read into memory, not mapped: with a mapping, bytes written into the file after the
    digest or the checks (someone with the service's rights running `dd` or `rsync --inplace` on it) would
    reach the graph and the compiled loops unchecked, and a truncation would end the worker with SIGBUS.

    The body is read only once the file's size is the one its header gives: the header is bounded and
    read first, and the body's size follows from the header's layout, itself checked against `cis` and
    `links`. A file whose header is refused is checked against its digest first (a chunk at a time), so
    that a corrupt file is reported as corrupt, not as whatever its flipped byte made of the header."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(len(MAGIC)) != MAGIC:
                raise SnapshotRejected("not a graph snapshot")
            try:
                raw, header, head = _read_header(f, size)
            except SnapshotRejected:
                f.seek(0)
                if size < DIGEST_BYTES or _digest(f, size - DIGEST_BYTES).digest() != f.read(DIGEST_BYTES):
                    raise SnapshotRejected("checksum mismatch (truncated or corrupt)") from None
                raise
            expected = len(head) + _body_size(raw, header) + DIGEST_BYTES
            if size != expected:
                raise SnapshotRejected(f"{size} bytes, the header says {expected}: truncated or altered (the checksum "
                                       "cannot match), refused before reading the body")
            if len(head) % ALIGN:
                raise SnapshotRejected("garbled header (the body does not start aligned)")
            if body:
                digest = hashlib.blake2b(head, digest_size=DIGEST_BYTES)
                content = memoryview(f.read(size - len(head)))  # the body and digest: its data starts aligned
                view = content[:-DIGEST_BYTES]
                digest.update(view)
            else:
                f.seek(0)
                digest, view = _digest(f, size - DIGEST_BYTES), None
            stored = f.read(DIGEST_BYTES) if view is None else bytes(content[-DIGEST_BYTES:])
    except FileNotFoundError:
        raise SnapshotRejected("no snapshot") from None
    except OSError as exc:
        raise SnapshotRejected(f"unreadable: {exc}") from None
    if digest.digest() != stored:
        raise SnapshotRejected("checksum mismatch (truncated or corrupt)")
    return raw, header, view, stored


def _read_header(f, size: int) -> tuple[dict, SnapshotHeader, bytes]:
    """The raw header, the header and the file's bytes up to the body, read from `f` just past MAGIC."""
    lead = f.read(_LENGTH.size)
    if len(lead) < _LENGTH.size:
        raise SnapshotRejected("truncated")
    (length,) = _LENGTH.unpack(lead)
    if length > HEADER_LIMIT or size < len(MAGIC) + len(lead) + length + DIGEST_BYTES:
        raise SnapshotRejected(f"garbled header (length {length}) or truncated file")
    head = f.read(length)
    try:
        raw = json.loads(head)
    except (ValueError, RecursionError):
        raise SnapshotRejected("garbled header") from None
    if not isinstance(raw, dict):
        raise SnapshotRejected("garbled header")
    return raw, _header(raw), MAGIC + lead + head


def _digest(f, size: int):
    """blake2b of the next `size` bytes of `f`, read a chunk at a time."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    while size > 0:
        chunk = f.read(min(size, _HASH_CHUNK))
        if not chunk:
            break
        digest.update(chunk)
        size -= len(chunk)
    return digest


def _header(raw: dict) -> SnapshotHeader:
    if raw.get("format") != FORMAT_VERSION or type(raw.get("format")) is not int:
        raise SnapshotRejected(f"format {raw.get('format')!r}, this Karta reads {FORMAT_VERSION}")
    try:
        header = SnapshotHeader(**{name: raw[name] for name in SnapshotHeader.__dataclass_fields__})
    except (KeyError, TypeError):
        raise SnapshotRejected("garbled header") from None
    for name in SnapshotHeader.__dataclass_fields__:
        value = getattr(header, name)
        if name in ("format", "applied_seq", "cis", "links"):
            _integer(value, name)
        elif name == "written_at":
            if type(value) not in (int, float):
                raise SnapshotRejected(f"garbled header ({name})")
        elif not isinstance(value, str):
            raise SnapshotRejected(f"garbled header ({name})")
    if header.cis >= COUNT_LIMIT or header.links >= COUNT_LIMIT:
        raise SnapshotRejected("garbled header (more CIs or links than the format holds)")
    return header


def _body_size(raw: dict, header: SnapshotHeader) -> int:
    """The body's size by the header's layout, once the layout is the one this format writes for
    `cis` CIs and `links` links: each array as long as those counts say, the ids bounded."""
    layout, payloads, edge_data = raw.get("layout"), raw.get("payloads"), raw.get("edge_data")
    if not isinstance(layout, list) or len(layout) != len(SECTIONS):
        raise SnapshotRejected("garbled header (layout)")
    if not isinstance(payloads, list) or not isinstance(edge_data, list):
        raise SnapshotRejected("garbled header (tables)")
    # Each array of the typecode the writer gives it, no narrower: a file's bytes never stand for more
    # entries than the writer's own file of that graph would (a 2-byte index would halve a file's size
    # for the memory it makes the reader allocate).
    codes = {"payload": _smallest(len(payloads)), "succ_counts": INDEX, "succ_ends": INDEX, "succ_data": INDEX}
    total = 0
    for entry, name in zip(layout, SECTIONS):
        if not isinstance(entry, list) or len(entry) != 3 or entry[0] != name:
            raise SnapshotRejected("garbled header (layout)")
        typecode, size = entry[1], _integer(entry[2], f"{name} size")
        if name == "ids":
            ok = typecode is None and (max(header.cis - 1, 0) <= size <= header.cis * ID_BYTES_LIMIT)
        else:
            items = header.links if name.endswith(("_ends", "_data")) else header.cis
            ok = typecode == codes[name] and size == items * array(typecode).itemsize
        if not ok:
            raise SnapshotRejected(f"garbled header (layout of {name})")
        total += size
    return total


def read_header(path: Path | str) -> SnapshotHeader:
    """The header of a whole, unaltered snapshot of this format: the file is checked against its digest,
    read a chunk at a time (the body is never held)."""
    return _read(path, body=False)[1]


def load(path: Path | str, semantics: dict[str, RelationshipSemantics], *, schema_revision: str,
         accept: Callable[[SnapshotHeader], None] | None = None,
         compact_min_cis: int | None = None, view_first: bool = False,
         share: bool = False) -> tuple[ImpactGraph, SnapshotHeader]:
    """The graph the file at `path` holds, and its header. Raises SnapshotRejected when the file is absent,
    truncated, corrupt, of another format, schema revision, semantics or code, or when `accept(header)`
    raises it (the caller's check of `lineage`, before the body is decoded).

    With `compact_min_cis` (None: never), a graph of at least that many CIs also gets its compiled view
    (graph.compact) from copies of the file's arrays instead of one built from the dicts (~4 s at
    1,000,000 CIs, ~50 s at 10,000,000): the view goes in once its loops are compiled, in a thread
    (ImpactGraph.adopt_compact).

    With `view_first` too, such a graph is returned as soon as its compiled view and its CIs' payloads are
    there, with no succ and pred dicts (ImpactGraph.start_view_first); numba's loops are compiled (or loaded
    from its cache) first, in this thread. With `share` too, the view's base arrays are those another process
    of the host made from the same file, once checked against it, or made here and offered to the next ones
    (graph.shared_base: memory shared by a host's workers)."""
    raw, header, body, digest = _read(path)
    if header.schema_revision != schema_revision:
        raise SnapshotRejected(f"schema revision {header.schema_revision}, the service runs {schema_revision}")
    if header.semantics_digest != semantics_digest(semantics):
        raise SnapshotRejected("written under other relationship semantics")
    if header.code_digest != CODE_DIGEST:
        raise SnapshotRejected("written by another version of the graph code")
    if raw.get("byteorder") != sys.byteorder:
        raise SnapshotRejected(f"written on a {raw.get('byteorder')}-endian machine")
    if accept is not None:
        accept(header)
    try:
        compact = compact_min_cis is not None and header.cis >= compact_min_cis and header.cis < 1 << 31
        graph = None
        if compact and view_first:
            graph = _view_first(semantics, header, raw["layout"], raw["payloads"], raw["edge_data"], body,
                                (path, digest) if share else None)
        if graph is None:
            graph = _decode(semantics, header, raw["layout"], raw["payloads"], raw["edge_data"], body, compact)
    except (KeyError, TypeError, ValueError, IndexError, UnicodeDecodeError) as exc:
        # The digest is unkeyed: it proves the file whole, not who wrote it. Whoever can write the
        # directory can write a file whose body contradicts itself, and `_lay_out` refuses it here.
        raise SnapshotRejected(f"inconsistent body: {exc!r}") from None
    return graph, header


def _sections(layout, body: memoryview) -> dict:
    sections, offset = {}, 0
    for name, typecode, size in layout:
        chunk = body[offset:offset + size]
        offset += size
        sections[name] = chunk if typecode is None else chunk.cast(typecode)  # read where they lie, not copied
    if offset != len(body):
        raise ValueError("body size does not match its layout")
    return sections


def _view_first(semantics, header: SnapshotHeader, layout, payloads, edge_data, body: memoryview,
                share: tuple | None = None) -> ImpactGraph | None:
    """The graph with its CIs' payloads and its compiled view, and no dicts (ImpactGraph.start_view_first); None
    when memory for the view's arrays could not be had, or the view could not be made (logged): the caller
    then loads the graph the usual way. The checks are _lay_out's: those on the dicts' lengths made on the
    arrays instead (no CI id twice, no pair twice in a CI's successors). The CIs' ids and payloads are laid out
    as tables (graph.id_table: no Python string per CI) where the ids fit one (each at most id_table.MAX_WIDTH
    bytes), as a list and dicts otherwise. With `share` ((the file's path, its digest)), the view's base arrays
    and the ids' table are shared with the host's other workers (graph.shared_base)."""
    import numpy as np

    from graph import compact, id_table, shared_base

    sections = _sections(layout, body)
    graph = ImpactGraph(semantics)
    # The CIs' ids as a table (graph.id_table: ~45 bytes a CI, shared with the host's other workers) where they
    # fit one; else a Python string each, the view's index and the payloads a dict each.
    keys = id_table.keys_of(sections["ids"], header.cis)
    was_enabled = gc.isenabled()
    gc.disable()  # a million small objects made: no collection walks them meanwhile
    try:
        ids, payload_of, _data_of = _checked(graph, header, sections, payloads, edge_data, with_ids=keys is None)
        if keys is None:
            _lay_out_nodes(graph.graph, ids, payload_of, sections["payload"], header.cis)
    finally:
        if was_enabled:
            gc.enable()
    counts, ends, data = sections["succ_counts"], sections["succ_ends"], sections["succ_data"]

    def own() -> dict:
        """The base arrays, made from the file's."""
        p_counts, p_tails, p_data, heads = _by_head(counts, ends, data, header.cis, with_heads=True)
        # The edges by head keep each head's tails in CI order: a pair twice in a CI's row is two equal
        # neighbours (the dicts would have collapsed it).
        if bool(((heads[1:] == heads[:-1]) & (p_tails[1:] == p_tails[:-1])).any()):
            raise ValueError("succ holds a pair twice")
        del heads
        indptr, p_indptr = np.zeros(header.cis + 1, np.int64), np.zeros(header.cis + 1, np.int64)
        np.cumsum(np.asarray(counts), out=indptr[1:])
        np.cumsum(p_counts, out=p_indptr[1:])
        made = {"indptr": indptr, "heads": np.asarray(ends).astype(np.int32),
                "edata": np.asarray(data).astype(np.int32), "p_indptr": p_indptr,
                "p_tails": p_tails.astype(np.int32, copy=False), "p_edata": p_data.astype(np.int32)}
        if keys is not None:
            parts = id_table.sorted_parts(keys)
            if parts is None:
                raise ValueError("duplicate CI ids")
            made["keys"], made["ranks"], made["order"] = parts
        return made

    try:
        holder = rows = None
        if share is None:
            base = own()
        else:  # (outside the collector's pause: a wait for another worker's lock may last)
            rows = (np.asarray(counts), np.asarray(ends), np.asarray(data), len(edge_data), keys)
            base, holder, _ = shared_base.share(share[0], share[1], rows, own)
        payload = np.asarray(sections["payload"])
        if keys is not None:
            ids = id_table.IdTable(base["keys"].view(keys.dtype), base["ranks"], base["order"])
            nodes = id_table.NodeTable(ids, payload.copy(), payload_of)  # (the file's body is let go)
        rows = keys = None  # (the file's ids as keys: ~36 bytes a CI, let go)
    except MemoryError:
        return None
    try:
        compact.warm_up()
        # The payloads' keys and the view's ids are the same strings (one copy of each id), or the same table.
        view = compact.from_snapshot(ids, None, base["heads"], base["edata"], payload, _data_of,
                                     [k for _, k in payloads], set(),
                                     (base["p_indptr"], base["p_tails"], base["p_edata"]), indptr=base["indptr"])
        view.shared_base = holder  # the memfd stays open while the view uses it (others may map it through us)
    except Exception:  # as for a view adopted in the background: the graph is loaded the usual way instead
        log.exception("the impact graph's compact view from its snapshot failed: the graph is laid out first")
        return None
    del base, holder
    if isinstance(ids, id_table.IdTable):
        graph.graph._node = nodes
    # Nothing of the file is kept: the graph's dicts, if ever needed, are laid out from the view.
    graph.start_view_first(view)
    graph.applied_seq = header.applied_seq
    gc.freeze()  # as a load does: the CIs' payloads and ids out of the collector's reach
    return graph


def _decode(semantics, header: SnapshotHeader, layout, payloads, edge_data, body: memoryview,
            compact: bool = False) -> ImpactGraph:
    sections = _sections(layout, body)
    graph = ImpactGraph(semantics)
    with graph._lock:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            ids, data_of, by_head = _lay_out(graph, header, sections, payloads, edge_data, compact)
        finally:
            if was_enabled:
                gc.enable()
        # No collection first (bulk_load makes one): decoding leaves no cycles behind, and a full
        # collection would walk the whole new graph (~0.5 s at 1,000,000 CIs) to find nothing.
        gc.freeze()
        graph.applied_seq = header.applied_seq
        if by_head is not None:  # (load: no view past 2**31 CIs, the view's indexes being 4-byte signed)
            # The indexes were checked in range by _lay_out, and the counts against `links`, on these very
            # bytes (read into memory, digest checked). Copied (~0.1 s at 1,000,000 CIs), so that the view
            # does not keep the whole file's bytes alive.
            import numpy as np

            try:
                arrays = {name: np.frombuffer(sections[name], np.dtype(typecode)).astype(np.int32)
                          for name, typecode, _ in layout if typecode is not None}
                p_counts, p_tails, p_data = by_head
                p_indptr = np.zeros(header.cis + 1, np.int64)
                np.cumsum(p_counts, out=p_indptr[1:])
                predecessors = (p_indptr, p_tails.astype(np.int32, copy=False), p_data.astype(np.int32))
            except MemoryError:  # the graph is whole: its view is built from the dicts later (maybe_compact)
                return graph
            del by_head, p_counts, p_tails, p_data
            ks = [k for _, k in payloads]

            def make(pending: set):  # in the view's thread: numba is imported there, not here
                from graph import compact as compact_module

                return compact_module.from_snapshot(ids, arrays["succ_counts"], arrays["succ_ends"],
                                                    arrays["succ_data"], arrays["payload"], data_of, ks, pending,
                                                    predecessors)

            graph.adopt_compact(make)
    return graph


def _lay_out(graph: ImpactGraph, header: SnapshotHeader, sections: dict, payloads, edge_data,
             ordered: bool = False) -> tuple[list, list, tuple | None]:
    """Lay the sections out as the graph's dicts, refusing (ValueError) any body this module's writer
    cannot have written: the graph's code trusts its own invariants (every edge in both adjacencies, on
    one shared data dict), and a file that breaks one would make a later change record raise in every
    worker that loaded it. The pred side is built here from the succ side, so it mirrors it by
    construction. The sections' lengths were checked against the header in `_body_size`. Returns the CI ids
    in the file's order, the graph's data dict of each edge data row and, if `ordered`, the edges ordered by
    head (`_by_head`; else None)."""
    ids, payload_of, data_of = _checked(graph, header, sections, payloads, edge_data)
    _lay_out_nodes(graph.graph, ids, payload_of, sections["payload"], header.cis)

    cis, links = header.cis, header.links
    counts, ends, data = sections["succ_counts"], sections["succ_ends"], sections["succ_data"]
    # C-level passes only (no Python frame per CI or edge), a slice of CIs at a time so that the worker's
    # other threads get the GIL in between.
    g = graph.graph
    succ, pred = g._succ, g._pred
    if not ordered:
        _edge_by_edge(ids, counts, ends, data, data_of, succ, pred)
        if sum(map(len, succ.values())) != links:  # a head twice in one CI's list collapsed (and its pred entry)
            raise ValueError("succ holds a pair twice")
        return ids, data_of, None
    # With numpy at hand (`ordered`: the compiled view is made next, which needs the edges by head too), the
    # pred side is laid out as succ is: each CI's dict from its next pairs, of the edges ordered by head (a
    # stable sort: each head's tails in CI order, as the edge by edge way lists them too), each on succ's very
    # data dict. ~25% less time than the edge by edge way (an insert into a random dict per edge) at 1,000,000
    # CIs; not without numpy, whose import alone (~17 MiB) a worker whose graph is too small for the view
    # does not pay.
    pairs = zip(map(ids.__getitem__, ends), map(data_of.__getitem__, data))
    for start in range(0, len(ids), SLICE):
        succ.update(zip(ids[start:start + SLICE], map(dict, map(islice, repeat(pairs), counts[start:start + SLICE]))))
    if sum(map(len, succ.values())) != links:  # a head twice in one CI's list collapsed
        raise ValueError("succ holds a pair twice")
    try:
        by_head = _by_head(counts, ends, data, cis)
    except MemoryError:  # ~5 arrays of an entry per edge: without them, the pred side edge by edge (no view)
        _edge_by_edge(ids, counts, ends, data, data_of, None, pred)
        return ids, data_of, None
    p_counts, p_tails, p_data = (memoryview(array) for array in by_head)
    pairs = zip(map(ids.__getitem__, p_tails), map(data_of.__getitem__, p_data))
    for start in range(0, len(ids), SLICE):
        pred.update(zip(ids[start:start + SLICE], map(dict, map(islice, repeat(pairs), p_counts[start:start + SLICE]))))
    return ids, data_of, by_head


def _checked(graph: ImpactGraph, header: SnapshotHeader, sections: dict, payloads,
             edge_data, with_ids: bool = True) -> tuple[list | None, list, list]:
    """The CI ids in the file's order (None unless `with_ids`: they are checked, not decoded; their count was
    then checked by graph.id_table.keys_of), the graph's payload dict of each payload row and its data dict of
    each edge data row, once the tables are well formed, every index in range and the counts add up to `links`
    (ValueError otherwise)."""
    cis, links = header.cis, header.links
    raw_ids = bytes(sections["ids"]) if with_ids else sections["ids"]
    if (with_ids and raw_ids.count(b"\0") != max(cis - 1, 0)) or (not cis and len(raw_ids)):  # before splitting
        raise ValueError("the ids section does not hold `cis` ids")
    if with_ids:  # (split after counting: no surprise list)
        ids = raw_ids.decode().split("\0") if cis else []
    else:  # valid UTF-8, decoded a slice at a time (no string of them all)
        ids, decoder = None, codecs.getincrementaldecoder("utf-8")()
        for start in range(0, len(raw_ids), 1 << 24):
            decoder.decode(raw_ids[start:start + (1 << 24)])
        decoder.decode(b"", final=True)
    del raw_ids
    if not all(isinstance(row, list) and len(row) == 2 and (row[0] is None or isinstance(row[0], str))
               and (row[1] is None or type(row[1]) is int) for row in payloads):
        raise ValueError("garbled payload table")
    if not all(isinstance(row, list) and len(row) == 2 and isinstance(row[0], list)
               and all(isinstance(name, str) for name in row[0]) and type(row[1]) is bool for row in edge_data):
        raise ValueError("garbled edge data table")
    # Indexes in range: the typecodes are unsigned, so max() (one C pass each) is the whole check.
    for name, bound in (("payload", len(payloads)), ("succ_ends", cis), ("succ_data", len(edge_data))):
        if max(sections[name], default=-1) >= bound:
            raise ValueError(f"{name} index out of range")
    if sum(sections["succ_counts"]) != links:
        raise ValueError("succ counts do not match")
    # The graph's own shared dicts: its payload table, and its type-set tables' dicts for each edge's types.
    payload_of = [graph._payload(c, k) for c, k in payloads]
    types = graph._types
    data_of = [(types.covered if covered else types.of)(frozenset(map(sys.intern, names)))
               for names, covered in edge_data]
    return ids, payload_of, data_of


def _lay_out_nodes(g, ids: list, payload_of: list, payload, cis: int) -> None:
    for start in range(0, len(ids), SLICE):
        g._node.update(zip(ids[start:start + SLICE], map(payload_of.__getitem__, payload[start:start + SLICE])))
    if len(g._node) != cis:
        raise ValueError("duplicate CI ids")


def _edge_by_edge(ids: list, counts, ends, data, data_of: list, succ: dict | None, pred: dict) -> None:
    """Each CI's succ dict from its next `count` (head, data) pairs (dict(islice(...))), unless `succ` is None,
    and each of those edges u -> v set as pred[v][u] on the same data dict, into every CI's pred dict made
    empty first."""
    for start in range(0, len(ids), SLICE):
        pred.update(zip(ids[start:start + SLICE], map(dict, repeat((), SLICE))))
    pred_rows = list(pred.values())  # by CI index; one allocation of its exact size
    offset = 0
    for start in range(0, len(ids), SLICE):
        tails, part = ids[start:start + SLICE], counts[start:start + SLICE]
        stop = offset + sum(part)
        heads = ends[offset:stop]
        on = list(map(data_of.__getitem__, data[offset:stop]))
        if succ is not None:
            succ.update(zip(tails, map(dict, map(islice, repeat(zip(map(ids.__getitem__, heads), on)), part))))
        deque(map(dict.__setitem__, map(pred_rows.__getitem__, heads), chain.from_iterable(map(repeat, tails, part)),
                  on), maxlen=0)
        offset = stop


def _by_head(counts, ends, data, cis: int, with_heads: bool = False) -> tuple:
    """(per CI its predecessor count, per edge its tail, per edge its edge data row), the edges ordered by
    head, each head's in CI order of their tails (numpy arrays); and with `with_heads`, per edge its head."""
    import numpy as np  # here: only a load that makes the compiled view (which imports it anyway) comes here

    heads = np.asarray(ends)
    order = np.argsort(heads, kind="stable")
    tails = np.repeat(np.arange(cis, dtype=np.int32 if cis < 1 << 31 else np.int64), np.asarray(counts))
    by_head = np.bincount(heads, minlength=cis), tails[order], np.asarray(data)[order]
    return (*by_head, heads[order]) if with_heads else by_head
