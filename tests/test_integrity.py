"""`karta db check`: rows that point at nothing, found and repaired (the foreign keys dropped in 0004/0006)."""

import uuid

from sqlalchemy import text

from app.services import integrity
from app.services.history import UnitOfWork
from tests.conftest import discovered_app_host_and_database
from tests.server import karta


def _break(engine, refs) -> None:
    """What hand edits of the tables could leave: a CI deleted without its relationships, identifiers
    and sightings; a relationship deleted without its sightings; one added with a type that does not exist."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ci WHERE id = :id"), {"id": _db_id(engine, refs["d"])})
        conn.execute(text("DELETE FROM relationship WHERE type = 'runs_on'"))
        conn.execute(text("INSERT INTO relationship (id, source_id, target_id, type, attributes, created_at) "
                          "VALUES (:id, :source, :target, 'retired_type', '{}', CURRENT_TIMESTAMP)"),
                     {"id": _db_id(engine, str(uuid.uuid4())), "source": _db_id(engine, refs["a"]),
                      "target": _db_id(engine, refs["h"])})


def _db_id(engine, value: str):
    return uuid.UUID(value) if engine.dialect.name == "postgresql" else uuid.UUID(value).hex


def test_check_finds_what_points_at_nothing_and_repair_ends_it_with_history(api, engine):
    refs = discovered_app_host_and_database(api)
    with engine.connect() as conn:
        assert integrity.find_dangling(conn) == []
    _break(engine, refs)
    with engine.connect() as conn:
        found = {f.check.name: f.count for f in integrity.find_dangling(conn)}
    # depends_on lost its target, whose identifier and sighting stay; runs_on's sighting lost its
    # relationship; the added relationship's type does not exist
    assert found == {"relationship_ends": 1, "relationship_types": 1, "relationship_sightings": 1,
                     "identifiers": 1, "ci_sightings": 1}
    with UnitOfWork(engine, "test") as uow:
        integrity.repair(uow)
    with engine.connect() as conn:
        assert integrity.find_dangling(conn) == []
    feed = api.get("/api/v1/changes").json()["items"]
    ended = [r for r in feed if (r["object_type"], r["action"]) == ("relationship", "delete")]
    assert sorted(record["diff"]["type"][0] for record in ended) == ["depends_on", "retired_type"]
    assert api.get(f"/api/v1/cis/{refs['a']}").json()["relationships"] == []


def test_karta_db_check_exits_1_until_repaired(api, engine, database_url):
    refs = discovered_app_host_and_database(api)
    assert karta("db", "check", database_url=database_url).stdout.strip() == "no dangling references"
    _break(engine, refs)
    checked = karta("db", "check", database_url=database_url)
    assert checked.returncode == 1, checked.stderr
    assert "1 relationships whose source or target CI does not exist" in checked.stdout
    assert "--repair" in checked.stderr
    repaired = karta("db", "check", "--repair", database_url=database_url)
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired: 1 CI sightings of CIs that do not exist" in repaired.stdout
    again = karta("db", "check", database_url=database_url)
    assert (again.returncode, again.stdout.strip()) == (0, "no dangling references")
