"""A worker starts from the impact graph snapshot another wrote (KARTA_GRAPH_SNAPSHOT_DIR), catches up
from it, and answers as a worker that loaded from the database would; a snapshot it must not trust is
ignored, with a warning, and the graph is loaded from the database instead.

Each test runs on SQLite and PostgreSQL. A "worker" is an app built by create_app, as the service's
workers are, served by a TestClient (its lifespan warms the graph up and starts the snapshot writer).
"""

import logging
import os
import time
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.services import live_graph as live_graph_module
from app.services.live_graph import SNAPSHOT_FILE, LiveGraph
from graph import snapshot
from graph.semantics import COVERED_KEY, TYPES_KEY
from tests.conftest import Api, create_tokens, fresh_database
from tests.graph.test_snapshot import flip_a_byte, rewrite_header, truncate
from tests.test_live_graph import impacted_names, last_seq


@contextmanager
def worker(database_url: str, directory, secrets: dict[str, str] | None = None, **settings):
    application = create_app(Settings(database_url=database_url, token_cache_seconds=0.3,
                                      graph_snapshot_dir=directory, **settings))
    try:
        with TestClient(application, raise_server_exceptions=False) as client:
            yield application.state.live_graph, Api(client, secrets or create_tokens(application.state.engine))
    finally:
        application.state.engine.dispose()


def content(graph) -> tuple:
    """The graph as sets: what a worker must hold whichever way it was built (orders may differ)."""
    G = graph.graph
    return (sorted((u, payload["ci_class"], payload["min_members"]) for u, payload in G._node.items()),
            sorted((u, v, sorted(data[TYPES_KEY]), data[COVERED_KEY]) for u, nbrs in G._succ.items()
                   for v, data in nbrs.items()),
            sorted((u, v, sorted(data[TYPES_KEY]), data[COVERED_KEY]) for v, nbrs in G._pred.items()
                   for u, data in nbrs.items()))


def from_the_database(live: LiveGraph) -> tuple:
    fresh = LiveGraph(live._engine, live._registry)
    with fresh.reading() as graph:
        return content(graph)


def estate(api) -> dict[str, str]:
    """A load balancer over a redundancy group of two web servers it also depends on directly (covered
    edges), on a database."""
    ids = {name: api.create_ci(ci_class, name)["id"] for ci_class, name in
           [("database", "db"), ("server", "web1"), ("server", "web2"), ("cluster", "pool"), ("application", "lb")]}
    for member in ("web1", "web2"):
        api.relate(ids[member], "member_of", ids["pool"])
        api.relate(ids[member], "depends_on", ids["db"])
        api.relate(ids["lb"], "depends_on", ids[member])
    api.relate(ids["lb"], "depends_on", ids["pool"])
    return ids


def test_a_worker_starts_from_the_snapshot_and_applies_the_changes_made_since(database_url, tmp_path):
    directory = tmp_path / "graph"
    with worker(database_url, directory) as (first, api):
        ids = estate(api)
        assert impacted_names(api, ids["db"]) == ({"web1", "web2", "pool", "lb"}, last_seq(api))
        written = first.write_snapshot(force=True)
        assert written["applied_seq"] == last_seq(api) and written["cis"] == 5
        assert (directory / SNAPSHOT_FILE).stat().st_mode & 0o777 == 0o600
        assert directory.stat().st_mode & 0o777 == 0o700
        # After the snapshot: a new dependent, a dependency gone, a CI gone, a class changed.
        report = api.create_ci("application", "report")["id"]
        api.relate(report, "depends_on", ids["db"])
        link = api.get(f"/api/v1/relationships?source={ids['web2']}&target={ids['db']}").json()["items"][0]
        assert api.delete(f"/api/v1/relationships/{link['id']}").status_code == 204
        assert api.delete(f"/api/v1/cis/{ids['web1']}").status_code == 204
        assert api.patch(f"/api/v1/cis/{report}", json={"class": "service"},
                         headers={"If-Match": '"1"'}).status_code == 200

        with worker(database_url, directory, api.secrets) as (second, api2):
            assert impacted_names(api2, ids["db"]) == ({"report"}, last_seq(api))
            assert second.built_from_snapshot == written["applied_seq"] and second.builds == 1
            with second.reading() as graph:
                assert content(graph) == from_the_database(second)
                assert graph.ci(report) == ("service", None)
            # and it keeps catching up like any worker
            api.relate(ids["lb"], "depends_on", ids["db"])
            assert impacted_names(api2, ids["db"]) == ({"report", "lb"}, last_seq(api))


def test_a_worker_from_the_snapshot_answers_compiled_from_the_files_arrays(database_url, tmp_path):
    """With the compiled view on, the worker's view is made from the file's arrays (not built from the
    dicts) and holds the changes its catch-up applied: answers as a worker without it."""
    directory = tmp_path / "graph"
    with worker(database_url, directory) as (first, api):
        ids = estate(api)
        first.write_snapshot(force=True)
        report = api.create_ci("application", "report")["id"]
        api.relate(report, "depends_on", ids["db"])
        assert api.delete(f"/api/v1/cis/{ids['web1']}").status_code == 204
        with worker(database_url, directory, api.secrets, graph_compact_min_cis=0) as (second, api2):
            with second.reading() as graph:
                assert second.built_from_snapshot is not None
                assert graph.wait_compact(60)
                assert graph._view.made_from == "snapshot"  # from the file's arrays, not built from the dicts
            assert impacted_names(api2, ids["db"]) == ({"report", "web2", "pool", "lb"}, last_seq(api))
            api.relate(ids["lb"], "depends_on", report)
            for name in ("db", "web2", "pool", "lb", "report"):
                assert impacted_names(api2, ids.get(name) or report) == impacted_names(api, ids.get(name) or report)
            with second.reading() as graph:
                assert graph.compacted


def test_a_worker_started_view_first_answers_everything_from_its_view(database_url, tmp_path):
    """A worker's graph from a snapshot, with the compiled view on, holds no networkx dicts and answers every
    question from its view as a worker holding dicts does: impact, blast radius, root cause, spof,
    neighbourhoods, pictures, a service's map, the Ansible inventory and the Prometheus targets, with every
    change made since the file applied to the view. It writes the snapshot off its view, and a worker starting
    from that file holds what the database holds."""
    directory = tmp_path / "graph"
    with worker(database_url, directory) as (first, api):
        ids = estate(api)
        first.write_snapshot(force=True)
        report = api.create_ci("application", "report")["id"]
        api.relate(report, "depends_on", ids["pool"])
        assert api.delete(f"/api/v1/cis/{ids['web1']}").status_code == 204
        shop = api.create_ci("service", "shop")["id"]
        with worker(database_url, directory, api.secrets, graph_compact_min_cis=0) as (second, api2):
            assert impacted_names(api2, ids["db"]) == ({"report", "web2", "pool", "lb"}, last_seq(api))
            api.relate(ids["lb"], "depends_on", report)  # applied to the view alone
            api.relate(shop, "depends_on", ids["lb"])
            assert impacted_names(api2, report) == ({"lb", "shop"}, last_seq(api))
            radius = api2.post("/api/v1/blast-radius", json={"failed": [report]})
            assert radius.status_code == 200 and [c["name"] for c in radius.json()["impacted"]] == ["lb", "shop"]
            for symptoms in ([ids["lb"], report], [ids["pool"]], [ids["web2"], ids["lb"]]):
                causes = [api_.post("/api/v1/root-cause", json={"symptoms": symptoms}).json()["candidates"]
                          for api_ in (api, api2)]  # the first worker answers from its dicts
                assert causes[0] == causes[1] and causes[0]
            spof = [api_.get(f"/api/v1/cis/{ids['lb']}/spof").json()["single_points_of_failure"] for api_ in (api, api2)]
            assert spof[0] == spof[1] and {p["name"] for p in spof[1]} == {"report", "pool", "web2", "db"}
            for path in (f"/api/v1/cis/{ids['lb']}/neighborhood", f"/api/v1/cis/{ids['lb']}/neighborhood?depth=3",
                         f"/api/v1/cis/{ids['pool']}/neighborhood?direction=up&format=dot",
                         f"/api/v1/cis/{shop}/service-map", "/api/v1/integrations/ansible/inventory",
                         "/api/v1/integrations/prometheus/targets"):
                answers = [api_.get(path) for api_ in (api, api2)]
                assert answers[0].status_code == answers[1].status_code == 200, (path, answers[1].text)
                assert answers[0].text == answers[1].text, path
            around = api2.get(f"/api/v1/cis/{ids['lb']}/neighborhood").json()
            assert {n["name"] for n in around["nodes"]} == {"lb", "web2", "pool", "report", "shop"}
            drawn = api2.post("/api/v1/impact", json={"ci_ids": [ids["db"]]}, params={"format": "dot"})
            assert drawn.status_code == 200 and drawn.text == api.post(
                "/api/v1/impact", json={"ci_ids": [ids["db"]]}, params={"format": "dot"}).text
            cis, links, seq, _ = second.snapshot(5)  # the metrics' counts, from the view
            assert (cis, seq) == (6, last_seq(api))
            assert second._graph.dicts_ready is False and second._graph.compacted  # never laid out
            assert second._graph._view.shared_base is not None  # its base offered to the host's next workers
            written = second.write_snapshot(force=True)  # off the view
            assert written is not None and written["cis"] == 6 and written["applied_seq"] == last_seq(api)
            assert second._graph.dicts_ready is False
        with worker(database_url, directory, api.secrets) as (third, api3):
            with third.reading() as graph:
                assert third.built_from_snapshot == last_seq(api) and graph.dicts_ready
                assert content(graph) == from_the_database(third) and graph.number_of_links() == links


@contextmanager
def view_first_worker(database_url: str, tmp_path):
    """(the estate's ids, the API of a first worker that wrote the snapshot, the live graph and API of a second one
    that started from it view first and answered once)."""
    directory = tmp_path / "graph"
    with worker(database_url, directory) as (first, api):
        ids = estate(api)
        first.write_snapshot(force=True)
        with worker(database_url, directory, api.secrets, graph_compact_min_cis=0) as (second, api2):
            assert impacted_names(api2, ids["db"])[0] == {"web1", "web2", "pool", "lb"}
            yield ids, api, second, api2


def test_a_view_first_graph_whose_changes_fail_is_loaded_from_the_database(database_url, tmp_path, monkeypatch,
                                                                          caplog):
    """Changes that fail on the view leave neither it nor the payloads trusted, and nothing to lay dicts out
    from: the worker lets the graph go and loads it from the database (not from the file, whose catch-up may
    fail the same way); a database error in a catch-up is not such a failure (the graph is kept)."""
    with view_first_worker(database_url, tmp_path) as (ids, api, second, api2):
        from sqlalchemy.exc import OperationalError

        real_catch_up, errors = LiveGraph._catch_up, []

        def database_down_once(self, graph):
            if not errors:
                errors.append(1)
                raise OperationalError("SELECT", {}, Exception("the database went away"))
            return real_catch_up(self, graph)

        monkeypatch.setattr(LiveGraph, "_catch_up", database_down_once)
        assert api2.post("/api/v1/impact", json={"ci_ids": [ids["db"]]}).status_code >= 500
        assert second.builds == 1 and not second._graph.dicts_ready  # the graph kept, view first still
        from graph import view_changes

        def fails(*args):
            raise MemoryError

        monkeypatch.setattr(view_changes, "apply", fails)
        report = api.create_ci("application", "report")["id"]
        api.relate(report, "depends_on", ids["db"])
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="karta.graph"):
            assert impacted_names(api2, ids["db"]) == ({"web1", "web2", "pool", "lb", "report"}, last_seq(api))
        assert "the graph is loaded again" in caplog.text and second.builds == 2
        assert second.built_from_snapshot is None and "from snapshot" not in caplog.text
        with second.reading() as graph:
            assert graph.dicts_ready and content(graph) == from_the_database(second)


def test_a_type_added_leaves_a_view_first_worker_on_its_view(database_url, tmp_path, monkeypatch, caplog):
    """A relationship type added through the registry changes no edge's meaning: the view-first worker keeps
    answering from its view, without laying its dicts out, edges of the new type included. New semantics that
    cannot be had on the view (here: failing) let the graph go, to be loaded again from the database, instead
    of failing every question."""
    with view_first_worker(database_url, tmp_path) as (ids, api, second, api2):
        assert api.post("/api/v1/relationship-types", json={
            "name": "feeds", "forward_label": "feeds", "reverse_label": "fed by",
            "impact_direction": "source_to_target"}).status_code == 201
        report = api.create_ci("application", "report")["id"]
        api.relate(ids["db"], "feeds", report)
        assert impacted_names(api2, ids["db"]) == ({"web1", "web2", "pool", "lb", "report"}, last_seq(api))
        assert not second._graph.dicts_ready and second.builds == 1
        from graph.impact_graph import ImpactGraph

        def fails(graph, semantics):
            raise MemoryError

        monkeypatch.setattr(ImpactGraph, "set_semantics", fails)
        assert api.post("/api/v1/relationship-types", json={
            "name": "backs_up", "forward_label": "backs up", "reverse_label": "backed up by",
            "impact_direction": "none"}).status_code == 201
        second._registry.invalidate()  # (its cache's seconds gone by)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="karta.graph"):
            assert impacted_names(api2, ids["db"]) == ({"web1", "web2", "pool", "lb", "report"}, last_seq(api))
        assert "the graph is loaded again" in caplog.text and second.builds == 2
        assert second.built_from_snapshot is None
        with second.reading() as graph:
            assert graph.dicts_ready and content(graph) == from_the_database(second)


@pytest.fixture
def other_database_url(request, database_url, tmp_path):
    """A second fresh database of the same backend: another deployment's."""
    directory = tmp_path / "other"
    directory.mkdir()
    yield from fresh_database(request, "sqlite" if database_url.startswith("sqlite") else "postgresql", directory)


def test_a_snapshot_of_another_database_is_never_applied(database_url, other_database_url, tmp_path, caplog):
    directory = tmp_path / "graph"
    with worker(other_database_url, directory) as (other, api):
        intruder = api.create_ci("application", "intruder")["id"]
        estate(api)
        impacted_names(api, intruder)
        written = other.write_snapshot(force=True)
    with worker(database_url, directory) as (live, api):
        ids = estate(api)
        for n in range(3):
            api.create_ci("application", f"more{n}")
        assert last_seq(api) >= written["applied_seq"]  # this database has a change at that seq too: another one
        with caplog.at_level(logging.WARNING, logger="karta.graph"):
            assert impacted_names(api, ids["db"]) == ({"web1", "web2", "pool", "lb"}, last_seq(api))
        assert live.built_from_snapshot is None
        with live.reading() as graph:
            assert intruder not in graph and content(graph) == from_the_database(live)
    assert "written for another database" in caplog.text


def older_schema(path, live: LiveGraph, api) -> None:
    """The snapshot a worker of the previous release wrote (its migrations' head was another)."""
    older = LiveGraph(live._engine, live._registry, snapshot_dir=path.parent, schema_revision="0001_older")
    with older.reading():
        pass
    older.write_snapshot(force=True)


def new_relationship_type(path, live: LiveGraph, api) -> None:
    response = api.post("/api/v1/relationship-types", json={
        "name": "replicates_to", "forward_label": "replicates to", "reverse_label": "replica of",
        "impact_direction": "none"})
    assert response.status_code == 201, response.text


SPOILERS = {
    "a corrupt byte": (lambda path, live, api: flip_a_byte(path), "checksum"),
    "a truncated file": (lambda path, live, api: truncate(path), "checksum"),
    "another format version": (lambda path, live, api: rewrite_header(path, format=snapshot.FORMAT_VERSION + 1),
                               "format"),
    "an older schema": (older_schema, "schema revision"),
    "other semantics": (new_relationship_type, "semantics"),
}


@pytest.mark.parametrize("case", SPOILERS)
def test_a_snapshot_not_to_be_trusted_is_ignored_and_the_graph_loaded_whole(database_url, tmp_path, caplog, case):
    spoil, reason = SPOILERS[case]
    directory = tmp_path / "graph"
    with worker(database_url, directory) as (first, api):
        ids = estate(api)
        impacted_names(api, ids["db"])
        first.write_snapshot(force=True)
        spoil(directory / SNAPSHOT_FILE, first, api)
        api.relate(api.create_ci("application", "report")["id"], "depends_on", ids["db"])
        with caplog.at_level(logging.WARNING, logger="karta.graph"):
            with worker(database_url, directory, api.secrets) as (second, api2):
                assert impacted_names(api2, ids["db"]) == ({"web1", "web2", "pool", "lb", "report"}, last_seq(api))
                assert second.built_from_snapshot is None and second.builds == 1
    assert f"impact graph snapshot {directory / SNAPSHOT_FILE} ignored" in caplog.text
    assert reason in caplog.text


def test_the_worker_writes_the_snapshot_when_it_is_due(database_url, tmp_path):
    directory = tmp_path / "graph"
    path = directory / SNAPSHOT_FILE
    with worker(database_url, directory, graph_snapshot_seconds=1) as (live, api):
        ids = estate(api)
        impacted_names(api, ids["db"])
        for seq in (last_seq(api), None):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # checked every 0.25 s, written once a second at most
                if path.exists() and snapshot.read_header(path).applied_seq == (seq or last_seq(api)):
                    break
                time.sleep(0.1)
            assert snapshot.read_header(path).applied_seq == (seq or last_seq(api))
            # A change nobody asks about: the writer catches up before it writes.
            api.relate(api.create_ci("application", "report")["id"], "depends_on", ids["db"])
        # Another worker of the host holds the writers' lock: this one leaves the file alone.
        with snapshot.writer_lock(path):
            assert live.write_snapshot(force=True) is None
        assert live.write_snapshot(force=True)["applied_seq"] == last_seq(api)
    # Due again, but nothing changed: the file is kept, its age renewed.
    with worker(database_url, directory, api.secrets) as (live, api):
        impacted_names(api, ids["db"])
        live.snapshot_seconds = 60
        kept = snapshot.read_header(path)
        os.utime(path, (time.time() - 120, time.time() - 120))
        assert live.write_snapshot() is None
        assert snapshot.read_header(path) == kept and time.time() - path.stat().st_mtime < 60
        api.relate(api.create_ci("application", "late")["id"], "depends_on", ids["db"])
        os.utime(path, (time.time() - 120, time.time() - 120))
        assert live.write_snapshot()["applied_seq"] == last_seq(api)


def test_a_directory_others_may_write_is_not_used(database_url, tmp_path, caplog):
    directory = tmp_path / "graph"
    with worker(database_url, directory) as (live, api):
        impacted_names(api, estate(api)["db"])
        assert live.write_snapshot(force=True)
        directory.chmod(0o777)
        with caplog.at_level(logging.WARNING, logger="karta.graph"):
            assert live.write_snapshot(force=True) is None
            with worker(database_url, directory, api.secrets) as (second, api2):
                impacted_names(api2, api.create_ci("database", "db2")["id"])
                assert second.built_from_snapshot is None
    assert "must belong to this service's user and be writable by it alone" in caplog.text


def test_a_graph_that_moves_while_it_is_taken_is_taken_again(database_url, tmp_path, monkeypatch):
    """Between two slices of the capture a question catches up on a new change: the slices taken would
    mix two states of the graph, so the capture starts again, and the file holds the newer graph."""
    monkeypatch.setattr(live_graph_module, "CAPTURE_SLICE", 2)
    directory = tmp_path / "graph"
    with worker(database_url, directory) as (live, api):
        ids = estate(api)
        impacted_names(api, ids["db"])
        held, slices = live._held, []

        @contextmanager
        def held_then_a_question(holds):
            with held(holds):
                yield
            slices.append(len(holds))
            if len(slices) == 2:  # after the first slice of the first try
                api.relate(api.create_ci("application", "report")["id"], "depends_on", ids["db"])
                impacted_names(api, ids["db"])

        monkeypatch.setattr(live, "_held", held_then_a_question)
        written = live.write_snapshot(force=True)
        assert written["tries"] == 2 and written["applied_seq"] == last_seq(api)
        with worker(database_url, directory, api.secrets) as (second, api2):
            assert impacted_names(api2, ids["db"])[0] == {"web1", "web2", "pool", "lb", "report"}
            assert second.built_from_snapshot == written["applied_seq"]


def test_past_the_catch_up_cap_the_snapshot_is_left_for_the_database(database_url, tmp_path, caplog):
    directory = tmp_path / "graph"
    with worker(database_url, directory) as (live, api):
        ids = estate(api)
        impacted_names(api, ids["db"])
        live.write_snapshot(force=True)
        for n in range(4):
            api.relate(api.create_ci("application", f"app{n}")["id"], "depends_on", ids["db"])
        with caplog.at_level(logging.WARNING, logger="karta.graph"):
            with worker(database_url, directory, api.secrets, graph_catch_up_max=3) as (second, api2):
                names, _ = impacted_names(api2, ids["db"])
                assert {"app0", "app1", "app2", "app3"} <= names
                assert second.builds == 1 and second.built_from_snapshot is None
    assert "more than 3 changes behind" in caplog.text


def test_snapshots_are_off_without_a_directory(app, api):
    live = app.state.live_graph
    impacted_names(api, api.create_ci("database", "db")["id"])
    assert live.snapshot_path is None and live.write_snapshot(force=True) is None
    assert live.built_from_snapshot is None



def test_a_graph_that_followed_a_rewritten_history_is_loaded_again_and_never_handed_on(database_url, tmp_path):
    """The database goes back under a running worker (a restore, a failover to a replica that missed the
    last commits) and reuses the sequence numbers: the worker's graph holds a relationship the database
    lost. Its next catch-up finds that the change it last applied is not the database's and loads the
    graph again; no snapshot of the lost history is written. (From a review: the graph was caught up
    across the new records, and written with the new history's lineage for every later worker.)"""
    import uuid

    from sqlalchemy import delete, text

    from app.models import ChangeRecord, Relationship

    directory = tmp_path / "graph"
    with worker(database_url, directory) as (first, api):
        ids = estate(api)
        impacted_names(api, ids["db"])
        rewound_to = last_seq(api)
        ghost = api.relate(ids["web1"], "connects_to", ids["web2"])["id"]
        impacted_names(api, ids["db"])  # the running worker's graph holds the relationship
        with first._engine.begin() as conn:
            conn.execute(delete(Relationship.__table__).where(Relationship.__table__.c.id == uuid.UUID(ghost)))
            conn.execute(delete(ChangeRecord.__table__).where(ChangeRecord.__table__.c.seq > rewound_to))
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT setval(pg_get_serial_sequence('change_record', 'seq'), :s)"),
                             {"s": rewound_to})
        for n in range(3):
            api.create_ci("application", f"new{n}")
        assert last_seq(api) > rewound_to + 1
        builds = first.builds
        impacted_names(api, ids["db"])
        assert first.builds == builds + 1  # loaded again
        with first.reading() as graph:
            assert content(graph) == from_the_database(first)
        assert first.write_snapshot(force=True) is not None  # of the graph the database holds
    with worker(database_url, directory, api.secrets) as (second, api):
        impacted_names(api, ids["db"])
        with second.reading() as graph:
            assert content(graph) == from_the_database(second)

