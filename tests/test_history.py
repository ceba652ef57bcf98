"""History: every write leaves a change record with a field diff; the feed is ordered and complete."""

import threading
import time

import pytest


def test_create_update_delete_records(api):
    ci = api.create_ci("server", "web-1", attributes={"cpu_count": 2})
    api.patch(f"/api/v1/cis/{ci['id']}", json={"name": "web-01", "attributes": {"cpu_count": 4, "kernel": "6.1"}})
    api.delete(f"/api/v1/cis/{ci['id']}", as_="write")
    records = api.get(f"/api/v1/cis/{ci['id']}/history").json()["items"]
    assert [r["action"] for r in records] == ["delete", "update", "create"]
    create, update = records[2], records[1]
    assert create["actor"] == "admin-bot"
    assert create["diff"]["name"] == [None, "web-1"]
    assert create["diff"]["attributes.cpu_count"] == [None, 2]
    assert update["diff"] == {"name": ["web-1", "web-01"], "attributes.cpu_count": [2, 4],
                              "attributes.kernel": [None, "6.1"]}
    assert records[0]["actor"] == "write-bot"
    assert records[0]["seq"] > update["seq"] > create["seq"]


def test_history_pages_newest_first(api):
    ci = api.create_ci("server", "h")
    for n in range(5):
        api.patch(f"/api/v1/cis/{ci['id']}", json={"owner": f"o{n}"})
    first = api.get(f"/api/v1/cis/{ci['id']}/history?limit=4").json()
    rest = api.get(f"/api/v1/cis/{ci['id']}/history?limit=4&cursor={first['next_cursor']}").json()
    seqs = [r["seq"] for r in first["items"] + rest["items"]]
    assert len(seqs) == 6 and seqs == sorted(seqs, reverse=True)
    assert rest["next_cursor"] is None


def test_feed_since(api):
    a = api.create_ci("server", "a")
    b = api.create_ci("server", "b")
    api.relate(a["id"], "connects_to", b["id"])
    feed = api.get("/api/v1/changes?since=0", as_="read").json()
    assert [(r["object_type"], r["action"]) for r in feed["items"]] == [("token", "create")] * 4 + [
        ("ci", "create"), ("ci", "create"), ("relationship", "create")]
    first_seq = feed["items"][4]["seq"]
    later = api.get(f"/api/v1/changes?since={first_seq}&limit=1").json()
    assert [r["object_id"] for r in later["items"]] == [b["id"]]
    assert later["last_seq"] == later["items"][0]["seq"]
    tail = api.get(f"/api/v1/changes?since={feed['last_seq']}").json()
    assert tail == {"items": [], "last_seq": feed["last_seq"], "head_seq": feed["last_seq"]}


def test_failed_write_leaves_no_record(api):
    api.create_ci("server", "a", attributes={"serial_number": "S1"})
    before = api.get("/api/v1/changes").json()["last_seq"]
    assert api.post("/api/v1/cis", json={"class": "server", "name": "b",
                                         "attributes": {"serial_number": "S1"}}).status_code == 409
    assert api.get("/api/v1/changes").json()["last_seq"] == before


# SQLite serializes writers by its single write lock; the sequence race exists only on PostgreSQL.
@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_sequence_follows_commit_order_under_concurrent_writers(api):
    """Parallel writers: the feed read at any moment is a prefix of the final feed (no late, smaller seq)."""
    stop = threading.Event()
    errors = []

    def writer(n):
        for i in range(15):
            response = api.post("/api/v1/cis", json={"class": "server", "name": f"w{n}-{i}"})
            if response.status_code != 201:
                errors.append(response.text)
        stop.set()

    snapshots = []
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        snapshots.append([r["seq"] for r in api.get("/api/v1/changes?limit=10000&object_type=ci").json()["items"]])
        if all(not t.is_alive() for t in threads):
            break
    for thread in threads:
        thread.join(timeout=60)
    final = [r["seq"] for r in api.get("/api/v1/changes?limit=10000&object_type=ci").json()["items"]]
    assert not errors
    assert len(final) == 60
    for snapshot in snapshots:
        assert final[: len(snapshot)] == snapshot


def test_creation_diffs_built_directly_equal_the_generic_ones():
    # Ingest builds creation records directly (cis.creation_diff, relationships.creation_diff); they
    # must be what the generic diff gives, key order included (SQLite keeps it in the stored JSON).
    import random
    import uuid
    from datetime import UTC, datetime, timedelta, timezone

    from app.services import cis, relationships
    from app.services.history import diff_fields

    rng = random.Random(5)
    values = [None, 0, 1, "x", "", [], {}, {"a": None}, [None], True, 2.5]
    for _ in range(500):
        at = datetime(2026, 11, 22, tzinfo=rng.choice([UTC, timezone(timedelta(hours=2))]))
        attributes = {f"k{rng.randrange(20)}": rng.choice(values) for _ in range(rng.randrange(6))}
        ci = {"id": uuid.uuid4(), "ci_class": "server", "name": rng.choice(["a", ""]), "status": "active",
              "environment": rng.choice([None, "prod"]), "criticality": rng.choice([None, 1]),
              "owner": rng.choice([None, "ops"]), "tags": rng.choice([[], ["t"]]), "attributes": attributes,
              "first_seen": rng.choice([None, at]), "last_seen": rng.choice([None, at]), "created_at": at,
              "updated_at": at, "version": 1}
        generic = diff_fields(None, cis.to_public(ci), cis.HISTORY_FIELDS)
        assert list(cis.creation_diff(ci).items()) == list(generic.items())
        rel = {"id": uuid.uuid4(), "source_id": uuid.uuid4(), "target_id": uuid.uuid4(), "type": "runs_on",
               "attributes": attributes, "first_seen": rng.choice([None, at]), "last_seen": at, "created_at": at}
        generic = diff_fields(None, relationships.to_public(rel), relationships.HISTORY_FIELDS)
        assert list(relationships.creation_diff(rel).items()) == list(generic.items())


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_write_the_database_aborts_to_break_a_deadlock_runs_again(api, engine):
    # PostgreSQL only (SQLite writers never hold row locks against each other). A real deadlock: this
    # write locks CI a then b; another transaction holds b and asks for a. The database aborts the
    # write (it waited first), which then runs again, once the other one has committed.
    from sqlalchemy import text

    from app.services.history import in_unit_of_work

    a, b = (api.create_ci("service", name)["id"] for name in ("a", "b"))
    other = engine.connect()
    other.begin()
    first_lock_taken, attempts = threading.Event(), []

    def work(uow):
        attempts.append(1)
        uow.conn.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE"), {"id": a})
        first_lock_taken.set()
        uow.conn.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE"), {"id": b})
        return "done"

    def other_transaction() -> None:
        assert first_lock_taken.wait(30)
        time.sleep(0.3)  # the write is now waiting for b
        other.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE"), {"id": a})  # the cycle
        other.commit()

    try:
        other.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE"), {"id": b})
        thread = threading.Thread(target=other_transaction)
        thread.start()
        assert in_unit_of_work(engine, "test", work) == "done"
        thread.join(30)
    finally:
        other.close()
    assert len(attempts) == 2
