"""Worker recycling (app/core/recycling.py), on the real `karta serve`: a worker that a load made grow
asks for a fresh one, which loads the graph snapshot the old one wrote, and no request fails meanwhile."""

import re
import threading
import time
import uuid

import httpx
import pytest

from tests.server import karta, running_server, workers_of


def servers(count: int, start: int) -> dict:
    items = [{"ref": "sw", "class": "network_device", "name": "sw-core", "identifiers": {"serial_number": "SW-CORE"},
              "attributes": {}}]
    relationships = []
    for n in range(start, start + count):
        items.append({"ref": f"s{n}", "class": "server", "name": f"srv-{n:06d}",
                      "identifiers": {"machine_id": uuid.UUID(int=n + 1).hex},
                      "attributes": {"os_name": "debian", "notes": f"rack {n % 40} row {n % 7} " * 4}})
        relationships.append({"source": f"s{n}", "type": "connects_to", "target": "sw"})
    return {"source": "bench", "run_id": f"run-{start}", "items": items, "relationships": relationships}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_a_load_made_grow_is_replaced_and_no_request_fails(database_url, tmp_path, workers):
    # one worker: supervised all the same; two: one round replaces both, whichever asked
    created = karta("token", "create", "--name", "t", "--scope", "read", "--scope", "discovery", "--scope", "write",
                    database_url=database_url)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    env = {"KARTA_WORKER_RECYCLE_MIB": "24", "KARTA_WORKER_RECYCLE_CHECK_SECONDS": "0.3",
           "KARTA_GRAPH_SNAPSHOT_DIR": str(tmp_path / "graph")}
    headers = {"Authorization": f"Bearer {secret}"}
    with running_server(database_url, workers=workers, env=env, startup_seconds=60) as base, \
            httpx.Client(base_url=base, headers=headers, timeout=60, trust_env=False) as http:
        supervisor = base.process.pid
        deadline = time.monotonic() + 30
        while len(workers_of(supervisor)) != workers and time.monotonic() < deadline:
            time.sleep(0.1)
        first = set(workers_of(supervisor))
        assert len(first) == workers
        failures: list[str] = []
        answered = [0]
        stop = threading.Event()

        def ask() -> None:  # a client asking all along, over the replacement
            with httpx.Client(base_url=base, headers=headers, timeout=30, trust_env=False) as asker:
                while not stop.is_set():
                    try:
                        response = asker.get("/api/v1/cis", params={"limit": 1})
                        if response.status_code != 200:
                            failures.append(f"{response.status_code} {response.text[:200]}")
                        answered[0] += 1
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    time.sleep(0.01)

        asker = threading.Thread(target=ask)
        asker.start()
        try:
            pushed, asked = 0, False
            for _ in range(12):  # each batch makes the worker grow; bounded, whatever the machine
                response = http.post("/api/v1/ingest", json=servers(4000, pushed))
                assert response.status_code == 200, response.text
                pushed += 4000
                assert http.post("/api/v1/impact", json={"ci_ids": [response.json()["refs"]["sw"]]}).status_code == 200
                deadline = time.monotonic() + 3
                while not asked and time.monotonic() < deadline:
                    asked = "asking karta serve for fresh workers" in base.log()
                    time.sleep(0.1)
                if asked:
                    break  # no more growth: one round, whatever each replacement takes to start
            assert asked, "no worker asked to be replaced"
            replaced, deadline = set(), time.monotonic() + 30 * workers
            while time.monotonic() < deadline:
                current = set(workers_of(supervisor))
                if len(current) == workers and not current & first:
                    replaced = current
                    break
                time.sleep(0.1)
            assert replaced, f"the workers were never all replaced: {first} -> {workers_of(supervisor)}"
            # the replacement serves, with every change: it loaded the snapshot the old worker wrote
            impact = http.post("/api/v1/impact", json={"ci_ids": [response.json()["refs"]["sw"]]})
            assert impact.status_code == 200
            assert impact.json()["counts"]["total"] >= pushed
            time.sleep(2)  # one replacement: the new worker, measured from its own start, stays
            assert set(workers_of(supervisor)) == replaced
        finally:
            stop.set()
            asker.join(timeout=30)
        assert failures == [] and answered[0] > 10
        log = base.log()
        assert log.count("asking karta serve for fresh workers") == 1, log
        # the snapshot the old worker wrote, idle, held every change: the replacement applied none
        loads = re.findall(r"impact graph loaded from snapshot at seq (\d+) and caught up to (\d+)", log)
        assert len(loads) == workers and all(at == to for at, to in loads), log
