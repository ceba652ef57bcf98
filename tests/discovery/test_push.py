"""Pushing to the ingest API over real HTTP (a stand-in server on loopback)."""

from __future__ import annotations

import pytest

from discovery.push import IngestClient, PushError
from tests.discovery.fake_ingest import FakeIngest
from tests.discovery.test_batch import RUN, _big_batch

TOKEN = "s3cr3t-discovery-token"


def test_push_splits_sends_the_token_and_collects_refs():
    batch = _big_batch(30, 9, [(0, 29)])
    with FakeIngest(token=TOKEN) as server, IngestClient(server.url, TOKEN) as client:
        report = client.push(batch, limit=100)
    # three full requests of ten hosts each, then one for the edge whose ends are in full requests
    assert report.requests == len(server.requests) == 4
    assert [r["complete"] for r in server.requests] == [False, False, False, True]
    assert [len(r["items"]) for r in server.requests] == [100, 100, 100, 2]
    assert {r["run_id"] for r in server.requests} == {RUN}
    assert set(report.refs) == {i["ref"] for i in batch["items"]}
    assert report.counts["items"] == sum(len(r["items"]) for r in server.requests)


def test_503_is_retried_a_bounded_number_of_times():
    batch = _big_batch(1, 1, [])
    with FakeIngest(token=TOKEN, fail_first=2) as server:
        with IngestClient(server.url, TOKEN, retries=3, backoff=0.01) as client:
            assert client.push(batch).requests == 1
        assert server.attempts == 3
    with FakeIngest(token=TOKEN, fail_first=10) as server:
        with IngestClient(server.url, TOKEN, retries=2, backoff=0.01) as client, pytest.raises(PushError):
            client.push(batch)
        assert server.attempts == 3


def test_a_refusal_carries_the_problem_detail_but_never_the_token():
    batch = _big_batch(1, 1, [])
    with FakeIngest(token=TOKEN, status=422) as server, IngestClient(server.url, TOKEN) as client:
        with pytest.raises(PushError) as refused:
            client.push(batch)
    assert "HTTP 422 Unprocessable: items[0]: bad class" in str(refused.value)
    with FakeIngest(token=TOKEN) as server, IngestClient(server.url, "wrong-token") as client:
        with pytest.raises(PushError) as unauthorized:
            client.push(batch)
    assert "HTTP 401" in str(unauthorized.value) and "wrong-token" not in str(unauthorized.value)


def test_an_unreachable_service_is_a_push_error():
    with IngestClient("http://127.0.0.1:9", TOKEN, retries=1, backoff=0.01) as client, pytest.raises(PushError) as exc:
        client.push(_big_batch(1, 1, []))
    assert "cannot reach http://127.0.0.1:9/api/v1/ingest" in str(exc.value)
    with pytest.raises(ValueError):
        IngestClient("ftp://karta", TOKEN)
