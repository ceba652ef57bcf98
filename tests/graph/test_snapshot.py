"""A graph written to a snapshot file comes back equal, and a file that does not match is never used.

Equal means what the analyses see: the same CIs with the same payloads, the same edges in the same
adjacency order both ways, each edge pointing at the graph's own shared data dict (so later changes
and type filters behave as on the original), and the same answers before and after further changes.
"""

import json
import os
import struct

import pytest

from graph import ImpactGraph, RelationshipSemantics, snapshot
from graph.semantics import COVERED_KEY, TYPES_KEY
from graph.snapshot import SnapshotRejected
from tests.graph.conftest import SEMANTICS, SHOP_CIS, SHOP_RELATIONSHIPS, build

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
    """Everything the analyses read, in order: CIs and payloads, both adjacencies with types and coverage."""
    G = g.graph
    return ([(u, G._node[u]) for u in G._node],
            [(u, [(v, sorted(d[TYPES_KEY]), d[COVERED_KEY]) for v, d in G._succ[u].items()]) for u in G._succ],
            [(v, [(u, sorted(d[TYPES_KEY]), d[COVERED_KEY]) for u, d in G._pred[v].items()]) for v in G._pred],
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
    assert not sliced.ids and not sliced.succ_ends and not sliced.pred_data


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
    head = json.dumps(header).encode()
    body = snapshot.MAGIC + struct.pack("<I", len(head)) + head + content[start + length:-snapshot.DIGEST_BYTES]
    path.write_bytes(body + snapshot.hashlib.blake2b(body, digest_size=snapshot.DIGEST_BYTES).digest())


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
    "an older schema": (lambda p: None, {"schema_revision": "0041_older"}, "schema revision"),
    "other semantics": (lambda p: None, {"semantics": dict(SEMANTICS, hosts=RelationshipSemantics())}, "semantics"),
    "other graph code": (lambda p: rewrite_header(p, code_digest="0" * 32), {}, "graph code"),
    "not a snapshot": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(100)), {}, "not a graph snapshot"),
    "a garbled header": (lambda p: rewrite_header(p, applied_seq=None, cis="many"), {}, "garbled"),
    "an inconsistent body": (lambda p: rewrite_header(p, cis=99), {}, "inconsistent"),
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
