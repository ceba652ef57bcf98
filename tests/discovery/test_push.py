"""Pushing to the ingest API: the agent's IngestClient against the real service (``karta serve`` on a
real database, both backends), and against a stand-in only for the transport failures the real one
cannot be made to produce on demand (503, a late answer, nobody listening).
"""

from __future__ import annotations

import pytest

from app.core.batch_contract import MAX_ITEMS
from discovery.push import IngestClient, PushError
from tests.discovery.fake_ingest import FakeIngest

RUN = "6f1c1c3e-5a4b-4f7e-9d55-3a3b2f1e0c01"


def estate_batch(hosts: int, apps_per_host: int, edges: list[tuple[int, int]], *, run_id: str = RUN) -> dict:
    """Hosts with applications running on them, and depends_on edges between the first applications."""
    items, rels = [], []
    for h in range(hosts):
        items.append({"ref": f"h{h}", "class": "server", "name": f"h{h}", "identifiers": {"serial_number": f"SN-{h}"}})
        for a in range(apps_per_host):
            items.append({"ref": f"a{h}.{a}", "class": "application", "name": f"a{h}.{a}",
                          "identifiers": {"instance_key": f"SN-{h}/app{a}/80"}})
            rels.append({"source": f"a{h}.{a}", "target": f"h{h}", "type": "runs_on", "attributes": {}})
    for source, target in edges:
        rels.append({"source": f"a{source}.0", "target": f"a{target}.0", "type": "depends_on",
                     "attributes": {"port": 5432}})
    return {"source": "ssh", "run_id": run_id, "scope": {"subnets": [], "hosts": [f"h{h}" for h in range(hosts)]},
            "complete": True, "items": items, "relationships": rels}


def everything(api, path: str) -> list[dict]:
    page = api.get(path, params={"limit": 1000}).json()
    assert page["next_cursor"] is None
    return page["items"]


def test_a_split_run_lands_whole_and_the_report_adds_up_the_answers(api, karta_url):
    batch = estate_batch(30, 9, [(0, 29)])
    with IngestClient(karta_url, api.secrets["discovery"]) as client:
        report = client.push(batch, limit=100)
    # three full requests of ten hosts each, then one for the edge whose ends are in full requests
    assert report.requests == 4
    run = api.get(f"/api/v1/discovery/runs/{RUN}").json()
    assert (run["batches"], run["complete"], run["actor"]) == (4, True, "discovery-bot")
    cis = {ci["id"]: ci["name"] for ci in everything(api, "/api/v1/cis")}
    assert len(cis) == 300  # the two ends copied into the fourth request are the same CIs, not new ones
    assert {ref: cis[ci_id] for ref, ci_id in report.refs.items()} == {i["ref"]: i["name"] for i in batch["items"]}
    # Summed over the four answers: the copies were found again (unchanged), nothing failed.
    assert report.counts == {"created": 300, "updated": 0, "unchanged": 2, "conflicts": 0, "errors": 0}
    assert report.by_class == {"application": {"created": 270, "unchanged": 2}, "server": {"created": 30}}
    assert report.relationships == {"created": 271, "updated": 0, "unchanged": 0, "errors": 0}
    assert (report.errors, report.conflicts, report.stale, report.ended_relationships) == ([], [], [], 0)
    assert len(everything(api, "/api/v1/relationships")) == 271

    # The same run again, as cron sends it every hour: nothing new.
    again = estate_batch(30, 9, [(0, 29)], run_id=RUN + "-2")
    with IngestClient(karta_url, api.secrets["discovery"]) as client:
        second = client.push(again, limit=100)
    assert (second.counts["created"], second.counts["updated"], second.relationships["created"]) == (0, 0, 0)
    assert second.refs == report.refs


def test_what_the_service_reports_per_item_comes_back_in_the_report(api, karta_url):
    batch = estate_batch(2, 1, [(0, 1)])
    batch["items"].append({"ref": "x", "class": "no_such_class", "name": "x", "identifiers": {"serial_number": "X"}})
    with IngestClient(karta_url, api.secrets["discovery"]) as client:
        report = client.push(batch)
    assert report.counts["created"] == 4 and report.counts["errors"] == 1
    assert [error["ref"] for error in report.errors] == ["x"]


def test_a_refusal_carries_the_problem_detail_but_never_the_token(api, karta_url):
    bad_source = {**estate_batch(1, 1, []), "source": "Not A Source"}
    with IngestClient(karta_url, api.secrets["discovery"]) as client, pytest.raises(PushError) as refused:
        client.push(bad_source)
    assert str(refused.value).startswith("ingest refused the batch: HTTP 422 ")
    assert "source" in str(refused.value)
    with IngestClient(karta_url, "karta_wrong-token") as client, pytest.raises(PushError) as unauthorized:
        client.push(estate_batch(1, 1, []))
    assert "HTTP 401" in str(unauthorized.value) and "wrong-token" not in str(unauthorized.value)
    with IngestClient(karta_url, api.secrets["read"]) as client, pytest.raises(PushError) as forbidden:
        client.push(estate_batch(1, 1, []))
    assert "HTTP 403" in str(forbidden.value)
    assert api.get("/api/v1/cis").json()["items"] == []


def test_a_run_larger_than_one_request_allows_is_split_to_fit_the_service(api, karta_url):
    """The agent's splitter against the service's real limit: what it sends, the service takes."""
    addresses = [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(MAX_ITEMS + 1)]
    batch = {"source": "nmap", "run_id": RUN, "scope": {"subnets": ["10.0.0.0/15"], "hosts": []}, "complete": True,
             "items": [{"ref": f"ip{n}", "class": "ip_address", "name": address, "identifiers": {"address": address}}
                       for n, address in enumerate(addresses)], "relationships": []}
    with IngestClient(karta_url, api.secrets["discovery"], retries=0) as client:
        with pytest.raises(PushError, match="HTTP 413"):
            client.push(batch, limit=MAX_ITEMS + 1)  # one request over the limit: refused whole
        report = client.push(batch)
    assert report.requests == 2 and report.counts["created"] == MAX_ITEMS + 1 and report.errors == []


def test_503_is_retried_a_bounded_number_of_times():
    batch = estate_batch(1, 1, [])
    with FakeIngest(fail_first=2) as server:
        with IngestClient(server.url, "t", retries=3, backoff=0.01) as client:
            report = client.push(batch)
        assert server.attempts == 3
    assert report.requests == 1 and set(report.refs) == {"h0", "a0.0"} and report.counts["created"] == 2
    with FakeIngest(fail_first=10) as server:
        with IngestClient(server.url, "t", retries=2, backoff=0.01) as client, pytest.raises(PushError) as exc:
            client.push(batch)
        assert server.attempts == 3
    assert "HTTP 503 Service Unavailable" in str(exc.value)


def test_a_late_answer_is_retried_then_a_push_error():
    with FakeIngest(delay=2) as server:
        with IngestClient(server.url, "t", timeout=0.2, retries=1, backoff=0.01) as client, \
                pytest.raises(PushError) as exc:
            client.push(estate_batch(1, 1, []))
        assert server.attempts == 2
    assert str(exc.value) == f"cannot reach {server.url}/api/v1/ingest: ReadTimeout"


def test_an_unreachable_service_is_a_push_error():
    with IngestClient("http://127.0.0.1:9", "t", retries=1, backoff=0.01) as client, pytest.raises(PushError) as exc:
        client.push(estate_batch(1, 1, []))
    assert "cannot reach http://127.0.0.1:9/api/v1/ingest" in str(exc.value)
    with pytest.raises(ValueError):
        IngestClient("ftp://karta", "t")


def test_the_token_never_goes_to_a_proxy_on_plain_http_to_this_machine(monkeypatch):
    """HTTP_PROXY set in cron's environment: plain http to loopback (allowed because the token stays on
    this machine) must not be sent through it."""
    import socket

    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(5)
        proxy.settimeout(0.2)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with FakeIngest() as server:
            url = server.url.replace("127.0.0.1", "localhost")
            with IngestClient(url, "karta_secret", retries=0) as client:
                report = client.push(estate_batch(1, 1, []))
            assert server.attempts == 1 and report.counts["created"] == 2
        with pytest.raises(TimeoutError):
            proxy.accept()  # nobody came through the proxy
