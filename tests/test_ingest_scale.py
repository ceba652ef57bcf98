"""Ingest under concurrency (real uvicorn, two workers, parallel agents) and its statement budget."""

import threading

import httpx
from sqlalchemy import event

from app.models.ingest import IngestBatch
from app.services.ingest import ingest
from tests.conftest import create_tokens, dangling_rows
from tests.server import running_server

MACHINES = 40


def _machine(n: int, client: int) -> dict:
    # Every client knows each machine by a different subset of its identifiers.
    identifiers = {"machine_id": f"{n + 0xA000:032x}"}
    if client % 2 == 0:
        identifiers["serial_number"] = f"SN-{n:05d}"
    if client % 3 == 0:
        identifiers["fqdn"] = f"host-{n}.example.com"
    return {"ref": f"m{n}", "class": "server", "name": f"host-{n}", "identifiers": identifiers,
            "attributes": {f"seen_by_client_{client}": True}}


def test_parallel_agents_never_duplicate_and_never_lose_an_update(app, engine, database_url):
    secrets = create_tokens(engine)
    clients, rounds = 4, 3
    failures = []
    with running_server(database_url, workers=2) as base:
        def agent(client: int) -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['discovery']}"},
                              timeout=60) as http:
                for round_number in range(rounds):
                    body = {"source": "ssh", "run_id": f"c{client}-r{round_number}", "scope": {"hosts": [f"c{client}"]},
                            "items": [_machine(n, client) for n in range(MACHINES)]}
                    response = http.post("/api/v1/ingest", json=body)
                    counts = response.json().get("counts", {}) if response.status_code == 200 else {}
                    if response.status_code != 200 or counts["conflicts"] or counts["errors"]:
                        failures.append(response.text[:500])

        threads = [threading.Thread(target=agent, args=(client,)) for client in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert not failures, failures[:2]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['read']}"}) as http:
            cis = http.get("/api/v1/cis?class=server&limit=1000").json()["items"]
    assert len(cis) == MACHINES, "a machine was created twice"
    for ci in cis:
        assert {f"seen_by_client_{c}" for c in range(clients)} <= set(ci["attributes"]), ci


def _count_statements(engine, work) -> int:
    statements = []
    listener = lambda *args, **kwargs: statements.append(1)  # noqa: E731
    event.listen(engine, "before_execute", listener)
    try:
        work()
    finally:
        event.remove(engine, "before_execute", listener)
    return len(statements)


def _estate(size: int, offset: int) -> IngestBatch:
    items, relationships = [], []
    for n in range(offset, offset + size):
        items.append({"ref": f"h{n}", "class": "server", "name": f"h{n}",
                      "identifiers": {"machine_id": f"{n + 0xA000:032x}", "ip_address": [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"]},
                      "attributes": {"cpu_count": 4}})
        items.append({"ref": f"a{n}", "class": "application", "name": f"app{n}",
                      "identifiers": {"instance_key": f"{n:032x}/app/80"}})
        relationships.append({"source": f"a{n}", "target": f"h{n}", "type": "runs_on"})
    return IngestBatch.model_validate({"source": "ssh", "run_id": f"run-{offset}-{size}", "items": items,
                                       "relationships": relationships, "complete": False})


def test_statements_per_batch_do_not_grow_with_its_size(app, engine):
    registry = app.state.registry
    registry.get()  # the class registry is cached per worker: load it before counting
    counts = {}
    for size, offset in ((50, 0), (1000, 100_000)):
        first = _count_statements(engine, lambda: ingest(engine, registry, _estate(size, offset), actor="t"))
        again_batch = _estate(size, offset).model_copy(update={"run_id": f"again-{size}"})
        again = _count_statements(engine, lambda: ingest(engine, registry, again_batch, actor="t"))
        counts[size] = (first, again)
    assert counts[50] == counts[1000], counts
    assert counts[1000][0] <= 25, counts


def test_parallel_agents_relating_machines_while_some_are_deleted_leave_nothing_dangling(app, engine, database_url):
    # Relationships have no foreign keys (migration 0006): agents relating the same machines at once,
    # while an operator deletes some of them, must leave one relationship per pair and none to nothing.
    secrets = create_tokens(engine)
    clients, rounds, machines = 3, 3, 20
    failures = []
    with running_server(database_url, workers=2) as base:
        def push(http: httpx.Client, client: int, round_number: int) -> dict:
            body = {"source": "ssh", "run_id": f"rel-c{client}-r{round_number}", "scope": {"hosts": [f"c{client}"]},
                    "items": [_machine(n, client) for n in range(machines)],
                    "relationships": [{"source": f"m{n}", "target": f"m{n + 1}", "type": "connects_to"}
                                      for n in range(machines - 1)]}
            response = http.post("/api/v1/ingest", json=body)
            if response.status_code != 200 or response.json()["counts"]["errors"] or response.json()["counts"]["conflicts"]:
                failures.append(response.text[:500])
                return {}
            return response.json()["refs"]

        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['admin']}"}, timeout=60) as http:
            first = push(http, 0, -1)

        def agent(client: int) -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['discovery']}"},
                              timeout=60) as http:
                for round_number in range(rounds):
                    push(http, client, round_number)

        def operator() -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['admin']}"}, timeout=60) as http:
                for n in range(0, machines, 4):
                    response = http.delete(f"/api/v1/cis/{first[f'm{n}']}")
                    if response.status_code != 204:
                        failures.append(f"delete m{n}: {response.status_code} {response.text[:300]}")

        threads = [threading.Thread(target=agent, args=(client,)) for client in range(clients)]
        threads.append(threading.Thread(target=operator))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert not failures, failures[:3]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['admin']}"}, timeout=60) as http:
            final = push(http, 0, rounds)  # whatever was deleted is reported again, and related again
            relationships = http.get("/api/v1/relationships?type=connects_to&limit=1000").json()["items"]
    assert not failures, failures[:3]
    pairs = [(r["source"], r["target"]) for r in relationships]
    assert sorted(pairs) == sorted((final[f"m{n}"], final[f"m{n + 1}"]) for n in range(machines - 1))
    assert dangling_rows(engine) == {}
