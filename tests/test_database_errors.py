"""Database errors are classified by SQLSTATE or SQLite result code, never by message text: a unique
key a concurrent request took is a 409, a transient fault a 503 with Retry-After, a value the database
cannot hold a 422, anything else a 500 carrying the request id that the log names."""

import sqlite3
import threading
import time

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from app.core.db_errors import DatabaseFault, classify
from app.services import tokens
from app.services.history import UnitOfWork


def _raised(engine, statement: str) -> DBAPIError:
    with engine.connect() as conn:
        with pytest.raises(DBAPIError) as caught:
            conn.execute(text(statement))
    return caught.value


def test_real_database_errors_are_classified_by_code(engine):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE probe (k INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO probe VALUES (1, 'a')"))
    assert classify(_raised(engine, "INSERT INTO probe VALUES (2, 'a')")) is DatabaseFault.unique
    assert classify(_raised(engine, "SELECT * FROM no_such_table")) is DatabaseFault.fault
    if engine.dialect.name == "postgresql":
        assert classify(_raised(engine, "SELECT 1 / 0")) is DatabaseFault.value
        assert classify(_raised(engine, "SELECT 'a\\x01'::int")) is DatabaseFault.value
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect("host=127.0.0.1 port=1 connect_timeout=2")
        assert classify(refused.value) is DatabaseFault.retry


def test_a_locked_sqlite_database_is_transient(tmp_path):
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    waiter = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(DBAPIError) as caught, waiter.connect() as conn:
            conn.execute(text("SELECT * FROM t"))
        assert classify(caught.value) is DatabaseFault.retry
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        waiter.dispose()


def test_a_missing_table_is_a_500_with_the_request_id(api, engine, caplog):
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE discovery_run"))
    response = api.get("/api/v1/discovery/runs", headers={"X-Request-Id": "probe-42"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "probe-42" and response.json()["request_id"] == "probe-42"
    assert any("probe-42" in record.getMessage() for record in caplog.records)
    assert "discovery_run" not in response.text  # no database internals to the client
    assert api.get("/api/v1/cis", headers={"X-Request-Id": "bad id;<x>"}).headers["x-request-id"] != "bad id;<x>"


@pytest.mark.parametrize("kind", ["token", "class", "relationship_type"])
def test_creation_races_on_names_answer_409(api, engine, kind):
    bodies = {"token": ("/api/v1/tokens", {"name": "racer", "scopes": ["read"]}),
              "class": ("/api/v1/classes", {"name": "racer"}),
              "relationship_type": ("/api/v1/relationship-types", {"name": "racer", "forward_label": "a",
                                                                    "reverse_label": "b", "impact_direction": "none"})}
    url, body = bodies[kind]
    answers: list[int] = []
    with UnitOfWork(engine, "first") as uow:  # creates the name and holds its transaction open
        if kind == "token":
            tokens.create_token(uow, "racer", ["read"])
        elif kind == "class":
            uow.conn.execute(text("INSERT INTO ci_class (name, label, description, attribute_schema, "
                                  "identification_rules, held_identifiers, created_at, updated_at) VALUES ('racer', "
                                  "'r', '', '{}', '[]', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        else:
            uow.conn.execute(text("INSERT INTO relationship_type (name, forward_label, reverse_label, "
                                  "impact_direction, membership, description, created_at) VALUES ('racer', 'a', 'b', "
                                  "'none', false, '', CURRENT_TIMESTAMP)"))
        second = threading.Thread(target=lambda: answers.append(api.post(url, json=body).status_code))
        second.start()
        time.sleep(0.5)  # the second request has checked the name and waits to insert
    second.join(timeout=30)
    assert answers == [409]
