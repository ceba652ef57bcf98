"""graph.shared_base: the workers of a host that start from the same snapshot file share one sealed memfd of
the compiled view's base arrays; a base that is not the file's (forged, altered, unsealed, gone) is never
used, the worker makes its own instead, and answers stay the Python loop's.

The other workers are real processes (a child that loads the file and holds its graph), mapping through
/proc/<pid>/fd as the service's workers do."""

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from graph import id_table, shared_base, snapshot
from tests.graph.conftest import SEMANTICS, build
from tests.graph.test_compact import answer
from tests.graph.test_reference_model import random_graph

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "t"

HOLDER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from graph import snapshot
    from tests.graph.conftest import SEMANTICS
    g, _ = snapshot.load(sys.argv[2], SEMANTICS, schema_revision="t", compact_min_cis=0, view_first=True, share=True)
    print(int(g._view.shared_base is not None), flush=True)
    sys.stdin.readline()
""")


def saved(seed: int, path: Path):
    cis, rels = random_graph(seed)
    g = build(cis, rels)
    g.applied_seq = 3
    snapshot.save(g, path, schema_revision=SCHEMA, lineage="t")
    return build(cis, rels)


def loaded(path: Path):
    g, _ = snapshot.load(path, SEMANTICS, schema_revision=SCHEMA, compact_min_cis=0, view_first=True, share=True)
    assert not g.dicts_ready and g.compacted
    return g


def alike(g, p) -> None:
    for ci in sorted(p.graph._node)[::7] + ["nowhere"]:
        assert answer(g.impact([ci])) == answer(p.impact([ci]))
        assert g.spof(ci) == p.spof(ci) and g.providers(ci) == p.providers(ci)
        assert g.neighborhood(ci, 2) == p.neighborhood(ci, 2)


def mapped(view) -> bool:
    """Whether the view's base arrays are those of its shared base's mapping."""
    base = view.shared_base
    ids = view.ids
    return base is not None and all(
        np.shares_memory(getattr(view, name), base.arrays[name]) for name in ("indptr", "heads", "edata")) and all(
        np.shares_memory(mine, base.arrays[name]) for mine, name in zip(view._pred, ("p_indptr", "p_tails", "p_edata"))
    ) and isinstance(ids, id_table.IdTable) and all(
        np.shares_memory(getattr(ids, name), base.arrays[name]) for name in ("keys", "ranks", "order"))


@pytest.fixture
def holder(tmp_path):
    """A child process that loaded the file at tmp_path/g.snapshot with sharing, holding it until the test ends."""
    children = []

    def start(path: Path) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), str(path)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        children.append(child)
        assert child.stdout.readline().strip() == "1"
        return child

    yield start
    for child in children:
        child.stdin.close()
        child.wait(60)


@pytest.mark.parametrize("seed", range(3))
def test_a_second_worker_maps_the_first_ones_base(seed, tmp_path, holder):
    path = tmp_path / "g.snapshot"
    p = saved(seed, path)
    child = holder(path)
    g = loaded(path)
    base = g._view.shared_base
    assert base is not None and mapped(g._view) and not g._view.heads.flags.writeable
    entries = json.loads(shared_base.registry_path(path).read_text())
    assert [e["pid"] for e in entries] == [child.pid, os.getpid()] and entries[0]["inode"] == base.inode
    assert fcntl.fcntl(base.fd, fcntl.F_GET_SEALS) & shared_base.SEALS == shared_base.SEALS
    alike(g, p)
    # Changes go to the overlay (the base is sealed), then a stale view is made fresh, off the mapping.
    names = sorted(p.graph._node)
    changes = [("add_relationship", names[0], names[1], "depends_on"), ("remove_ci", names[2])]
    g.apply_changes(changes)
    for operation, *arguments in changes:
        getattr(p, operation)(*arguments)
    alike(g, p)
    g._view = g._rebased(g._view)
    assert g._view.shared_base is None
    alike(g, p)


def test_the_first_worker_offers_its_base_and_the_next_ones_find_it(tmp_path):
    path = tmp_path / "g.snapshot"
    p = saved(4, path)
    first = loaded(path)
    assert mapped(first._view)
    second = loaded(path)  # the same process here: opened through /proc/self/fd like any other
    assert mapped(second._view) and second._view.shared_base.inode == first._view.shared_base.inode
    assert second._view.shared_base.fd != first._view.shared_base.fd
    alike(second, p)
    # A new file (the graph moved): another base, the old one's entries kept while their holders live.
    p.add_relationship(sorted(p.graph._node)[0], sorted(p.graph._node)[3], "runs_on")
    p.applied_seq = 4
    snapshot.save(p, path, schema_revision=SCHEMA, lineage="t")
    third = loaded(path)
    assert third._view.shared_base.inode != first._view.shared_base.inode
    alike(third, p)
    assert len({e["digest"] for e in json.loads(shared_base.registry_path(path).read_text())}) == 2


def forged(path: Path, change) -> None:
    """List a sealed memfd holding the file's base arrays altered by `change(arrays)` as this process's."""
    raw, header, body, digest = snapshot._read(path)
    sections = snapshot._sections(raw["layout"], body)
    counts, ends, data = (np.asarray(sections[name]) for name in ("succ_counts", "succ_ends", "succ_data"))
    heads = ends.astype(np.int32)
    order = np.argsort(heads, kind="stable")
    tails = np.repeat(np.arange(header.cis, dtype=np.int32), counts)
    arrays = {"indptr": np.concatenate(([0], np.cumsum(counts))).astype(np.int64), "heads": heads,
              "edata": data.astype(np.int32),
              "p_indptr": np.concatenate(([0], np.cumsum(np.bincount(heads, minlength=header.cis)))).astype(np.int64),
              "p_tails": tails[order], "p_edata": data.astype(np.int32)[order]}
    keys = id_table.keys_of(sections["ids"], header.cis)
    arrays["keys"], arrays["ranks"], arrays["order"] = id_table.sorted_parts(keys)
    mapped_alike = {**arrays, "keys": arrays["keys"].view(np.uint8)}  # (a mapping holds the keys' bytes)
    assert shared_base._problem(mapped_alike, counts, ends, data, len(raw["edge_data"]), keys) is None  # the true base
    change(arrays)
    base = shared_base._made(arrays)
    forged.kept.append(base)
    shared_base._register(shared_base.registry_path(path), [], digest.hex(), base)


forged.kept = []


def swap_tails_across_heads(arrays):
    # Two edges into different heads exchange tails: every count and range still holds, and each head's tails may
    # stay in order; only the multiset of edges tells.
    t, ptr = arrays["p_tails"].copy(), arrays["p_indptr"]
    firsts = [int(ptr[h]) for h in range(len(ptr) - 1) if ptr[h + 1] - ptr[h] == 1]
    a, b = firsts[0], firsts[1]
    t[a], t[b] = t[b], t[a]
    arrays["p_tails"] = t


CASES = {
    "rows": lambda a: a.__setitem__("heads", np.roll(a["heads"], 1)),
    "row starts": lambda a: a["indptr"].__setitem__(1, a["indptr"][1] + 1),  # an edge moved to the next row
    "predecessor counts": lambda a: a.__setitem__("p_indptr", np.concatenate(([0, 0], a["p_indptr"][2:]))),
    "predecessor ranges": lambda a: a["p_edata"].__setitem__(0, 10 ** 6),
    "predecessor order": lambda a: a.__setitem__("p_tails", a["p_tails"][::-1].copy()),
    "predecessors are not the rows' edges": swap_tails_across_heads,
    # The ids' table: two keys swapped (out of order); two CIs' ranks swapped (each key still another CI's, the
    # inverse no longer); the greatest key grown (still in order, no longer the file's id).
    "id table order": lambda a: a.__setitem__("keys", a["keys"][[1, 0, *range(2, len(a["keys"]))]]),
    "id table ranks": lambda a: a.__setitem__("ranks", a["ranks"][[1, 0, *range(2, len(a["ranks"]))]]),
    "id table ids": lambda a: a.__setitem__("keys", np.concatenate((a["keys"][:-1], [a["keys"][-1] + b"~"]))
                                            .astype(a["keys"].dtype)),
    "id table sizes": lambda a: a.__setitem__("keys", a["keys"].astype(f"S{a['keys'].dtype.itemsize + 1}")),
}


@pytest.mark.parametrize("case", CASES)
def test_a_base_that_is_not_the_files_is_refused(case, tmp_path, caplog):
    path = tmp_path / "g.snapshot"
    p = saved(5, path)
    forged(path, CASES[case])
    g = loaded(path)
    assert f"refused ({case})" in caplog.text and mapped(g._view)
    assert g._view.shared_base.inode != forged.kept[-1].inode  # its own, made afresh and offered
    alike(g, p)


def test_an_unsealed_or_gone_base_is_not_used(tmp_path):
    path = tmp_path / "g.snapshot"
    p = saved(6, path)
    first = loaded(path)
    entry = json.loads(shared_base.registry_path(path).read_text())[0]
    unsealed = os.memfd_create("karta-graph-base", os.MFD_ALLOW_SEALING)  # the same bytes, not sealed
    data = os.pread(first._view.shared_base.fd, entry["size"], 0)
    os.pwrite(unsealed, data, 0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    entries = [{**entry, "fd": unsealed, "inode": os.fstat(unsealed).st_ino},
               {**entry, "pid": int(dead.stdout)}, {"garbled": True}]
    shared_base.registry_path(path).write_text(json.dumps(entries))
    try:
        assert shared_base._attached(entries[0]) is None
        g = loaded(path)
        assert mapped(g._view) and g._view.shared_base.inode != os.fstat(unsealed).st_ino
        assert g._view.shared_base.inode != first._view.shared_base.inode  # the live one was not listed any more
        alike(g, p)
        kept = json.loads(shared_base.registry_path(path).read_text())
        assert [e["pid"] for e in kept] == [os.getpid(), os.getpid()]  # the dead and the garbled pruned
    finally:
        os.close(unsealed)


def test_without_a_registry_the_worker_keeps_its_own_arrays(tmp_path, monkeypatch, caplog):
    path = tmp_path / "g.snapshot"
    p = saved(7, path)

    def no_memfd(*args, **kwargs):
        raise OSError("memfd_create: function not implemented")

    monkeypatch.setattr(os, "memfd_create", no_memfd)
    g = loaded(path)
    assert g._view.shared_base is None and "not shared between workers" in caplog.text
    alike(g, p)


def test_a_listed_fd_now_something_else_neither_blocks_nor_breaks_the_load(tmp_path, caplog):
    # A worker's fd number, once its base was let go, may be reused for anything: a FIFO with no writer (whose
    # open would block for ever), a garbled memfd. The registry itself may be garbled. None of it stops a load.
    import threading

    path = tmp_path / "g.snapshot"
    p = saved(9, path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    short = os.memfd_create("karta-graph-base", os.MFD_ALLOW_SEALING)  # MAGIC, then too short for its length
    os.write(short, shared_base.MAGIC + b"\x01")
    fcntl.fcntl(short, fcntl.F_ADD_SEALS, shared_base.SEALS)
    raw, header, body, digest = snapshot._read(path)
    listed = [{"pid": os.getpid(), "fd": fd, "inode": os.fstat(fd).st_ino, "size": os.fstat(fd).st_size,
               "digest": digest.hex()} for fd in (reader, short)]
    try:
        for registry in (listed, [{"pid": 2 ** 70, "fd": 3, "inode": 1, "size": 1, "digest": digest.hex()}],
                         "[" * 100_000, {"not": "a list"}):
            shared_base.registry_path(path).write_text(json.dumps(registry) if not isinstance(registry, str) else registry)
            done = []
            loading = threading.Thread(target=lambda: done.append(loaded(path)), daemon=True)
            loading.start()
            loading.join(60)
            assert done, f"the load blocked or failed with the registry {str(registry)[:80]}"
            g = done[0]
            assert mapped(g._view) and g._view.shared_base.inode not in {e["inode"] for e in listed}
            alike(g, p)
        assert shared_base._attached(listed[1]) is None
    finally:
        os.close(reader)
        os.close(short)
