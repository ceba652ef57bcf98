"""Every change is audited: registry objects, precedence and tokens in the change feed; the feed's
filters; a CI's history with its relationships' records; a deletion recorded only by whoever deleted."""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta


from app.services import changes as change_service
from app.services import relationships
from app.services.errors import NotFound
from app.services.history import UnitOfWork, in_unit_of_work
from app.services.registry_ids import KARTA_NAMESPACE, PRECEDENCE_ID


def _records(api, **filters) -> list[dict]:
    query = "&".join(f"{key}={value}" for key, value in {"since": 0, **filters}.items())
    response = api.get(f"/api/v1/changes?{query}")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_registry_and_precedence_changes_are_recorded(api):
    schema = {"type": "object", "properties": {"broker_id": {"type": "integer"}}}
    assert api.post("/api/v1/classes", json={"name": "broker", "parent": "application",
                                             "attribute_schema": schema}).status_code == 201
    assert api.patch("/api/v1/classes/broker", json={"label": "Kafka broker"}).status_code == 200
    assert api.patch("/api/v1/classes/broker", json={"label": "Kafka broker"}).status_code == 200  # no change
    assert api.post("/api/v1/relationship-types", json={"name": "mirrors", "forward_label": "mirrors",
                                                        "reverse_label": "mirrored by",
                                                        "impact_direction": "none"}).status_code == 201
    rules = [{"class": "server", "attribute": "os_name", "sources": ["ssh", "manual"]}]
    default = api.get("/api/v1/precedence").json()
    assert api.request("PUT", "/api/v1/precedence", json=rules).status_code == 200
    class_id = str(uuid.uuid5(KARTA_NAMESPACE, "class:broker"))
    records = _records(api, object_id=class_id)
    assert [(r["object_type"], r["action"]) for r in records] == [("class", "create"), ("class", "update")]
    assert records[0]["diff"]["attribute_schema"] == [None, schema]
    assert records[1]["diff"] == {"label": ["Broker", "Kafka broker"]}
    mirrors = _records(api, object_type="relationship_type")
    assert [(r["object_id"], r["diff"]["impact_direction"]) for r in mirrors] == [
        (str(uuid.uuid5(KARTA_NAMESPACE, "relationship_type:mirrors")), [None, "none"])]
    (precedence,) = _records(api, object_type="precedence")
    assert precedence["object_id"] == str(PRECEDENCE_ID) and precedence["diff"]["rules"] == [default, rules]
    assert {r["actor"] for r in _records(api)} == {"admin-bot", "tests"}


def test_precedence_refuses_unknown_classes_and_repeated_sources(api):
    unknown = api.request("PUT", "/api/v1/precedence", json=[{"class": "nope", "sources": ["ssh"]}])
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "0.class"
    twice = api.request("PUT", "/api/v1/precedence", json=[{"sources": ["ssh", "nmap", "ssh"]}])
    assert twice.status_code == 422 and twice.json()["errors"][0]["field"] == "0.sources"
    assert _records(api, object_type="precedence") == []


def test_feed_filters_by_kind_actor_and_time(api):
    before = datetime.now(UTC) - timedelta(seconds=1)
    web = api.create_ci("server", "web-1")
    other = api.post("/api/v1/cis", as_="write", json={"class": "server", "name": "web-2"}).json()
    assert [r["object_id"] for r in _records(api, actor="write-bot")] == [other["id"]]
    assert [r["object_id"] for r in _records(api, object_type="ci")] == [web["id"], other["id"]]
    assert _records(api, object_type="ci", **{"from": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
                                              .replace("+", "%2B")}) == []
    assert len(_records(api, object_type="ci", **{"from": before.isoformat().replace("+", "%2B")})) == 2
    assert api.get("/api/v1/changes?object_type=nonsense").status_code == 422
    mixed = api.get("/api/v1/changes?from=2020-01-01T00:00:00Z&until=2030-01-01T00:00:00&object_type=ci")
    assert mixed.status_code == 200 and len(mixed.json()["items"]) == 2  # a time without offset is UTC
    last = api.get(f"/api/v1/changes?since={2**63 - 1}&object_type=ci")
    assert last.status_code == 200 and last.json()["items"] == []
    later = before + timedelta(hours=1)
    swapped = api.get(f"/api/v1/changes?from={later.isoformat().replace('+', '%2B')}"
                      f"&until={before.isoformat().replace('+', '%2B')}")
    assert swapped.status_code == 422 and swapped.json()["errors"][0]["field"] == "until"


def test_a_filtered_feed_scans_a_bounded_window_and_says_where_it_stopped(api, monkeypatch):
    monkeypatch.setattr(change_service, "SCAN_WINDOW", 3)
    ids = [api.create_ci("server", f"s{n}")["id"] for n in range(5)]  # tokens' records come first
    since, seen, pages = 0, [], 0
    while True:
        page = api.get(f"/api/v1/changes?since={since}&object_type=ci").json()
        pages += 1
        assert len(page["items"]) <= 3 and page["last_seq"] - since <= 3
        seen += [r["object_id"] for r in page["items"]]
        since = page["last_seq"]
        if since == page["head_seq"]:
            break
        assert pages < 20
    assert seen == ids and pages >= 3


def test_a_cis_history_holds_the_relationships_that_touch_it(api):
    app_ci, host, other = (api.create_ci("application", "a")["id"], api.create_ci("server", "h")["id"],
                           api.create_ci("server", "x")["id"])
    runs_on = api.relate(app_ci, "runs_on", host)
    unrelated = api.relate(app_ci, "depends_on", other)
    assert api.delete(f"/api/v1/relationships/{runs_on['id']}").status_code == 204
    history = api.get(f"/api/v1/cis/{host}/history").json()["items"]
    assert [(r["object_type"], r["object_id"], r["action"]) for r in history] == [
        ("relationship", runs_on["id"], "delete"), ("relationship", runs_on["id"], "create"), ("ci", host, "create")]
    assert unrelated["id"] not in {r["object_id"] for r in history}
    paged = api.get(f"/api/v1/cis/{host}/history?limit=2").json()
    assert len(paged["items"]) == 2
    assert api.get(f"/api/v1/cis/{host}/history?limit=2&cursor={paged['next_cursor']}").json()["items"] == history[2:]


def test_two_deletions_of_one_relationship_record_one_delete(api, engine):
    first, second = api.create_ci("server", "a")["id"], api.create_ci("server", "b")["id"]
    rel = uuid.UUID(api.relate(first, "connects_to", second)["id"])
    outcome: dict[str, object] = {}

    def delete_again() -> None:
        try:
            in_unit_of_work(engine, "second", lambda uow: relationships.delete_relationship(uow, rel))
            outcome["second"] = "deleted"
        except NotFound:
            outcome["second"] = "not found"

    with UnitOfWork(engine, "first") as uow:
        relationships.delete_relationship(uow, rel)
        racer = threading.Thread(target=delete_again)
        racer.start()
        time.sleep(0.5)  # the second deletion has read the row and waits for this one's commit
        assert "second" not in outcome
    racer.join(timeout=30)
    assert outcome == {"second": "not found"}
    deletes = [r for r in _records(api, object_id=str(rel)) if r["action"] == "delete"]
    assert [r["actor"] for r in deletes] == ["first"]


def test_relationship_history_is_found_through_the_index(api, engine):
    # the very query a CI's history runs, planned by the database: both ends through their indexes
    dialect = engine.dialect.name
    query = change_service.relationships_touching_query(uuid.uuid4())
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if dialect == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table: only whether it can
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))
        else:
            plan = "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    if dialect == "postgresql":
        for index in ("uq_relationship_ends_type", "ix_relationship_target_id", "ix_ended_relationship_source_id",
                      "ix_ended_relationship_target_id"):
            assert index in plan, (index, plan)
        assert "Seq Scan" not in plan, plan
    else:
        assert plan.count("SEARCH") == 4 and "SCAN" not in plan.replace("TEMP B-TREE", ""), plan


def test_ingest_ending_a_relationship_an_operator_deletes_records_one_delete(api, engine, app):
    def run(relationships: list, run_id: str, names=("a", "b")) -> dict:
        body = {"source": "ssh", "run_id": run_id, "scope": {"hosts": ["a", "b"]}, "complete": True,
                "items": [{"ref": name, "class": "server", "name": name, "identifiers": {"serial_number": f"SN-{name}"}}
                          for name in names],
                "relationships": relationships}
        response = api.post("/api/v1/ingest", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    run([{"source": "a", "target": "b", "type": "connects_to"}], "first")
    (rel,) = api.get("/api/v1/relationships?type=connects_to").json()["items"]
    outcome: dict[str, object] = {}
    with UnitOfWork(engine, "operator") as uow:
        relationships.delete_relationship(uow, uuid.UUID(rel["id"]))
        # A run that sees neither end (the hosts were down). On PostgreSQL it waits for the operator's
        # commit on the sightings both touch before it reads what to end; were it to read first, ending
        # records only what its own DELETE removed (test_two_deletions_of_one_relationship_record_one_delete).
        racer = threading.Thread(target=lambda: outcome.update(run([], "second", names=())))
        racer.start()
        time.sleep(0.5)  # the batch ending it waits for the operator's commit
    racer.join(timeout=60)
    assert outcome["ended_relationships"] == 0
    deletes = [r for r in _records(api, object_id=rel["id"]) if r["action"] == "delete"]
    assert [r["actor"] for r in deletes] == ["operator"]


def test_a_delete_record_shows_the_relationship_as_it_was_deleted(api, engine):
    # The rows to end are read before the locks; an update committed in between must not be lost
    # from the record.
    from sqlalchemy import select

    def report(port: int) -> None:
        body = {"source": "ssh", "run_id": f"r{port}", "scope": {"hosts": ["a"]},
                "items": [{"ref": n, "class": "application", "name": n, "identifiers": {"instance_key": f"h1/{n}/80"}}
                          for n in ("a", "b")],
                "relationships": [{"source": "a", "target": "b", "type": "depends_on", "attributes": {"port": port}}]}
        response = api.post("/api/v1/ingest", json=body)
        assert response.status_code == 200 and response.json()["relationships"]["errors"] == 0, response.text

    report(1)
    with engine.connect() as conn:
        stale = conn.execute(select(*relationships.REL_COLUMNS)).mappings().one()
    report(2)
    with UnitOfWork(engine, "operator") as uow:
        assert len(relationships.end_relationships(uow, [stale])) == 1
    (deleted,) = [r for r in _records(api, object_id=str(stale["id"])) if r["action"] == "delete"]
    assert deleted["diff"]["attributes.port"] == [2, None]
