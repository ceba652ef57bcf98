"""The service-map keeper against a concurrent writer on the real PostgreSQL: a chunk the database aborts
(a real deadlock, a real lock timeout) runs again, and a chunk that keeps failing stays due for the
next pass instead of waiting for its services to be touched again (app.services.service_map_keeper).

PostgreSQL only: SQLite writers take one lock for the whole database and never deadlock on rows.

The estate: two front ends on two hosts, each the entry point of one service. The keeper maps both
services in one chunk, in service id order, and locks each service's entry application FOR KEY SHARE
when it creates the service's owned `depends_on`. Another transaction (an ingest batch updating the
two applications, as ingest does: FOR UPDATE) holds one of them and asks for the other.
"""

import logging
import threading
import time
import uuid

import pytest
from sqlalchemy import event, select, text

from app.core.db import make_engine
from app.models import ServiceMapCursor
from app.services.changes import last_seq
from app.services.live_graph import LiveGraph
from app.services.service_map_keeper import CHUNK_ATTEMPTS, CURSOR_NAME, ServiceMapKeeper
from tests.conftest import new_id
from tests.test_service_map import _app, _host, ingest, the_map

pytestmark = pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                                     indirect=True)
WAIT_SECONDS = 30  # every wait on another thread or backend is bounded by this


@pytest.fixture
def fronts(api, app):
    """Two front ends on two hosts and two services, `low` (smaller id) entering through the front end
    of the larger id: the keeper locks that one first, then the other one (`first`, `second`)."""
    app.state.service_maps.stop()  # this test's keeper alone writes maps
    refs = ingest(api, {
        "source": "ssh", "run_id": f"run-{new_id()}", "scope": {"hosts": ["h-a", "h-b"]},
        "items": [_host("h-a", "10.0.0.5"), _host("h-b", "10.0.0.6"),
                  _app("front-a", "web_server", ["0.0.0.0:80"]), _app("front-b", "web_server", ["0.0.0.0:80"])],
        "relationships": [{"source": "front-a", "target": "h-a", "type": "runs_on"},
                          {"source": "front-b", "target": "h-b", "type": "runs_on"}]})
    address = {refs["front-a"]: "10.0.0.5", refs["front-b"]: "10.0.0.6"}
    second, first = sorted(address, key=uuid.UUID)  # `first` is locked first: it is `low`'s entry
    low, high = sorted((api.create_ci("service", name)["id"] for name in ("s1", "s2")), key=uuid.UUID)
    for service, front in ((low, first), (high, second)):
        response = api.patch(f"/api/v1/cis/{service}", json={"attributes": {"entry_points": [f"{address[front]}:80"]}})
        assert response.status_code == 200, response.text
    return {"low": low, "high": high, "first": first, "second": second}


def in_thread(work) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="keeper-under-test")
    thread.start()
    return thread, outcome


def wait_for_a_lock_wait(conn, thread: threading.Thread, outcome: dict) -> None:
    """Until a backend of this database other than `conn`'s waits for a lock (the keeper's). `conn` is in
    a transaction, which reads pg_stat_activity once and keeps what it read: the snapshot is dropped
    before each look."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        assert thread.is_alive(), f"the keeper's pass ended without waiting for the lock held: {outcome}"
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar():
            return
        time.sleep(0.01)
    pytest.fail("the keeper never waited for the lock held")


def stored_cursor(engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(ServiceMapCursor.seq).where(ServiceMapCursor.name == CURSOR_NAME)).scalar()


@pytest.fixture
def keeper_engine(database_url):
    """An engine of the keeper's own whose sessions start with these settings (`SET name = value`)."""
    engines = []

    def make(**settings: str):
        engine = make_engine(database_url)

        @event.listens_for(engine, "connect")
        def _settings(dbapi_connection, _record) -> None:
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            with dbapi_connection.cursor() as cursor:
                for name, value in settings.items():
                    cursor.execute(f"SET {name} = '{value}'")
            dbapi_connection.autocommit = autocommit

        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def test_a_chunk_the_database_aborts_to_break_a_deadlock_runs_again(api, app, engine, fronts, keeper_engine, caplog):
    """A real deadlock: the keeper holds `first` (KEY SHARE) and waits for `second`, which the other
    transaction holds FOR UPDATE while it asks for `first`. The database aborts the keeper, and the same
    pass maps both services. The keeper is the one aborted: it waits first and looks for a deadlock
    after 3 s of waiting (its deadlock_timeout; the test asks for `first` well before), the other
    transaction only after 20 s."""
    caplog.set_level(logging.INFO, logger="karta.service_map")
    deadlocking = keeper_engine(deadlock_timeout="3s")
    keeper = ServiceMapKeeper(deadlocking, app.state.registry, LiveGraph(deadlocking, app.state.registry))
    head = _head(engine)
    other = engine.connect()
    other.begin()
    try:
        other.execute(text("SET LOCAL deadlock_timeout = '20s'"))
        other.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE"), {"id": fronts["second"]})
        thread, outcome = in_thread(keeper.catch_up)
        wait_for_a_lock_wait(other, thread, outcome)
        # The cycle: this waits until the database has aborted the keeper's transaction.
        other.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE"), {"id": fronts["first"]})
        other.commit()
    finally:
        other.close()
    thread.join(WAIT_SECONDS)
    assert not thread.is_alive(), "the keeper's pass did not end"
    assert "error" not in outcome, f"the pass failed: {outcome.get('error')!r}"
    retried = [r.getMessage() for r in caplog.records if "aborted a chunk's transaction" in r.getMessage()]
    assert retried and "40P01" in retried[0], [r.getMessage() for r in caplog.records]
    for service, front in ((fronts["low"], fronts["first"]), (fronts["high"], fronts["second"])):
        answer = the_map(api, service)
        assert answer["status"] == "mapped"
        assert [ci["id"] for ci in answer["layers"]["entry"]] == [front]
    assert stored_cursor(engine) == head  # the pass is done: the feed as it stood when it started


def _head(engine) -> int:
    with engine.connect() as conn:
        return last_seq(conn)


def test_a_chunk_that_keeps_failing_stays_due_for_the_next_pass(api, app, engine, fronts, keeper_engine, caplog):
    """A lock held through every attempt, which waits at most 100 ms for it (lock_timeout: 55P03): the
    pass ends without raising, logged; the stored cursor stays before the services' records (a keeper
    starting afresh would read them again); and the next pass, with no new record to read, maps them
    once the lock is gone."""
    caplog.set_level(logging.INFO, logger="karta.service_map")
    impatient = keeper_engine(lock_timeout="100ms")
    keeper = ServiceMapKeeper(impatient, app.state.registry, LiveGraph(impatient, app.state.registry))
    for service in (fronts["low"], fronts["high"]):  # not mapped yet: the keeper has not run
        assert the_map(api, service)["status"] == "pending"
    stored_before = stored_cursor(engine)
    other = engine.connect()
    other.begin()
    try:
        other.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE"), {"id": fronts["second"]})
        thread, outcome = in_thread(keeper.catch_up)
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive(), "the keeper's pass did not end"
    finally:
        other.rollback()
        other.close()
    assert "error" not in outcome, f"the pass raised instead of leaving its services due: {outcome.get('error')!r}"
    [left] = [r.getMessage() for r in caplog.records if "stay due" in r.getMessage()]
    assert "55P03" in left and f"2 service(s) {CHUNK_ATTEMPTS} time(s)" in left, left
    assert len([r for r in caplog.records if "aborted a chunk's transaction" in r.getMessage()]) == CHUNK_ATTEMPTS - 1
    for service in (fronts["low"], fronts["high"]):
        assert the_map(api, service)["status"] == "pending"  # the chunk rolled back whole
    head = _head(engine)
    assert stored_cursor(engine) == stored_before and (stored_before or 0) < head

    keeper.catch_up()  # nothing new in the feed: the services due are the pass
    for service, front in ((fronts["low"], fronts["first"]), (fronts["high"], fronts["second"])):
        answer = the_map(api, service)
        assert answer["status"] == "mapped"
        assert [ci["id"] for ci in answer["layers"]["entry"]] == [front]
    assert stored_cursor(engine) == head  # nothing due any more: the cursor moves past those records
    assert keeper.catch_up() == 0  # nothing due any more
