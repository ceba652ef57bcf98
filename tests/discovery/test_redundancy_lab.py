"""Redundancy inferred on the discovery lab, no mocks: two instances of one application behind a proxy,
found by the real agents (``karta discover scan`` and ``ssh`` pushing to a real ``karta serve``),
become one redundancy group Karta owns, and losing one of them degrades the service instead of
taking it down.

For this module the standard lab (lab_services.standard_hosts) gets, beside what it runs:
  - a second instance of orders_api, on app-1:8080 (the first is on web-1:8080; both hold a
    connection to redis on db-1);
  - shop_proxy on db-1, listening on 8081 and holding a connection to each orders_api instance, as
    a proxy with two upstreams does.
Both are stopped when the module ends, so the other lab modules see the standard lab.

Discovery then reports shop_proxy@db-1:8081 depends_on orders_api@web-1:8080 and
orders_api@app-1:8080 at port 8080, two instances of kind orders_api on two hosts. The service
`shop`, defined by one entry point (db-1's address, port 8081), maps through the proxy; the keeper
infers the group "orders_api:8080 instances behind shop_proxy@db-1:8081". Then the second instance
stops: after the next discovery run the proxy no longer depends on it, the group no longer holds and
is ended, and the shop's map records name what left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator

import pytest

from tests.conftest import fresh_database
from tests.discovery.lab import wait_until
from tests.discovery.lab_services import ORDERS_API
from tests.discovery.test_end_to_end import Estate, karta_for_lab

pytestmark = [pytest.mark.lab, pytest.mark.postgres]

WAIT_SECONDS = 30  # the keeper polls every 2 s; a write of this test wakes it at once
SHOP_PROXY = textwrap.dedent("""\
    # A proxy for the lab: listens on its port and keeps one connection open to each upstream.
    import socket, sys, time
    listen_addr, listen_port, lifetime, *upstreams = sys.argv[1:]
    server = socket.create_server((listen_addr, int(listen_port)))
    kept = [socket.create_connection((u.split(":")[0], int(u.split(":")[1])), timeout=10) for u in upstreams]
    deadline = time.monotonic() + float(lifetime)
    while time.monotonic() < deadline:
        time.sleep(1)
""")


def _spawned(lab, host_name: str, argv: list[str], label: str):
    lab.spawn(lab.hosts[host_name], argv, label)
    return lab._procs[-1]


@pytest.fixture(scope="module")
def proxied_lab(lab) -> Iterator:
    """The session's lab with the second orders_api and the proxy running; stopped afterwards."""
    web, app1, db = lab.hosts["web-1"], lab.hosts["app-1"], lab.hosts["db-1"]
    (lab.dir / "app-1" / "orders_api.py").write_text(ORDERS_API)
    (lab.dir / "db-1" / "shop_proxy.py").write_text(SHOP_PROXY)
    started = []
    try:
        started.append(_spawned(lab, "app-1", ["/usr/bin/python3", str(lab.dir / "app-1" / "orders_api.py"),
                                               app1.address, "8080", db.address, "6379", str(lab.lifetime)],
                                "orders_api-2"))
        lab.wait_for_tcp([(app1.address, 8080)])
        started.append(_spawned(lab, "db-1", ["/usr/bin/python3", str(lab.dir / "db-1" / "shop_proxy.py"),
                                              db.address, "8081", str(lab.lifetime), f"{web.address}:8080",
                                              f"{app1.address}:8080"], "shop_proxy"))
        lab.wait_for_tcp([(db.address, 8081)])
        for peer in (f"{web.address}:8080", f"{app1.address}:8080"):
            check = ["ss", "-Htn", "state", "established", "dst", peer]
            wait_until(lambda argv=check: lab.host_run("db-1", argv).stdout.strip(), 30, f"db-1 connection to {peer}")
        lab.redundancy_lab_processes = started  # the second orders_api first: the last test stops it
        yield lab
    finally:  # every one killed first, then waited for: one slow to go never leaves another running
        for process in started:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass  # killed with its group; lab.stop() reaps it at the session's end
            else:
                lab._procs.remove(process)


@pytest.fixture(scope="module")
def lab_database(request, tmp_path_factory) -> Iterator[str]:
    yield from fresh_database(request, "postgresql", tmp_path_factory.mktemp("redundancy-lab"))


@pytest.fixture(scope="module")
def mapped(proxied_lab, lab_database):
    """One discovery round and the shop; yields (the round, the admin client, the shop, its group)."""
    lab = proxied_lab
    with karta_for_lab(lab, lab_database) as (api, agent_env):
        estate = Estate(lab, api, agent_env)
        first = estate.discover()
        shop = api.post("/api/v1/cis", json={"class": "service", "name": "shop", "attributes": {
            "entry_points": [f"{lab.hosts['db-1'].address}:8081"]}})
        assert shop.status_code == 201, shop.text
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            clusters = api.get("/api/v1/cis", params={"class": "cluster"}).json()["items"]
            in_map = {ci["id"] for cis in api.get(f"/api/v1/cis/{shop.json()['id']}/service-map").json()
                      ["layers"].values() for ci in cis}
            if (clusters and clusters[0]["id"] in in_map) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(clusters) == 1, clusters
        lab.redundancy_lab_estate = estate  # the last test runs discovery again
        yield first, api, shop.json(), clusters[0]


def test_discovery_sees_the_proxy_and_both_instances(mapped):
    first, _, _, _ = mapped
    edges = {(s, t) for s, y, t, _ in first.edges() if y == "depends_on"}
    assert {("shop_proxy@db-1:8081", "orders_api@web-1:8080"), ("shop_proxy@db-1:8081", "orders_api@app-1:8080")} \
        <= edges


def test_the_two_instances_become_one_group_karta_owns(mapped):
    first, api, shop, group = mapped
    assert group["name"] == "orders_api:8080 instances behind shop_proxy@db-1:8081"
    assert group["attributes"]["min_members"] == 1
    members = {r["source"] for r in api.get("/api/v1/relationships", params={"target": group["id"],
                                                                             "type": "member_of"}).json()["items"]}
    assert {first.label(m) for m in members} == {"orders_api@web-1:8080", "orders_api@app-1:8080"}
    proxy = first.named("shop_proxy@db-1:8081")["id"]
    assert api.get("/api/v1/relationships", params={"source": proxy, "target": group["id"]}).json()["items"]


def state_of(api, failed: list[str], ci_id: str) -> str | None:
    response = api.post("/api/v1/blast-radius", json={"failed": failed})
    assert response.status_code == 200, response.text
    return next((ci["state"] for ci in response.json()["impacted"] if ci["id"] == ci_id), None)


def test_one_instance_failing_degrades_the_shop_both_take_it_down(mapped):
    first, api, shop, group = mapped
    app1, web1 = first.host("app-1")["id"], first.host("web-1")["id"]
    assert state_of(api, [app1], group["id"]) == "degraded"
    assert state_of(api, [app1], shop["id"]) == "at_risk"
    assert state_of(api, [web1], shop["id"]) == "at_risk"
    assert state_of(api, [app1, web1], shop["id"]) == "down"
    assert state_of(api, [first.host("db-1")["id"]], shop["id"]) == "down"  # the proxy and redis live there


def test_a_cut_connection_leaves_the_map_after_the_next_run(mapped, proxied_lab):
    """The second instance stops (its connection from the proxy is gone): the next discovery run ends
    the proxy's dependency on it, the group no longer holds and Karta ends it, and the shop's map
    records say what left. Last in this module: it changes the estate."""
    first, api, shop, group = mapped
    lab = proxied_lab
    second = lab.redundancy_lab_processes[0]
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(10)
    peer = f"{lab.hosts['app-1'].address}:8080"
    check = ["ss", "-Htn", "state", "established", "dst", peer]
    wait_until(lambda: not lab.host_run("db-1", check).stdout.strip(), 30, f"db-1's connection to {peer} to end")
    records = api.get("/api/v1/changes", params={"object_type": "service_map", "object_id": shop["id"]}).json()["items"]
    lab.redundancy_lab_estate.discover()
    deadline, left = time.monotonic() + WAIT_SECONDS, set()
    while time.monotonic() < deadline:
        after = api.get("/api/v1/changes", params={"object_type": "service_map", "object_id": shop["id"]}).json()["items"]
        left = {key.removeprefix("members.") for r in after[len(records):] for key, (old, new) in r["diff"].items()
                if key.startswith("members.") and new is None}
        if group["id"] in left:
            break
        time.sleep(0.2)
    assert {first.named("orders_api@app-1:8080")["id"], first.host("app-1")["id"], group["id"]} <= left
    assert api.get(f"/api/v1/cis/{group['id']}").status_code == 404
    assert state_of(api, [first.host("web-1")["id"]], shop["id"]) == "down"  # one instance left: no redundancy
