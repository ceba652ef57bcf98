"""A graph written to a snapshot file comes back equal, and a file that does not match is never used.

Equal means what the analyses see: the same CIs with the same payloads, the same edges in the same
succ adjacency order, the same pred entries (the file holds the succ side only: a pred dict comes back
in its predecessors' order among the CIs, which no answer depends on), each edge pointing at the
graph's own shared data dict on both sides (so later changes and type filters behave as on the
original), and the same answers before and after further changes.
"""

import hashlib
import json
import os
import struct
import tracemalloc
from array import array

import pytest

from graph import ImpactGraph, RelationshipSemantics, snapshot
from graph.semantics import COVERED_KEY, TYPES_KEY
from graph.snapshot import SnapshotRejected
from tests.graph.conftest import SEMANTICS, SHOP_CIS, SHOP_RELATIONSHIPS, build, mirrored

SCHEMA = "0042_head"
EXTRA = [
    ("lb", "web1", "depends_on"),  # covered: lb depends on web_cluster, web1 is one of its members
    ("lb", "web2", "depends_on"),
    ("rack", "web1", "contains"),  # rack, pdu: CIs only relationships name (no class)
    ("pdu", "rack", "contains"),
    ("pdu", "rack", "depends_on"),  # two types on one pair
    ("web3", "backup", "replicates_from"),  # no impact
]


@pytest.fixture
def shop() -> ImpactGraph:
    g = build(SHOP_CIS, SHOP_RELATIONSHIPS + EXTRA)
    g.applied_seq = 1234
    return g


def save(g: ImpactGraph, path, **header) -> None:
    snapshot.save(g, path, schema_revision=header.get("schema_revision", SCHEMA), lineage=header.get("lineage", "L"))


def load(path, semantics=None, schema_revision=SCHEMA, accept=None) -> ImpactGraph:
    return snapshot.load(path, semantics or SEMANTICS, schema_revision=schema_revision, accept=accept)[0]


def layout(g: ImpactGraph):
    """Everything the analyses read: CIs and payloads, both adjacencies with types and coverage, in order
    but for the entries of one CI's pred dict (sorted)."""
    G = g.graph
    return ([(u, G._node[u]) for u in G._node],
            [(u, [(v, sorted(d[TYPES_KEY]), d[COVERED_KEY]) for v, d in G._succ[u].items()]) for u in G._succ],
            [(v, sorted((u, sorted(d[TYPES_KEY]), d[COVERED_KEY]) for u, d in G._pred[v].items())) for v in G._pred],
            g.applied_seq)


def answers(g: ImpactGraph) -> list:
    return [(ci, g.impact([ci]).states(), sorted(g.impact([ci], types=["depends_on"]).states().items()))
            for ci in sorted(g.graph._node)]


def test_round_trip_gives_an_equal_graph(shop, tmp_path):
    path = tmp_path / "graph.snapshot"
    save(shop, path)
    loaded = load(path)
    assert layout(loaded) == layout(shop)
    G = loaded.graph
    assert G._succ["web1"]["lb"][COVERED_KEY] and not G._succ["web_cluster"]["lb"][COVERED_KEY]
    assert loaded.ci("rack") == (None, None) and loaded.ci("web_cluster") == ("cluster", 2)
    # The graph's own shared dicts: one payload per (class, min_members), one data dict per types and coverage.
    assert G._node["web1"] is G._node["web2"] is loaded._payload("server", None)
    for u, nbrs in G._succ.items():
        for v, data in nbrs.items():
            assert G._pred[v][u] is data
            types = loaded._types
            assert data is (types.covered if data[COVERED_KEY] else types.of)(data[TYPES_KEY])
    assert answers(loaded) == answers(shop)
    assert sorted(loaded.relationships()) == sorted(shop.relationships())
    assert mirrored(loaded) and mirrored(shop)


def test_the_pred_side_is_built_as_a_fresh_bulk_load_builds_it(tmp_path):
    """The file holds no pred side: the one laid out from succ has every CI's predecessors, on the succ side's
    data dicts, as a bulk_load of the same CIs and relationships has them (and no more)."""
    fresh = build(SHOP_CIS, SHOP_RELATIONSHIPS + EXTRA)
    path = tmp_path / "graph.snapshot"
    save(fresh, path)
    loaded = load(path)
    again = build(SHOP_CIS, SHOP_RELATIONSHIPS + EXTRA)
    assert layout(loaded)[:3] == layout(again)[:3]
    assert mirrored(loaded)
    for v, nbrs in again.graph._pred.items():
        assert {u: (sorted(d[TYPES_KEY]), d[COVERED_KEY]) for u, d in loaded.graph._pred[v].items()} \
            == {u: (sorted(d[TYPES_KEY]), d[COVERED_KEY]) for u, d in nbrs.items()}
    assert sum(map(len, loaded.graph._pred.values())) == sum(map(len, loaded.graph._succ.values())) \
        == fresh.number_of_links()


def test_the_file_holds_the_succ_side_only(shop, tmp_path):
    """Format 2 and later store no pred side (the reader builds it): a file laid out as format 1 was, both
    sides stored, is refused even when its header says the current format."""
    path = tmp_path / "graph.snapshot"
    save(shop, path)
    content = path.read_bytes()
    (length,) = struct.unpack_from("<I", content, len(snapshot.MAGIC))
    header = json.loads(content[len(snapshot.MAGIC) + 4:len(snapshot.MAGIC) + 4 + length])
    assert header["format"] == 3
    assert [name for name, _, _ in header["layout"]] == ["succ_counts", "succ_ends", "succ_data", "payload", "ids"]
    both_sides = header["layout"] + [[name.replace("succ", "pred"), code, size] for name, code, size in header["layout"][:3]]
    rewrite_header(path, layout=both_sides)
    with pytest.raises(SnapshotRejected, match="layout"):
        load(path)


def test_the_loaded_graph_keeps_changing_like_the_original(shop, tmp_path):
    path = tmp_path / "graph.snapshot"
    save(shop, path)
    loaded = load(path)
    for g in (shop, loaded):
        g.remove_relationship("web_cluster", "lb", "depends_on")  # uncovers web1 -> lb and web2 -> lb
        g.add_relationship("web3", "web_cluster2", "member_of")
        g.add_relationship("lb", "web_cluster2", "depends_on")
        g.add_relationship("lb", "web3", "runs_on")  # covered by web_cluster2
        g.upsert_ci("web_cluster2", "cluster", 1)
        g.remove_ci("dns")
    assert layout(loaded) == layout(shop)
    assert answers(loaded) == answers(shop)


def test_an_empty_graph_and_one_without_edges(tmp_path):
    for cis in ([], [("a", "server", None), ("b", None, 3)]):
        g = build(cis, [])
        save(g, tmp_path / "graph.snapshot")
        assert layout(load(tmp_path / "graph.snapshot")) == layout(g)


def test_taken_in_slices_the_file_is_the_same(shop, tmp_path):
    whole = snapshot.Capture(shop)
    whole.take()
    sliced = snapshot.Capture(shop)
    while not sliced.take(3):
        pass
    encoded = [snapshot.encode(c, schema_revision=SCHEMA, lineage="L") for c in (whole, sliced)]
    headers = [json.loads(parts[2]) for parts in encoded]
    for header, parts in zip(headers, encoded):
        del header["written_at"], parts[:3], parts[-1]  # what differs: when, so the header's length, the digest
    assert headers[0] == headers[1]
    assert [bytes(p) for p in encoded[0]] == [bytes(p) for p in encoded[1]]
    sliced.release()
    assert not sliced.ids and not sliced.succ_ends and not sliced.succ_data


def test_the_file_is_the_owners_alone_and_replaced_whole(shop, tmp_path):
    path = tmp_path / "graph.snapshot"
    path.write_bytes(b"old")
    (tmp_path / "graph.snapshot.123abc.tmp").write_bytes(b"half written by a writer that died")
    with snapshot.writer_lock(path):
        snapshot.remove_leftovers(path)
        snapshot.write(snapshot.encode(capture(shop), schema_revision=SCHEMA, lineage="L"), path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.snapshot", "graph.snapshot.lock"]
    assert layout(load(path)) == layout(shop)


def capture(g: ImpactGraph) -> snapshot.Capture:
    taken = snapshot.Capture(g)
    taken.take()
    return taken


def rewrite_header(path, **fields) -> None:
    """Change header fields and seal the file again with a valid digest: only the field's check can refuse it."""
    content = path.read_bytes()
    start = len(snapshot.MAGIC) + 4
    (length,) = struct.unpack_from("<I", content, len(snapshot.MAGIC))
    header = json.loads(content[start:start + length])
    header.update(fields)
    head = padded(json.dumps(header).encode())
    body = snapshot.MAGIC + struct.pack("<I", len(head)) + head + content[start + length:-snapshot.DIGEST_BYTES]
    path.write_bytes(body + snapshot.hashlib.blake2b(body, digest_size=snapshot.DIGEST_BYTES).digest())


def padded(head: bytes) -> bytes:
    """A header padded as the writer pads it (the body starts aligned), so that only the check a test
    means can refuse the file."""
    return head + b" " * (-(len(snapshot.MAGIC) + 4 + len(head)) % snapshot.ALIGN)


def flip_a_byte(path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) * 2 // 3] ^= 0x40
    path.write_bytes(bytes(content))


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


SPOILED = {
    "a corrupt byte": (flip_a_byte, {}, "checksum"),
    "a truncated file": (truncate, {}, "checksum"),
    "another format version": (lambda p: rewrite_header(p, format=snapshot.FORMAT_VERSION + 1), {}, "format"),
    "format 1 (both sides stored)": (lambda p: rewrite_header(p, format=1), {}, "format 1, this Karta reads 3"),
    "format 2 (the ids first, unaligned)": (lambda p: rewrite_header(p, format=2), {}, "format 2, this Karta reads 3"),
    "an older schema": (lambda p: None, {"schema_revision": "0041_older"}, "schema revision"),
    "other semantics": (lambda p: None, {"semantics": dict(SEMANTICS, hosts=RelationshipSemantics())}, "semantics"),
    "other graph code": (lambda p: rewrite_header(p, code_digest="0" * 32), {}, "graph code"),
    "not a snapshot": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(100)), {}, "not a graph snapshot"),
    "a garbled header": (lambda p: rewrite_header(p, applied_seq=None, cis="many"), {}, "garbled"),
    "a header at odds with its body": (lambda p: rewrite_header(p, cis=99), {}, "layout"),
}


@pytest.mark.parametrize("case", SPOILED)
def test_a_spoiled_or_foreign_snapshot_is_refused(shop, tmp_path, case):
    spoil, asked, reason = SPOILED[case]
    path = tmp_path / "graph.snapshot"
    save(shop, path)
    assert layout(load(path)) == layout(shop)
    spoil(path)
    with pytest.raises(SnapshotRejected, match=reason):
        load(path, asked.get("semantics"), asked.get("schema_revision", SCHEMA))


def test_the_callers_check_of_the_lineage_comes_before_the_body(shop, tmp_path):
    path = tmp_path / "graph.snapshot"
    save(shop, path, lineage="seq 1234 of database A")
    seen = []

    def other_database(header):
        seen.append((header.applied_seq, header.lineage, header.cis, header.schema_revision))
        raise SnapshotRejected("another database")

    with pytest.raises(SnapshotRejected, match="another database"):
        load(path, accept=other_database)
    assert seen == [(1234, "seq 1234 of database A", len(shop), SCHEMA)]
    assert snapshot.read_header(path).lineage == "seq 1234 of database A"
    with pytest.raises(SnapshotRejected, match="no snapshot"):
        load(tmp_path / "absent")


def test_what_cannot_be_written(tmp_path):
    for ci_id in (17, "a\0b"):
        g = build([(ci_id, "server", None), ("other", "server", None)], [])
        with pytest.raises(ValueError):
            save(g, tmp_path / "graph.snapshot")
    assert not (tmp_path / "graph.snapshot").exists()


# A file is hostile until proven otherwise: its digest is unkeyed, so whoever can write the directory can
# write a file that passes it. Each file below is sealed with a valid digest; each must be refused with
# SnapshotRejected (the caller then loads from its database), never loaded and never raised otherwise.

def seal(path, parts) -> None:
    """Write encoded parts (the digest left off and computed again) to `path`."""
    parts = [bytes(part) for part in parts[:-1]]
    digest = hashlib.blake2b(digest_size=snapshot.DIGEST_BYTES)
    for part in parts:
        digest.update(part)
    path.write_bytes(b"".join(parts) + digest.digest())


def encoded(g: ImpactGraph, edit=None) -> list:
    taken = capture(g)
    if edit is not None:
        edit(taken)
    return snapshot.encode(taken, schema_revision=SCHEMA, lineage="L")


def test_a_deeply_nested_header_is_rejected_not_raised(tmp_path):
    path = tmp_path / "graph.snapshot"
    head = b"[" * 200_000
    seal(path, [snapshot.MAGIC, snapshot._LENGTH.pack(len(head)), head, b""])
    with pytest.raises(SnapshotRejected):
        load(path)


def test_an_oversized_header_is_refused_before_it_is_parsed(shop, tmp_path):
    path = tmp_path / "graph.snapshot"
    save(shop, path)
    rewrite_header(path, padding="x" * snapshot.HEADER_LIMIT)
    for read in (load, snapshot.read_header):
        with pytest.raises(SnapshotRejected, match="length"):
            read(path)


@pytest.mark.parametrize("fields", [{"applied_seq": 2 ** 70}, {"applied_seq": 2 ** 63}, {"applied_seq": -1},
                                    {"applied_seq": True}, {"format": True}, {"links": -3}, {"cis": 2 ** 64}])
def test_header_integers_past_the_databases_or_negative_or_bools_are_refused(shop, tmp_path, fields):
    path = tmp_path / "graph.snapshot"
    save(shop, path)
    rewrite_header(path, **fields)
    for read in (load, snapshot.read_header):
        with pytest.raises(SnapshotRejected, match="garbled|format"):
            read(path)


def test_a_header_seq_past_the_databases_integers_makes_the_worker_load_from_the_database(database_url, tmp_path):
    """applied_seq goes into the lineage check's query: past 2**63 the driver raised there (OverflowError on
    SQLite, DataError on PostgreSQL), failing the worker's build instead of falling back to the database."""
    from app.services.live_graph import SNAPSHOT_FILE  # here: that module imports this one
    from tests.test_graph_snapshot_service import estate, worker
    from tests.test_live_graph import impacted_names

    directory = tmp_path / "graph"
    with worker(database_url, directory) as (first, api):
        ids = estate(api)
        impacted_names(api, ids["db"])
        first.write_snapshot(force=True)
    rewrite_header(directory / SNAPSHOT_FILE, applied_seq=2 ** 70)
    with worker(database_url, directory, api.secrets) as (second, api):
        assert impacted_names(api, ids["db"])[0] == {"web1", "web2", "pool", "lb"}
        assert second.built_from_snapshot is None


def a_succ_pair_twice(taken) -> None:
    """A CI's successors name one head twice and lack another: the counts still add up, the dict would
    collapse the two (and the pred side, built from it, with them)."""
    at = next(i for i, ci in enumerate(taken.ids) if taken.succ_counts[i] >= 2)
    offset = sum(taken.succ_counts[:at])
    taken.succ_ends[offset + 1] = taken.succ_ends[offset]


def one_succ_count_more(taken) -> None:
    """The counts add up to one edge more than the file holds (the ends and data, sized by `links`, agree)."""
    taken.succ_counts[0] += 1


def shorten_the_payloads(taken) -> None:
    taken.payloads.pop()


INCONSISTENT = {
    "a succ pair twice": (a_succ_pair_twice, "twice"),
    "counts past the edges": (one_succ_count_more, "counts do not match"),
    "a payload short": (shorten_the_payloads, "layout of payload"),
}


@pytest.mark.parametrize("case", INCONSISTENT)
@pytest.mark.parametrize("compact_min_cis, view_first, share", [(None, False, False), (0, False, False),
                                                                  (0, True, False), (0, True, True)])
def test_a_body_that_contradicts_itself_is_refused(shop, tmp_path, case, compact_min_cis, view_first, share):
    """A body the writer cannot have written is refused, not laid out: a graph that breaks the graph code's
    invariants would make a later change record raise in the catch-up of every worker that loaded it. Either
    way of laying out the pred side (edge by edge; from the edges ordered by head, when the view is made), and
    view first (the checks on the dicts' lengths made on the arrays), its base shared or not (no base of such a
    file is offered)."""
    from graph import shared_base

    edit, reason = INCONSISTENT[case]
    path = tmp_path / "graph.snapshot"
    seal(path, encoded(shop, edit))
    with pytest.raises(SnapshotRejected, match=reason):
        snapshot.load(path, SEMANTICS, schema_revision=SCHEMA, compact_min_cis=compact_min_cis, view_first=view_first,
                      share=share)
    assert shared_base._entries(shared_base.registry_path(path)) == []


def part(name: str) -> int:
    """Where a section is among the encoded parts: MAGIC, length, header, the sections, digest."""
    return 3 + snapshot.SECTIONS.index(name)


OUT_OF_RANGE = {
    "a CI index past the CIs": ("succ_ends", lambda g: len(g.graph._node)),
    "an edge data index past the table": ("succ_data", lambda g: 200),
    "a payload index past the table": ("payload", lambda g: 200),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE)
@pytest.mark.parametrize("compact_min_cis, view_first", [(None, False), (0, False), (0, True)])
def test_an_index_out_of_range_is_refused(shop, tmp_path, case, compact_min_cis, view_first):
    """Checked before anything is laid out (an IndexError half way used to be the only guard), and before
    the compiled view, whose loops do not check bounds, is made from the file's arrays."""
    section, value = OUT_OF_RANGE[case]
    parts = encoded(shop)
    parts[part(section)][0] = value(shop)
    path = tmp_path / "graph.snapshot"
    seal(path, parts)
    with pytest.raises(SnapshotRejected, match=f"{section} index out of range"):
        snapshot.load(path, SEMANTICS, schema_revision=SCHEMA, compact_min_cis=compact_min_cis, view_first=view_first)


def test_a_signed_index_type_is_refused(shop, tmp_path):
    """With signed arrays an index of -1 would name the last CI: only unsigned typecodes are read."""
    path = tmp_path / "graph.snapshot"
    save(shop, path)
    content = path.read_bytes()
    (length,) = struct.unpack_from("<I", content, len(snapshot.MAGIC))
    layout = json.loads(content[len(snapshot.MAGIC) + 4:len(snapshot.MAGIC) + 4 + length])["layout"]
    rewrite_header(path, layout=[[name, "i" if name == "succ_ends" else code, size] for name, code, size in layout])
    with pytest.raises(SnapshotRejected, match="layout of succ_ends"):
        load(path)


@pytest.mark.parametrize("section", ["succ_counts", "succ_ends", "succ_data"])
def test_an_index_narrower_than_the_writer_writes_is_refused(shop, tmp_path, section):
    """A file whose arrays are narrower than the writer's own (2-byte indexes where it writes 4) is refused,
    though its sizes add up and it is sealed: its bytes would stand for more entries, and more memory in
    the reader, than the writer's file of the same graph."""
    parts = encoded(shop)
    at = part(section)
    parts[at] = array("H", parts[at])
    head = json.loads(bytes(parts[2]))
    head["layout"] = [[name, "H", len(parts[at]) * 2] if name == section else [name, code, size]
                      for name, code, size in head["layout"]]
    parts[2] = padded(json.dumps(head).encode())
    parts[1] = struct.pack("<I", len(parts[2]))
    path = tmp_path / "graph.snapshot"
    seal(path, parts)
    with pytest.raises(SnapshotRejected, match=f"layout of {section}"):
        load(path)


@pytest.mark.parametrize("edit, reason", [(lambda ids: ids.replace(b"\0", b"-", 1), "ids section"),
                                           (lambda ids: ids.replace(b"web2", b"web1"), "duplicate CI ids"),
                                           (lambda ids: ids.replace(b"web2", b"web\xff"), "utf-8")])
@pytest.mark.parametrize("view_first, share", [(False, False), (True, False), (True, True)])
def test_ids_other_than_the_header_says_are_refused(shop, tmp_path, edit, reason, view_first, share):
    """Fewer ids than `cis` (counted before the split), one id twice (two CIs would become one), or an id that
    is not UTF-8; view first too, where the ids are laid out as a table (graph.id_table) and never split, with
    sharing on as well (the table is refused as it is made, before any base is offered: the second load finds
    none). Another worker's table that is not the file's is refused by graph.shared_base (test_shared_base)."""
    parts = encoded(shop)
    parts[part("ids")] = edit(parts[part("ids")])
    path = tmp_path / "graph.snapshot"
    seal(path, parts)
    for _ in range(2 if share else 1):
        with pytest.raises(SnapshotRejected, match=reason):
            snapshot.load(path, SEMANTICS, schema_revision=SCHEMA, compact_min_cis=0 if view_first else None,
                          view_first=view_first, share=share)


def test_a_file_larger_than_its_header_says_is_refused_unread(shop, tmp_path):
    """Its size is checked (fstat) before the body is read: a file grown to 256 MiB is not read into memory."""
    path = tmp_path / "graph.snapshot"
    save(shop, path)
    with open(path, "r+b") as f:
        f.truncate(256 << 20)  # sparse: no disk used
    for read in (load, snapshot.read_header):
        tracemalloc.start()
        try:
            with pytest.raises(SnapshotRejected, match="the header says"):
                read(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20


def test_a_file_smaller_than_its_header_says_is_refused(shop, tmp_path):
    path = tmp_path / "graph.snapshot"
    parts = encoded(shop)
    parts[part("ids")] = parts[part("ids")][:-1]  # the last id one byte short, the layout unchanged, the digest valid
    seal(path, parts)
    for read in (load, snapshot.read_header):
        with pytest.raises(SnapshotRejected, match="the header says"):
            read(path)


def test_read_header_holds_no_body_in_memory(tmp_path):
    g = build([(f"{n:0500d}", "server", None) for n in range(20_000)], [])  # a 10 MB ids section
    path = tmp_path / "graph.snapshot"
    save(g, path)
    tracemalloc.start()
    try:
        assert snapshot.read_header(path).cis == 20_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    flip_a_byte(path)
    with pytest.raises(SnapshotRejected, match="checksum"):
        snapshot.read_header(path)
