"""The compiled view made from a snapshot file's arrays (graph.compact.from_snapshot) answers as the Python
loop does on the same loaded graph, before and after changes, including the changes that land between the
load and the view going in (a worker's catch-up); it holds copies, nothing of the file."""

import hashlib
import random
import struct
import threading
import time

import numpy as np
import pytest

from graph import compact, snapshot
from graph.semantics import COVERED_KEY, TYPES_KEY
from tests.graph.conftest import SEMANTICS, SHOP_CIS, SHOP_RELATIONSHIPS, build, mirrored
from tests.graph.test_compact import answer, ask, change, random_graph_with_oddities
from tests.graph.test_reference_model import random_graph

SCHEMA = "0042_head"
JOIN_SECONDS = 60  # compiling the loops when numba's cache is cold takes ~10 s


def saved(g, path) -> None:
    snapshot.save(g, path, schema_revision=SCHEMA, lineage="L")


def loaded(path, compact_min_cis=None):
    return snapshot.load(path, SEMANTICS, schema_revision=SCHEMA, compact_min_cis=compact_min_cis)[0]


def adopted(graph):
    """The graph, once the view its load started making went in (waited for, bounded)."""
    assert graph.wait_compact(JOIN_SECONDS), "the view from the snapshot did not go in"
    return graph


@pytest.fixture
def held(monkeypatch):
    """The view's thread held before it goes in (at its warm-up) until the test sets the event: what the
    test does meanwhile lands between the load and the view, for certain."""
    release, real = threading.Event(), compact.warm_up

    def warm_up():
        assert release.wait(JOIN_SECONDS)
        real()

    monkeypatch.setattr(compact, "warm_up", warm_up)
    yield release
    release.set()


def test_the_shop_from_its_snapshot_answers_compiled(tmp_path):
    path = tmp_path / "graph.snapshot"
    saved(build(SHOP_CIS, SHOP_RELATIONSHIPS), path)
    python, compiled = loaded(path), adopted(loaded(path, compact_min_cis=0))
    assert not python.compacted
    for failed in (["db_primary"], ["web1", "web2"], ["switch"], ["nowhere"]):
        assert answer(python.impact(failed)) == answer(compiled.impact(failed))
    assert compiled.impact(["web1", "web2"]).impacted["shop"].state == "down"


def test_under_the_threshold_no_view_is_made(tmp_path):
    path = tmp_path / "graph.snapshot"
    saved(build(SHOP_CIS, SHOP_RELATIONSHIPS), path)
    graph = loaded(path, compact_min_cis=len(SHOP_CIS) + 100)
    assert not graph._building and not graph.compacted


def test_the_view_holds_no_part_of_the_file(tmp_path):
    """Its arrays are copies: the file truncated or rewritten in place under a running worker (someone
    running `cp` over it) neither kills it (SIGBUS) nor feeds its loops unchecked indexes."""
    path = tmp_path / "graph.snapshot"
    g = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    saved(g, path)
    graph = adopted(loaded(path, compact_min_cis=0))
    for array in (graph._view.heads, graph._view.edata):
        assert array.flags.owndata and not array.flags.writeable
    before = answer(graph.impact(["web1", "web2"]))
    with open(path, "r+b") as f:  # rewritten in place: every index past any graph, then truncated
        size = f.seek(0, 2)
        f.seek(64)
        f.write(b"\xff" * (size - 64))
        f.truncate(100)
    assert answer(graph.impact(["web1", "web2"])) == before
    assert graph.root_cause(["shop"])[0]
    g.add_relationship("reporting", "web_cluster", "depends_on")  # a new CI the cluster's failure takes down
    saved(g, path)  # and replaced whole, as the writer does
    assert "reporting" in loaded(path).impact(["web1", "web2"]).impacted
    assert "reporting" not in graph.impact(["web1", "web2"]).impacted


def test_bytes_written_into_the_file_during_the_load_reach_nothing(tmp_path, monkeypatch):
    """The digest and the checks cover the bytes that are decoded: rewritten in place after the checks (as
    `dd` or `rsync --inplace` would, while a worker loads), the file changes neither the graph nor its
    view (a mapped file let such bytes through to the compiled loops, which do not check bounds)."""
    path = tmp_path / "graph.snapshot"
    saved(build(SHOP_CIS, SHOP_RELATIONSHIPS), path)
    expected = answer(loaded(path).impact(["web1", "web2"]))
    real = snapshot._lay_out

    def then_spoiled(*args):
        laid = real(*args)
        with open(path, "r+b") as f:
            size = f.seek(0, 2)
            f.seek(64)
            f.write(b"\x7f" * (size - 64))
        return laid

    monkeypatch.setattr(snapshot, "_lay_out", then_spoiled)
    graph = adopted(loaded(path, compact_min_cis=0))
    assert answer(graph.impact(["web1", "web2"])) == expected
    assert answer(graph.impact(["switch"])) == answer(build(SHOP_CIS, SHOP_RELATIONSHIPS).impact(["switch"]))


def test_a_body_that_does_not_start_aligned_is_refused(tmp_path):
    """The writer pads its header so that the arrays lie aligned; a file that does not is no file of ours."""
    path = tmp_path / "graph.snapshot"
    saved(build(SHOP_CIS, SHOP_RELATIONSHIPS), path)
    content = path.read_bytes()
    start = len(snapshot.MAGIC) + 4
    (length,) = struct.unpack_from("<I", content, len(snapshot.MAGIC))
    head = content[start:start + length] + b" "  # one byte more: the body starts one byte later
    body = snapshot.MAGIC + struct.pack("<I", len(head)) + head + content[start + length:-snapshot.DIGEST_BYTES]
    path.write_bytes(body + hashlib.blake2b(body, digest_size=snapshot.DIGEST_BYTES).digest())
    with pytest.raises(snapshot.SnapshotRejected, match="aligned"):
        loaded(path, compact_min_cis=0)


def assert_predecessors_as_made(view) -> None:
    """The base's edges by head the snapshot's reader handed the view: what the view makes from its own arrays,
    of the same dtypes and as writable (numba compiles a loop again for another kind of array)."""
    handed = view._pred
    view._pred = None
    try:
        made = view._base_predecessors()
    finally:
        view._pred = handed
    assert len(handed) == len(made) == 3
    for got, expected in zip(handed, made):
        assert got.dtype == expected.dtype and got.flags.writeable == expected.flags.writeable
        assert np.array_equal(got, expected)


def test_the_view_from_a_snapshot_takes_the_predecessors_its_reader_ordered(tmp_path, monkeypatch):
    # The reader orders the edges by head to lay out the pred dicts; the view takes that order instead of
    # sorting the edges again in its thread.
    path = tmp_path / "graph.snapshot"
    saved(build(SHOP_CIS, SHOP_RELATIONSHIPS), path)
    asked, real = [], compact.CompactView._base_predecessors

    def spied(self):
        if self.made_from == "snapshot":  # not warm_up's own little view
            asked.append(self._pred is None)
        return real(self)

    monkeypatch.setattr(compact.CompactView, "_base_predecessors", spied)
    python, compiled = loaded(path), adopted(loaded(path, compact_min_cis=0))
    assert asked and not any(asked)  # asked for, never made by the view
    monkeypatch.setattr(compact.CompactView, "_base_predecessors", real)
    assert_predecessors_as_made(compiled._view)
    for ci in ("shop", "web_cluster", "db_primary", "dns"):
        assert compiled.spof(ci) == python.spof(ci)
        assert compiled.providers(ci) == python.providers(ci)
        assert compiled.neighborhood(ci, 2) == python.neighborhood(ci, 2)


def test_no_memory_to_order_the_edges_leaves_a_whole_graph_without_the_view(tmp_path, monkeypatch):
    # The edges ordered by head take ~5 arrays of an entry per edge: without them, the pred side is laid out
    # edge by edge and the graph loads whole, without a view from the file (maybe_compact builds one later).
    path = tmp_path / "graph.snapshot"
    saved(build(SHOP_CIS, SHOP_RELATIONSHIPS), path)

    def no_memory(*args):
        raise MemoryError("injected")

    monkeypatch.setattr(snapshot, "_by_head", no_memory)
    python, graph = loaded(path), loaded(path, compact_min_cis=0)
    assert mirrored(graph) and not graph.compacted and graph._adopting is None
    assert [(v, list(nbrs)) for v, nbrs in graph.graph._pred.items()] == \
        [(v, list(nbrs)) for v, nbrs in python.graph._pred.items()]
    for failed in (["db_primary"], ["web1", "web2"], ["switch"]):
        assert answer(graph.impact(failed)) == answer(python.impact(failed))


@pytest.mark.parametrize("seed", range(60))
def test_random_graphs_and_changes_answer_alike(tmp_path, seed, held):
    cis, rels = random_graph(seed)
    path = tmp_path / "graph.snapshot"
    saved(build(cis, rels), path)
    python, compiled = loaded(path), loaded(path, compact_min_cis=0)
    # The pred side laid out from the edges ordered by head: as the edge by edge way lays it out, entry for
    # entry and in order, each edge on succ's very data dict.
    assert mirrored(compiled)
    assert [(v, [(u, sorted(d[TYPES_KEY]), d[COVERED_KEY]) for u, d in nbrs.items()])
            for v, nbrs in compiled.graph._pred.items()] == \
        [(v, [(u, sorted(d[TYPES_KEY]), d[COVERED_KEY]) for u, d in nbrs.items()]) for v, nbrs in python.graph._pred.items()]
    cis, rels = {ci: k for ci, _, k in cis}, set(rels)
    rng = random.Random(seed * 17 + 3)
    # Changes while the view is being made (a worker's catch-up): it goes in after them and must have read
    # every CI they touched into its overlay.
    for step in range(rng.randint(0, 12)):
        change(rng, (python, compiled), cis, rels, step)
    assert not compiled.compacted
    held.set()
    assert adopted(compiled)._view.made_from == "snapshot"
    assert_predecessors_as_made(compiled._view)
    for step in range(30):
        if rng.random() < 0.5:
            change(rng, (python, compiled), cis, rels, 100 + step)
        ask(python, compiled, rng, sorted(cis))
    symptoms = rng.sample(sorted(cis), min(len(cis), 4))
    assert compiled.root_cause(symptoms, limit=10) == python.root_cause(symptoms, limit=10)
    for ci in symptoms:
        assert compiled.spof(ci) == python.spof(ci)
        assert compiled.providers(ci) == python.providers(ci)
        assert compiled.neighborhood(ci, 2, "both") == python.neighborhood(ci, 2, "both")
        assert compiled.neighborhood(ci, 3, "down", ["depends_on"]) == python.neighborhood(ci, 3, "down", ["depends_on"])


@pytest.mark.parametrize("seed", range(20))
def test_oddities_from_a_snapshot_answer_alike(tmp_path, seed):
    """Self-loops, min_members past int32 or below 1, hubs: as a view built from the dicts handles them."""
    cis, rels = random_graph_with_oddities(seed)
    path = tmp_path / "graph.snapshot"
    saved(build(cis, rels), path)
    python, compiled = loaded(path), adopted(loaded(path, compact_min_cis=0))
    rng = random.Random(seed)
    names = sorted(ci for ci, _, _ in cis)
    for _ in range(8):
        ask(python, compiled, rng, names)
    failed = rng.sample(names, 3)
    assert compiled.root_cause(failed) == python.root_cause(failed)
    assert [compiled.spof(ci) for ci in failed] == [python.spof(ci) for ci in failed]


def test_a_load_after_the_snapshot_drops_the_view_being_made(tmp_path, held):
    """A graph whose edges are all laid again before the view goes in (a load) never gets it."""
    path = tmp_path / "graph.snapshot"
    saved(build(SHOP_CIS, SHOP_RELATIONSHIPS), path)
    graph = loaded(path, compact_min_cis=0)
    graph.bulk_load([("a", "x", None), ("b", "x", None)], [("a", "b", "depends_on")])
    held.set()
    assert not graph.wait_compact(JOIN_SECONDS) and graph._sinks == [] and not graph._building
    assert graph.impact(["b"]).states() == {"a": "down"}


def test_a_view_that_fails_to_be_made_leaves_the_python_loop_answering(tmp_path, monkeypatch):
    path = tmp_path / "graph.snapshot"
    saved(build(SHOP_CIS, SHOP_RELATIONSHIPS), path)

    def broken(*args, **kwargs):
        raise MemoryError("no room for the view")

    monkeypatch.setattr(compact, "from_snapshot", broken)
    graph = loaded(path, compact_min_cis=0)
    assert not graph.wait_compact(JOIN_SECONDS) and graph._sinks == [] and not graph._building
    assert graph.impact(["web1", "web2"]).impacted["shop"].state == "down"
    # The failure was the snapshot path's: a view built from the dicts is not held back for it.
    assert graph._compact_failed is None
    graph.compact_min_cis = 0
    assert graph.maybe_compact()
    deadline = time.monotonic() + JOIN_SECONDS
    while not graph.compacted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert graph.compacted
