"""The live graph answers from every change committed before the question, and says which.

Each answer's `as_of_seq` is the sequence of the last change it reflects. A worker behind by more
than its catch-up cap rebuilds rather than answering from a graph only partly caught up; one within
the cap applies the records page by page without rebuilding.
"""

import json
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from app.services.live_graph import _change
from graph import ImpactGraph, impact_graph
from tests.conftest import new_id
from tests.graph.conftest import SEMANTICS, ids_held


def last_seq(api) -> int:
    return api.get("/api/v1/changes?since=0&limit=1000").json()["last_seq"]


def impacted_names(api, ci_id: str) -> tuple[set[str], int]:
    response = api.post("/api/v1/impact", json={"ci_ids": [ci_id]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert response.headers["X-Karta-As-Of-Seq"] == str(answer["as_of_seq"])
    return {item["name"] for item in answer["impacted"]}, answer["as_of_seq"]


def test_past_the_catch_up_cap_the_graph_is_rebuilt_and_the_answer_complete(app, api):
    live = app.state.live_graph
    live.catch_up_max, live.catch_up_page = 3, 2
    db = api.create_ci("database", "db")["id"]
    assert impacted_names(api, db) == (set(), last_seq(api))
    builds = live.builds
    for n in range(4):  # 8 changes: twice the cap and more
        api.relate(api.create_ci("application", f"app{n}")["id"], "depends_on", db)
    assert impacted_names(api, db) == ({"app0", "app1", "app2", "app3"}, last_seq(api))
    assert live.builds == builds + 1
    # back within the cap, it catches up again
    api.relate(api.create_ci("application", "app4")["id"], "depends_on", db)
    assert impacted_names(api, db) == ({"app0", "app1", "app2", "app3", "app4"}, last_seq(api))
    assert live.builds == builds + 1


def test_within_the_cap_it_catches_up_page_by_page_without_rebuilding(app, api):
    live = app.state.live_graph
    live.catch_up_max, live.catch_up_page = 100, 2
    db = api.create_ci("database", "db")["id"]
    assert impacted_names(api, db)[0] == set()
    builds = live.builds
    apps = [api.create_ci("application", f"app{n}")["id"] for n in range(3)]
    for app_id in apps:
        api.relate(app_id, "depends_on", db)
    link = api.get(f"/api/v1/relationships?source={apps[0]}&target={db}").json()["items"][0]
    assert api.delete(f"/api/v1/relationships/{link['id']}").status_code == 204  # 7 changes, 4 pages
    assert impacted_names(api, db) == ({"app1", "app2"}, last_seq(api))
    assert live.builds == builds


def test_every_write_is_in_the_next_answer_while_other_threads_read(app, api):
    """Read-your-writes in one worker, with other questions taking the graph all along."""
    live = app.state.live_graph
    db = api.create_ci("database", "db")["id"]
    stop = threading.Event()

    def keep_asking():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            with live.reading() as graph:
                graph.impact([db])

    readers = [threading.Thread(target=keep_asking) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        expected = set()
        for n in range(6):
            app_id = api.create_ci("application", f"app{n}")["id"]
            api.relate(app_id, "depends_on", db)
            expected.add(f"app{n}")
            seq = last_seq(api)  # the write committed at or before this
            names, as_of_seq = impacted_names(api, db)
            assert names == expected and as_of_seq >= seq
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)


def test_every_impact_answer_says_its_sequence(api):
    db = api.create_ci("database", "db", owner="team-dba")["id"]
    web = api.create_ci("application", "web")["id"]
    api.relate(web, "depends_on", db)
    seq = last_seq(api)
    json_answers = [
        api.post("/api/v1/impact", json={"ci_ids": [db]}),
        api.post("/api/v1/blast-radius", json={"failed": [db]}),
        api.post("/api/v1/root-cause", json={"symptoms": [web]}),
        api.get(f"/api/v1/cis/{web}/spof"),
        api.get(f"/api/v1/cis/{web}/neighborhood"),
        api.get(f"/api/v1/cis/{web}/neighborhood?format=cytoscape"),
    ]
    for response in json_answers:
        assert response.status_code == 200, response.text
        assert response.json()["as_of_seq"] == seq, response.request.url
        assert response.headers["X-Karta-As-Of-Seq"] == str(seq)
    pictures = [
        api.post("/api/v1/impact?format=dot", json={"ci_ids": [db]}),
        api.post("/api/v1/blast-radius?format=dot", json={"failed": [db]}),
        api.get(f"/api/v1/cis/{web}/neighborhood?format=dot"),
        api.get(f"/api/v1/cis/{web}/neighborhood?format=graphml"),
    ]
    for response in pictures:
        assert response.status_code == 200, response.text
        assert response.headers["X-Karta-As-Of-Seq"] == str(seq), response.request.url
    api.delete(f"/api/v1/cis/{web}")
    after = api.post("/api/v1/impact", json={"ci_ids": [db]})
    assert after.json()["impacted"] == [] and after.json()["as_of_seq"] == last_seq(api) > seq
    assert api.post("/api/v1/impact", json={"ci_ids": [new_id()]}).status_code == 422


@pytest.mark.skipif(not impact_graph._INTERN, reason="this Python never frees interned strings (3.12.0-3.12.5): "
                    "the graph keeps the ids as given")
@pytest.mark.parametrize("start", ["empty", "loaded whole"])
def test_a_catch_up_keeps_one_string_per_id_however_many_relationships_name_it(start):
    # As a catch-up reads the records: each diff decoded from JSON (new strings every time). A graph
    # loaded whole holds its own object per id: the changes after it add at most one more.
    app, dbs, hosts = uuid.uuid4(), [uuid.uuid4() for _ in range(4)], [uuid.uuid4() for _ in range(4)]
    current = {app: ("application", None), **{db: ("database", None) for db in dbs}}
    graph = ImpactGraph(SEMANTICS)
    if start == "loaded whole":
        graph.bulk_load([(str(ci), ci_class, k) for ci, (ci_class, k) in current.items()], [])

    def record(seq, object_type, object_id, diff=None):
        return SimpleNamespace(seq=seq, object_type=object_type, action="create" if diff else "update",
                               object_id=object_id, diff=json.loads(json.dumps(diff or {})))

    records = [record(1 + n, "ci", ci) for n, ci in enumerate(current)]
    for db, host in zip(dbs, hosts):
        for source, target, rel_type in ((app, db, "depends_on"), (db, host, "runs_on"), (app, host, "runs_on")):
            ends = {"source": [None, str(source)], "target": [None, str(target)], "type": [None, rel_type]}
            records.append(record(len(records) + 1, "relationship", uuid.uuid4(), ends))
    for one in records:
        graph.apply_changes([_change(one, current)])
    held = ids_held(graph)
    assert len(held) == 9
    most = 1 if start == "empty" else 2  # app alone is named by 8 relationships
    assert all(len(objects) <= most for objects in held.values()), held
    assert graph.impact([str(hosts[0])]).states() == {str(dbs[0]): "down", str(app): "down"}
