"""BackgroundWrites: a batch's writes run in order on a second thread (inline on SQLite); the first
failure stops the rest and is raised in the caller's thread, where the retry and the rollback see it."""

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.core.db import make_engine
from app.services.ingest.writes import BackgroundWrites


@pytest.fixture
def conn(database_url):
    engine = make_engine(database_url)
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE probe (n INTEGER PRIMARY KEY)"))
        connection.commit()
        yield connection
    engine.dispose()


def insert(conn, n):
    conn.execute(text("INSERT INTO probe (n) VALUES (:n)"), {"n": n})


def rows(conn):
    return conn.execute(text("SELECT n FROM probe ORDER BY n")).scalars().all()


def test_writes_run_in_order_off_the_calling_thread(conn):
    threads = []
    with BackgroundWrites(conn) as writes:
        for n in (3, 1, 2):
            writes.submit(insert, n)
        writes.submit(lambda c: threads.append(threading.current_thread()))
        writes.wait()
        assert rows(conn) == [1, 2, 3]
    inline = conn.dialect.name == "sqlite"
    assert threads and (threads[0] is threading.current_thread()) == inline


def test_first_failure_is_raised_and_later_writes_are_skipped(conn):
    ran = []
    with pytest.raises(IntegrityError):
        with BackgroundWrites(conn) as writes:
            writes.submit(insert, 1)
            writes.submit(insert, 1)  # primary key
            writes.submit(lambda c: ran.append("after"))
    assert ran == []
    conn.rollback()
    assert rows(conn) == []


def test_a_failure_in_the_caller_waits_for_the_writer_and_drops_what_did_not_start(conn):
    started, release = threading.Event(), threading.Event()

    def slow(c):
        started.set()
        release.wait(5)
        insert(c, 1)

    threading.Timer(0.2, release.set).start()
    with pytest.raises(RuntimeError), BackgroundWrites(conn) as writes:
        writes.submit(slow)
        writes.submit(insert, 2)
        started.wait(5)
        raise RuntimeError("the caller failed")
    # The writer finished what it had begun before the connection was handed back; the rest never ran
    # (inline, on SQLite, both had run before the caller failed).
    assert rows(conn) == ([1, 2] if conn.dialect.name == "sqlite" else [1])
