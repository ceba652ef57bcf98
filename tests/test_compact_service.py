"""The service answering impact questions from the compiled view (graph.compact) gives the answers the
Python loop gives: two apps on one database, one with the view built at any size, one without it,
asked the same questions (impact, blast radius, single points of failure, neighborhoods, the Ansible
inventory's service groups) before and after writes (read into the view's overlay by the change feed)."""

import random
import time

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.conftest import Api, tokens_for
from tests.integrations.metrics_text import samples, value
from tests.test_impact_api import build_shop


def compacted(app) -> bool:
    with app.state.live_graph.reading() as graph:
        return graph.compacted


@pytest.fixture
def pair(database_url):
    apps = [create_app(Settings(database_url=database_url, token_cache_seconds=0.3, graph_compact_min_cis=0)),
            create_app(Settings(database_url=database_url, token_cache_seconds=0.3, graph_compact=False))]
    secrets = tokens_for(database_url)
    try:
        with TestClient(apps[0], raise_server_exceptions=False) as one, \
                TestClient(apps[1], raise_server_exceptions=False) as other:
            yield apps, Api(one, secrets), Api(other, secrets)
    finally:
        for app in apps:
            app.state.engine.dispose()


def test_the_compiled_view_answers_as_the_python_loop(pair):
    (compiled_app, python_app), compiled, python = pair
    shop = build_shop(lambda c, n, f: compiled.create_ci(c, n, **f)["id"], lambda s, r, t: compiled.relate(s, r, t))
    rng = random.Random(5)
    names = sorted(shop)

    def same_answers(rounds: int) -> None:
        for _ in range(rounds):
            failed = [shop[name] for name in rng.sample(names, rng.randint(1, 3))]
            for path, body in (("/api/v1/impact", {"ci_ids": failed}),
                               ("/api/v1/impact", {"ci_ids": failed, "max_depth": 1}),
                               ("/api/v1/impact", {"ci_ids": failed, "types": ["runs_on", "member_of"]}),
                               ("/api/v1/blast-radius", {"failed": failed})):
                got, want = compiled.post(path, json=body), python.post(path, json=body)
                assert got.status_code == want.status_code == 200, (got.text, want.text)
                assert got.json() == want.json(), body
            # Single points of failure, neighborhoods and the inventory's service groups: walked compiled too.
            paths = ["/api/v1/integrations/ansible/inventory"]
            for name in rng.sample(names, 2):
                ci = shop[name]
                paths += [f"/api/v1/cis/{ci}/spof",
                          f"/api/v1/cis/{ci}/neighborhood?depth={rng.randint(0, 3)}"
                          f"&direction={rng.choice(['up', 'down', 'both'])}",
                          f"/api/v1/cis/{ci}/neighborhood?depth=2&types=runs_on&types=member_of"]
            for path in paths:
                got, want = compiled.get(path), python.get(path)
                assert got.status_code == want.status_code == 200, (got.text, want.text)
                assert got.json() == want.json(), path

    compiled.post("/api/v1/impact", json={"ci_ids": [shop["web1"]]})  # the graph is loaded: the view follows
    deadline = time.monotonic() + 60
    while not compacted(compiled_app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert compacted(compiled_app), "the compiled view was not built within 60 s"
    assert not compacted(python_app)
    # The answer the documentation gives, from the compiled loop: two of three web servers take the shop down.
    answer = compiled.post("/api/v1/blast-radius", json={"failed": [shop["web1"], shop["web2"]]}).json()
    assert {s["name"]: s["state"] for s in answer["services"]} == {"shop": "down"}
    same_answers(8)
    # Written after the view was built: read through its overlay, as the change feed brings them.
    extra = compiled.create_ci("application", "extra", owner="team-x")["id"]
    compiled.relate(extra, "depends_on", shop["webc"])
    compiled.relate(extra, "runs_on", shop["dbhost2"])
    shop["extra"] = extra
    names = sorted(shop)
    web3_link = next(r for r in compiled.get(f"/api/v1/relationships?source_id={shop['web3']}").json()["items"]
                     if r["type"] == "member_of")
    assert compiled.delete(f"/api/v1/relationships/{web3_link['id']}").status_code == 204
    compiled.patch(f"/api/v1/cis/{shop['webc']}", json={"attributes": {"min_members": 1}})
    same_answers(8)
    assert compacted(compiled_app)
    # /metrics says which loop answers, and how many CIs the overlay holds (the four changed above at least).
    found = samples(compiled.get("/metrics", as_="read").text)
    assert value(found, "karta_graph_compact") == 1 and value(found, "karta_graph_compact_overlay_rows") >= 4
    assert value(samples(python.get("/metrics", as_="read").text), "karta_graph_compact") == 0
