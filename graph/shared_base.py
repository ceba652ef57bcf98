"""The compiled view's base arrays, shared by the workers of a host: memory that does not grow with them.

Every worker of a host that starts from the same snapshot file (graph.snapshot, view first) makes the same base
arrays from it: per CI where its row starts, per edge its head and its edge data row, and the same edges by
head (the predecessors), and its CIs' ids (graph.id_table: fixed-width bytes sorted, each CI's rank and each
rank's CI, 44 bytes a CI for Karta's UUIDs); ~110 MiB at 1,000,000 CIs and 3 million edges, ~1.1 GiB at
10,000,000. The first worker to load a file writes them into a memfd (memory, no file on disk), seals it
(F_SEAL_SHRINK, GROW, WRITE and SEAL: from then on nobody, root included, can change or truncate it) and lists
itself in a registry beside the snapshot file; the next ones open it through /proc/<pid>/fd/<fd> of a listed
worker still alive, map it read-only and list themselves too, so that the base lives as long as one of them
holds it.

A worker uses no base it did not make before checking it against the file it has just read and checked itself:
the seals; the rows equal to the file's (starts, heads and edge data rows, element for element); the ids' table
the file's ids (the keys strictly increasing, the ranks and their inverse permutations of each other, each CI's
key the file's id); the predecessors the very transposition of those rows (per CI as many as edges into it,
each CI's tails in strictly increasing order, and the multiset of (tail, head, row) triples equal to the rows',
compared by sums of a hash keyed with a secret of this process, which a base made to pass the check would
need). The checks are vectorised passes over the arrays, no sort; sealed, the pages checked are the pages used.
Whatever fails (no holder alive, /proc not readable, a base that fails a check), the worker makes its own base
and offers it.

Pure: numpy, the standard library and filelock; it never imports app/, a web framework or a database driver.
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import os
import secrets
import stat
import struct
import tempfile
import weakref
from pathlib import Path

import filelock
import numpy as np

log = logging.getLogger("karta.graph")

MAGIC = b"KARTA-GRAPH-BASE\n"
FORMAT = 2
# The arrays, in order, with their types (CompactView's base: indptr, heads, edata; its predecessors; its CIs'
# ids as graph.id_table lays them out, the fixed-width keys sorted as bytes, each CI's rank and each rank's CI;
# empty where the ids make no table).
ARRAYS = (("indptr", np.int64), ("heads", np.int32), ("edata", np.int32),
          ("p_indptr", np.int64), ("p_tails", np.int32), ("p_edata", np.int32),
          ("keys", np.uint8), ("ranks", np.int32), ("order", np.int32))
ALIGN = 64
SEALS = sum(getattr(fcntl, name, 0) for name in ("F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE", "F_SEAL_SEAL"))
# Entries the registry keeps at most (holders of bases of this file and of older ones): a bound on the file.
REGISTRY_MAX = 64
HEADER_MAX = 1 << 16
_LENGTH = struct.Struct("<I")
# This process's hash keys (odd 64-bit multipliers) for the multiset check.
_KEYS = tuple(np.uint64(secrets.randbits(64) | 1) for _ in range(4))


class Base:
    """A sealed memfd holding base arrays, mapped read-only: `arrays` (read-only numpy arrays over the mapping)
    stay valid as long as they are referenced; the memfd is given back to the kernel when the last worker that
    holds it closes it (`close`, or its exit)."""

    def __init__(self, fd: int, size: int, arrays: dict[str, np.ndarray]):
        self.fd, self.size, self.arrays = fd, size, arrays
        self.inode = os.fstat(fd).st_ino
        self.theirs = False  # made by another worker (set by share)
        self._closed = weakref.finalize(self, os.close, fd)  # once nothing holds the base: its fd given back

    def close(self) -> None:
        self._closed()


def registry_path(snapshot_path: Path | str) -> Path:
    return Path(f"{snapshot_path}.bases")


# How long a worker waits for another making the base of the same file (~5 s at 10,000,000 CIs) before making
# its own, unshared.
LOCK_SECONDS = 120
# Whether this system has sealed memfds (Linux); elsewhere every worker keeps its own arrays.
AVAILABLE = hasattr(os, "memfd_create") and hasattr(fcntl, "F_ADD_SEALS")


def share(snapshot_path: Path | str, digest: bytes, rows: tuple, make) -> tuple[dict, Base | None, bool]:
    """(the base arrays for the snapshot file whose digest is `digest`, the shared base holding them or None
    when they are this worker's own (no memfds, or the registry unusable: logged), whether another worker made
    them).

    `rows` is the file's (counts, heads, edge data rows) as numpy arrays, its edge data table's length, and its CI
    ids laid out as graph.id_table's keys in the file's order (or None where they make no table): what
    another worker's base is checked against. `make()` returns the arrays (ARRAYS' names) when this worker has to
    make them itself; what it raises (a file the caller refuses) is raised, and nothing else is: whatever goes
    wrong with another worker's base or the registry leaves this worker with its own arrays.

    The registry's lock is held to read it and to list a base, and while this worker makes one (so that the
    host's workers starting at once make one between them); another worker's base is checked without it."""
    if not AVAILABLE:
        return make(), None, False
    registry = registry_path(snapshot_path)
    key = digest.hex()
    lock = filelock.FileLock(f"{registry}.lock", timeout=LOCK_SECONDS)
    tried: set = set()
    try:
        with lock:
            entries = _entries(registry)
        found = _checked_base(entries, key, rows, tried)
        if found is None:
            with lock:
                entries = _entries(registry)
                found = _checked_base(entries, key, rows, tried)  # made meanwhile by a worker that held the lock
                if found is None:
                    arrays = make()
                    try:
                        found = _made(arrays)
                    except Exception as exc:  # noqa: BLE001 - any failure leaves this worker its own arrays
                        log.warning("the impact graph's base arrays are not shared between workers (%s): this "
                                    "worker keeps its own", exc)
                        return arrays, None, False
                    del arrays
                _listed(registry, entries, key, found)
                return found.arrays, found, found.theirs
        with lock:
            _listed(registry, _entries(registry), key, found)
        return found.arrays, found, True
    except (OSError, filelock.Timeout) as exc:  # the lock (or its directory) unusable
        log.warning("the impact graph's base arrays are not shared between workers (%s): this worker keeps its own",
                    exc)
        return make(), None, False


def _checked_base(entries: list[dict], key: str, rows: tuple, tried: set) -> "Base | None":
    """The first base listed for `key` (and not tried yet) that opens and passes the check against the file's
    rows; the others are closed. Never raises."""
    unreachable = 0
    for entry in entries:
        mark = (entry["pid"], entry["fd"], entry["inode"])
        if entry["digest"] != key or mark in tried:
            continue
        tried.add(mark)
        base = _attached(entry)
        if base is None:
            unreachable += 1
            continue
        try:
            problem = _problem(base.arrays, *rows)
        except Exception as exc:  # noqa: BLE001 - a base that cannot be checked is not used
            problem = repr(exc)
        if problem is None:
            base.theirs = True
            return base
        log.warning("the impact graph's shared base of worker %s refused (%s): this worker makes its own",
                    entry["pid"], problem)
        base.close()
    if unreachable:
        log.info("%d base(s) of the impact graph listed by other workers could not be opened (their /proc hidden, "
                 "or gone): this worker makes its own", unreachable)
    return None


def _listed(registry: Path, entries: list[dict], key: str, base: "Base") -> None:
    """_register, its failure logged (the base is used all the same; later workers may not find it through
    this one)."""
    try:
        _register(registry, entries, key, base)
    except Exception as exc:  # noqa: BLE001
        log.warning("the impact graph's shared base could not be listed (%s)", exc)


def _entries(registry: Path) -> list[dict]:
    """The registry's entries whose holder is alive and still holds what it listed (its fd a regular file of the
    listed inode and size); unreadable or garbled: none. Never raises."""
    try:
        raw = json.loads(registry.read_text())
    except Exception:  # noqa: BLE001 - unreadable, garbled, nested past the parser's depth: no entries
        return []
    if not isinstance(raw, list):
        return []
    alive = []
    for entry in raw[-REGISTRY_MAX:]:
        try:
            if not (isinstance(entry, dict) and isinstance(entry.get("digest"), str)
                    and all(type(entry.get(k)) is int and 0 <= entry[k] < 1 << 31 for k in ("pid", "fd"))
                    and all(type(entry.get(k)) is int and 0 <= entry[k] < 1 << 63 for k in ("inode", "size"))):
                continue
            # stat, not open: the number may now be a FIFO or a terminal, whose open could block.
            info = os.stat(f"/proc/{entry['pid']}/fd/{entry['fd']}")
            if stat.S_ISREG(info.st_mode) and (info.st_ino, info.st_size) == (entry["inode"], entry["size"]):
                alive.append(entry)
        except Exception:  # noqa: BLE001 - gone, another user's, /proc hidden: not listed any more
            continue
    return alive


def _register(registry: Path, entries: list[dict], key: str, base: Base) -> None:
    """List this process as a holder of `base` (under the registry's lock), atomically; the files a writer
    killed half way left are removed (no other writer can be under way)."""
    mine = {"pid": os.getpid(), "fd": base.fd, "inode": base.inode, "size": base.size, "digest": key}
    kept = [e for e in entries if (e["pid"], e["fd"]) != (mine["pid"], mine["fd"])][-(REGISTRY_MAX - 1):]
    for leftover in registry.parent.glob(f".{registry.name}.*.new"):
        leftover.unlink(missing_ok=True)
    # (not named as graph.snapshot.remove_leftovers finds a snapshot writer's leftovers)
    fd, temporary = tempfile.mkstemp(dir=registry.parent, prefix=f".{registry.name}.", suffix=".new")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump([*kept, mine], f)
        os.replace(temporary, registry)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _made(arrays: dict[str, np.ndarray]) -> Base:
    """A sealed memfd holding `arrays`, mapped read-only."""
    header = {"format": FORMAT, "arrays": []}
    parts = []
    for name, dtype in ARRAYS:
        array = arrays.get(name)
        if array is None:
            array = np.zeros(0, dtype)
        elif name == "keys":  # fixed-width bytes ('S<width>'), as their bytes
            array = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        array = np.ascontiguousarray(array, dtype=dtype)
        header["arrays"].append([name, int(array.shape[0])])
        parts.append(array)
    encoded = json.dumps(header).encode()
    head = MAGIC + _LENGTH.pack(len(encoded)) + encoded
    offset = _aligned(len(head))
    positions = []
    for array in parts:
        positions.append(offset)
        offset = _aligned(offset + array.nbytes)
    size = max(offset, 1)
    fd = os.memfd_create("karta-graph-base", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        _write(fd, memoryview(head), 0)
        for array, position in zip(parts, positions):
            _write(fd, memoryview(array).cast("B"), position)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
        return Base(fd, size, _mapped(fd, size))
    except BaseException:
        os.close(fd)
        raise


def _write(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


def _aligned(offset: int) -> int:
    return offset + (-offset % ALIGN)


def _attached(entry: dict) -> Base | None:
    """The base another worker listed, opened and mapped, if it is still the sealed memfd it listed (None
    otherwise: gone, its number reused for something else, /proc closed to us, garbled). Never raises, never
    blocks: the link is looked at (stat) before it is opened, and opened non-blocking."""
    link = f"/proc/{entry['pid']}/fd/{entry['fd']}"
    try:
        info = os.stat(link)
        if not stat.S_ISREG(info.st_mode) or (info.st_ino, info.st_size) != (entry["inode"], entry["size"]):
            return None
        fd = os.open(link, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except Exception:  # noqa: BLE001
        return None
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_ino != entry["inode"] or info.st_size != entry["size"]
                or info.st_uid != os.geteuid() or fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS != SEALS):
            os.close(fd)
            return None
        return Base(fd, info.st_size, _mapped(fd, info.st_size))
    except Exception:  # noqa: BLE001 - a garbled one (struct.error, a header nested past the parser's depth...)
        os.close(fd)
        return None


def _mapped(fd: int, size: int) -> dict[str, np.ndarray]:
    """The arrays of a base's memfd, read-only views of a read-only mapping (ValueError if garbled)."""
    # Private and read-only: the memfd's pages are shared all the same (never written, never copied), and a
    # write-sealed memfd cannot be mapped shared before Linux 6.7, even read-only.
    memory = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    try:
        if memory[:len(MAGIC)] != MAGIC:
            raise ValueError("not a graph base")
        (length,) = _LENGTH.unpack(memory[len(MAGIC):len(MAGIC) + _LENGTH.size])
        start = len(MAGIC) + _LENGTH.size
        if length > HEADER_MAX or start + length > size:
            raise ValueError("garbled header")
        header = json.loads(bytes(memory[start:start + length]))
        listed = header.get("arrays") if isinstance(header, dict) and header.get("format") == FORMAT else None
        if not isinstance(listed, list) or [row[0] if isinstance(row, list) and len(row) == 2 else None
                                            for row in listed] != [name for name, _ in ARRAYS]:
            raise ValueError("garbled header")
        arrays, offset = {}, _aligned(start + length)
        for (name, dtype), (_, count) in zip(ARRAYS, listed):
            if type(count) is not int or count < 0 or offset + count * np.dtype(dtype).itemsize > size:
                raise ValueError("garbled header")
            arrays[name] = np.frombuffer(memory, dtype, count, offset)
            offset = _aligned(offset + count * np.dtype(dtype).itemsize)
        return arrays
    except BaseException:
        try:
            memory.close()
        except BufferError:  # an array made before the failure still holds it: closed with it
            pass
        raise


def _problem(arrays: dict[str, np.ndarray], counts: np.ndarray, heads: np.ndarray, edata: np.ndarray,
             table_len: int, keys: np.ndarray | None = None) -> str | None:
    """Why `arrays` are not the base the file's rows and ids make (None: they are); `keys`: the file's CI ids as
    graph.id_table lays them out, in the file's order (None: no table)."""
    n, e = counts.shape[0], heads.shape[0]
    if keys is None:
        if arrays["keys"].shape[0] or arrays["ranks"].shape[0] or arrays["order"].shape[0]:
            return "id table"
    else:
        from graph import id_table

        if arrays["keys"].shape[0] != n * keys.dtype.itemsize:
            return "id table sizes"
        problem = id_table.problem(arrays["keys"].view(keys.dtype), arrays["ranks"], arrays["order"], keys)
        if problem is not None:
            return problem
    indptr, b_heads, b_edata = arrays["indptr"], arrays["heads"], arrays["edata"]
    p_indptr, p_tails, p_edata = arrays["p_indptr"], arrays["p_tails"], arrays["p_edata"]
    if (indptr.shape[0], b_heads.shape[0], b_edata.shape[0], p_indptr.shape[0], p_tails.shape[0],
            p_edata.shape[0]) != (n + 1, e, e, n + 1, e, e):
        return "sizes"
    if indptr[0] != 0 or not np.array_equal(np.diff(indptr), counts):
        return "row starts"
    if not np.array_equal(b_heads, heads) or not np.array_equal(b_edata, edata):
        return "rows"
    if p_indptr[0] != 0 or not np.array_equal(np.diff(p_indptr), np.bincount(heads, minlength=n)[:n]):
        return "predecessor counts"
    if e and (int(p_tails.min()) < 0 or int(p_tails.max()) >= n or int(p_edata.min()) < 0
              or int(p_edata.max()) >= table_len):
        return "predecessor ranges"
    p_heads = np.repeat(np.arange(n, dtype=np.int32), np.diff(p_indptr))  # (a view is under 2**31 CIs)
    if e > 1 and not bool(((p_tails[1:] > p_tails[:-1]) | (p_heads[1:] != p_heads[:-1])).all()):
        return "predecessor order"
    tails = np.repeat(np.arange(n, dtype=np.int32), counts)
    if _triples(tails, heads, edata) != _triples(p_tails, p_heads, p_edata):
        return "predecessors are not the rows' edges"
    return None


# Edges hashed at a time (the temporaries' bound: ~8 arrays of 8 bytes an edge).
_HASH_SLICE = 1 << 22


def _triples(tails, heads, rows) -> int:
    """A sum over the edges of a keyed hash of (tail, head, row): equal for equal multisets of edges."""
    k1, k2, k3, k4 = _KEYS
    total = np.uint64(0)
    with np.errstate(over="ignore"):
        for start in range(0, tails.shape[0], _HASH_SLICE):
            part = slice(start, start + _HASH_SLICE)
            x = tails[part].astype(np.uint64) * k1 + heads[part].astype(np.uint64) * k2 + rows[part].astype(np.uint64) * k3
            x ^= x >> np.uint64(29)
            x *= k4
            x ^= x >> np.uint64(32)
            total += x.sum(dtype=np.uint64)
    return int(total)
