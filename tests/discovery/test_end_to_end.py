"""Discovery end to end, no mocks: the agent as cron runs it, a real Karta, answers read through the API.

Every round runs ``karta discover scan`` and then ``karta discover ssh`` (the console script, as
subprocesses, in the lab's management namespace, token and URL from the environment as a crontab
would set them). They push to a real ``karta serve`` (uvicorn) that binds this machine's end of the
lab's service link (lab.py: ``open_service_link``), with KARTA_STALE_AFTER_RUNS=2; that is plain http
to another address, which the agent refuses unless told ``--insecure``. After each round
the API's view is kept (CIs, relationships, change records, run records, impact of db-1), then:

round 1  first sight of the standard lab (lab_services.standard_hosts)
round 2  the same again: nothing may change
round 3  app-1 (ssh sees it, runs psql) and locked-1 (only nmap sees it) lose their cable
round 4  still down: the second complete run without them, so they must now be stale

The cables come back before any test asserts, so the session's lab is whole for test_lab.py.
ssh skips evil-1 (nmap still sees it): hostile hosts are test_lab.py's subject, a stable estate is this one's.
Runs once per database backend; PostgreSQL adds ~30 s, inside the budget, so both run.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database, tokens_for
from tests.discovery.conftest import REPO, lab_host_class
from tests.server import running_server

pytestmark = pytest.mark.lab

STALE_AFTER_RUNS = 2
SUBNET = "10.77.0.0/24"
KARTA = Path(sys.executable).with_name("karta")  # the console script cron would call
HOST_CLASSES = ("server", "virtual_machine")
TAKEN_DOWN = ("app-1", "locked-1")
RUN_ID = re.compile(r"run_id=(\S+)")  # in the agent's summary line

APPLICATIONS = {
    "web-1": {("web_server", "nginx@web-1:80"), ("application", "orders_api@web-1:8080")},
    "db-1": {("database", "postgresql@db-1:5432"), ("database", "redis@db-1:6379")},
    "app-1": {("application", "psql@app-1")},
}
DEPENDENCIES = {
    ("psql@app-1", "depends_on", "postgresql@db-1:5432", (("port", 5432),)),
    ("orders_api@web-1:8080", "depends_on", "redis@db-1:6379", (("port", 6379),)),
}


# ---- what the API said after one round -------------------------------------------------------------

@dataclass
class Round:
    number: int
    summaries: dict[str, str]  # source -> the agent's summary line (stderr)
    runs: dict[str, dict]  # source -> GET /api/v1/discovery/runs/{run_id}
    cis: dict[str, dict]  # id -> CI
    relationships: list[dict]
    changes: list[dict]  # change records written during this round
    impact_of_db: dict  # POST /api/v1/impact for the db-1 host
    addresses: dict[str, str] = field(default_factory=dict)  # lab host name -> address

    def label(self, ci_id: str) -> str:
        """Hosts by their lab name (their CI names differ by source), everything else by CI name."""
        ci = self.cis[ci_id]
        if ci["class"] in HOST_CLASSES:
            by_address = {address: name for name, address in self.addresses.items()}
            return by_address[ci["attributes"]["ip_address"][0]]
        return ci["name"]

    def host(self, lab_name: str) -> dict:
        (found,) = [ci for ci in self.cis.values() if ci["class"] in HOST_CLASSES and self.label(ci["id"]) == lab_name]
        return found

    def named(self, name: str) -> dict:
        (found,) = [ci for ci in self.cis.values() if ci["name"] == name]
        return found

    def edges(self) -> set[tuple]:
        return {(self.label(r["source"]), r["type"], self.label(r["target"]), tuple(sorted(r["attributes"].items())))
                for r in self.relationships}

    def stale(self) -> set[str]:
        return {self.label(ci["id"]) for ci in self.cis.values() if ci["status"] == "stale"}


class Estate:
    """Runs discovery rounds against the lab and keeps what the API said after each."""

    def __init__(self, lab, api: httpx.Client, agent_env: dict[str, str]) -> None:
        self.lab, self.api, self.agent_env = lab, api, agent_env
        self.rounds: list[Round] = []
        self.seq = 0

    def get(self, url: str, **params) -> dict:
        response = self.api.get(url, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def discover(self) -> Round:
        commands = {
            # The agent's own address is not a lab host; evil-1 is left to nmap (see the docstring).
            "nmap": ["scan", "--subnet", SUBNET, "--exclude", "10.77.0.1", "--insecure"],
            "ssh": ["ssh", "--targets", "10.77.0.11-13,10.77.0.15-17", "--user", "root",
                    "--key", str(self.lab.key_path), "--known-hosts", str(self.lab.known_hosts),
                    "--connect-timeout", "2", "--command-timeout", "30", "--insecure"],
        }
        summaries = {}
        for source, args in commands.items():
            result = self.lab.run([str(KARTA), "discover", *args], env=self.agent_env, timeout=120)
            assert result.returncode == 0, result.stderr
            summaries[source] = result.stderr.strip().splitlines()[-1]
            assert "pushed=1 request(s)" in summaries[source] and "ingest_errors" not in summaries[source], \
                summaries[source]
        runs = {source: self.get(f"/api/v1/discovery/runs/{RUN_ID.search(line).group(1)}")
                for source, line in summaries.items()}
        cis = self.get("/api/v1/cis", limit=1000)
        relationships = self.get("/api/v1/relationships", limit=1000)
        assert cis["next_cursor"] is None and relationships["next_cursor"] is None
        changes = self.get("/api/v1/changes", since=self.seq, limit=10000)
        self.seq = changes["last_seq"]
        snapshot = Round(len(self.rounds) + 1, summaries, runs, {ci["id"]: ci for ci in cis["items"]},
                         relationships["items"], changes["items"], {},
                         {name: host.address for name, host in self.lab.hosts.items()})
        impact = self.api.post("/api/v1/impact", json={"ci_ids": [snapshot.host("db-1")["id"]]})
        assert impact.status_code == 200, impact.text
        snapshot.impact_of_db = impact.json()
        self.rounds.append(snapshot)
        return snapshot


# ---- fixtures ---------------------------------------------------------------------------------------

@contextmanager
def karta_for_lab(lab, database_url: str, *, scope: str = "admin", env: dict[str, str] | None = None
                  ) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A real `karta serve` on this machine's end of the lab's service link: (an API client with a
    token of `scope`, the environment a crontab gives the agent: its URL and discovery token)."""
    assert KARTA.exists(), f"the karta console script is not installed next to {sys.executable}"
    secrets = tokens_for(database_url)
    server_address, _ = lab.open_service_link()
    with running_server(database_url, host=server_address, env=env) as base, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets[scope]}"},
                         timeout=30, trust_env=False) as api:
        yield api, {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
                    "PYTHONPATH": str(REPO), "KARTA_API_URL": base, "KARTA_TOKEN": secrets["discovery"]}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def karta_database(request, tmp_path_factory) -> Iterator[str]:
    """Like tests/conftest.py's database_url, but one database for the module: the rounds build on each other."""
    yield from fresh_database(request, request.param, tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def estate(lab, karta_database) -> Iterator[Estate]:
    with karta_for_lab(lab, karta_database, scope="read",
                       env={"KARTA_STALE_AFTER_RUNS": str(STALE_AFTER_RUNS)}) as (api, agent_env):
        scenario = Estate(lab, api, agent_env)
        scenario.discover()
        scenario.discover()
        try:
            for name in TAKEN_DOWN:
                lab.link_up(name, False)
            for _ in range(STALE_AFTER_RUNS):
                scenario.discover()
        finally:
            for name in TAKEN_DOWN:
                lab.link_up(name, True)
            lab.wait_for_tcp([(lab.hosts[name].address, 22) for name in TAKEN_DOWN], timeout=30)
        yield scenario


# ---- 1. what lands -----------------------------------------------------------------------------------

def test_each_lab_host_is_one_ci_whoever_saw_it(estate):
    first = estate.rounds[0]
    cls = lab_host_class()
    hosts = {first.label(ci["id"]): (ci["class"], ci["name"]) for ci in first.cis.values()
             if ci["class"] in HOST_CLASSES}
    assert hosts == {  # ssh's class and name win over nmap's where both saw the host
        "web-1": (cls, "web-1"), "db-1": (cls, "db-1"), "app-1": (cls, "app-1"),
        "evil-1": ("server", "evil-1.lab"), "flood-1": ("server", "flood-1.lab"),
        "locked-1": ("server", "locked-1.lab"), "stranger-1": ("server", "stranger-1.lab"),
    }
    assert {(ci["class"], ci["name"]) for ci in first.cis.values() if ci["class"] not in HOST_CLASSES} == {
        *(("ip_address", f"10.77.0.{n}") for n in range(11, 18)), *set().union(*APPLICATIONS.values())}
    assert {ci["status"] for ci in first.cis.values()} == {"active"}
    # nmap came first and created the hosts; ssh found each of its three in them and created only applications.
    assert first.runs["nmap"]["counts"] == {"created": 14, "updated": 0, "unchanged": 0, "conflicts": 0,
                                            "errors": 0, "relationships_created": 7, "stale": 0,
                                            "ended_relationships": 0}
    assert first.runs["ssh"]["counts"] == {"created": 5, "updated": 6, "unchanged": 0, "conflicts": 0,
                                           "errors": 0, "relationships_created": 7, "stale": 0,
                                           "ended_relationships": 0}
    assert {(run["source"], run["complete"], run["actor"]) for run in first.runs.values()} == {
        ("nmap", True, "discovery-bot"), ("ssh", True, "discovery-bot")}
    for lab_name in ("web-1", "db-1", "app-1"):
        detail = estate.get(f"/api/v1/cis/{first.host(lab_name)['id']}")
        assert {stamp["source"] for stamp in detail["provenance"].values()} == {"nmap", "ssh"}, lab_name


def test_applications_run_on_their_hosts_and_depend_on_what_they_connect_to(estate):
    first = estate.rounds[0]
    applications: dict[str, set] = {}
    for app, kind, host, _ in first.edges():
        if kind == "runs_on":
            applications.setdefault(host, set()).add((first.named(app)["class"], app))
    assert applications == APPLICATIONS
    assert first.edges() == DEPENDENCIES | {
        (app, "runs_on", host, ()) for host, apps in APPLICATIONS.items() for _, app in apps} | {
        (host, "contains", address, ()) for host, address in first.addresses.items()}


# ---- 2. idempotence ----------------------------------------------------------------------------------

def test_a_second_identical_run_creates_ends_and_ages_nothing(estate):
    first, second = estate.rounds[0], estate.rounds[1]
    assert {i: (c["class"], c["name"], c["status"], c["first_seen"]) for i, c in second.cis.items()} == {
        i: (c["class"], c["name"], c["status"], c["first_seen"]) for i, c in first.cis.items()}
    assert {r["id"]: (r["source"], r["type"], r["target"], r["attributes"]) for r in second.relationships} == {
        r["id"]: (r["source"], r["type"], r["target"], r["attributes"]) for r in first.relationships}
    for source, run in second.runs.items():
        counts = run["counts"]
        assert (counts["created"], counts["conflicts"], counts["errors"], counts["relationships_created"],
                counts["stale"], counts["ended_relationships"]) == (0, 0, 0, 0, 0, 0), source
        assert (counts["updated"], counts["unchanged"]) == (0, {"nmap": 14, "ssh": 11}[source]), source


def test_a_second_identical_run_writes_no_change_record(estate):
    assert estate.rounds[1].changes == []


# ---- 3. staleness ------------------------------------------------------------------------------------

def test_a_host_only_nmap_sees_goes_stale_after_the_configured_runs(estate):
    before, first_miss, second_miss = estate.rounds[1], estate.rounds[2], estate.rounds[3]
    for down in (first_miss, second_miss):  # the agent saw the cuts: nmap finds 5 of 7, ssh cannot reach app-1
        assert "hosts=5 " in down.summaries["nmap"] and "10.77.0.13 unreachable" in down.summaries["ssh"]
    cable = ("locked-1", "contains", "10.77.0.16", ())
    assert cable in before.edges()
    # Its relationship ends with the first complete run that no longer reports it, with a change record.
    assert cable not in first_miss.edges()
    (cable_id,) = [r["id"] for r in before.relationships if before.label(r["source"]) == "locked-1"]
    assert ("relationship", cable_id, "delete") in {
        (r["object_type"], r["object_id"], r["action"]) for r in first_miss.changes}
    assert first_miss.runs["nmap"]["counts"]["ended_relationships"] == 1
    # The CIs go stale only at the KARTA_STALE_AFTER_RUNS-th complete run without them.
    assert {"locked-1", "10.77.0.16"}.isdisjoint(first_miss.stale())
    assert {"locked-1", "10.77.0.16"} <= second_miss.stale()
    assert first_miss.runs["nmap"]["counts"]["stale"] == 0 and second_miss.runs["nmap"]["counts"]["stale"] == 2
    became_stale = {second_miss.label(r["object_id"]) for r in second_miss.changes
                    if r["object_type"] == "ci" and r["diff"].get("status") == ["active", "stale"]}
    assert {"locked-1", "10.77.0.16"} <= became_stale
    # Nothing that is still up went stale.
    assert second_miss.stale() <= {"locked-1", "10.77.0.16", "app-1", "psql@app-1", "10.77.0.13"}


def test_a_host_ssh_logged_into_goes_stale_and_its_relationships_end(estate):
    before, first_miss, second_miss = estate.rounds[1], estate.rounds[2], estate.rounds[3]
    app1_edges = {("psql@app-1", "runs_on", "app-1", ()), ("app-1", "contains", "10.77.0.13", ()),
                  ("psql@app-1", "depends_on", "postgresql@db-1:5432", (("port", 5432),))}
    assert app1_edges <= before.edges()
    assert first_miss.edges() == before.edges() - app1_edges - {("locked-1", "contains", "10.77.0.16", ())}
    assert first_miss.runs["ssh"]["counts"]["ended_relationships"] == 3
    assert first_miss.stale() == set()
    assert second_miss.stale() == {"locked-1", "10.77.0.16", "app-1", "psql@app-1", "10.77.0.13"}


# ---- 4. impact on discovered data --------------------------------------------------------------------

def test_impact_of_the_database_host_follows_the_discovered_edges(estate):
    second = estate.rounds[1]
    answer = second.impact_of_db
    assert [entry["id"] for entry in answer["failed"]] == [second.host("db-1")["id"]]
    assert {(entry["name"], entry["state"], entry["distance"]) for entry in answer["impacted"]} == {
        ("postgresql@db-1:5432", "down", 1), ("redis@db-1:6379", "down", 1), ("10.77.0.12", "down", 1),
        ("psql@app-1", "down", 2), ("orders_api@web-1:8080", "down", 2)}
    psql = next(entry for entry in answer["impacted"] if entry["name"] == "psql@app-1")
    assert psql["path"] == [second.host("db-1")["id"], second.named("postgresql@db-1:5432")["id"],
                            second.named("psql@app-1")["id"]]
