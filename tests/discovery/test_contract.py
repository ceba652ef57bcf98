"""The batch format's limits are one definition (app/core/batch_contract.py) that the service and the
agent both import, and the agent's splitter never builds a request the service's limits refuse."""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys

import pytest
from annotated_types import MaxLen

import app.api.ingest as service
from app.core import batch_contract as contract
from app.models.ingest import IngestBatch, IngestItem, IngestRelationship, IngestScope
from discovery import batch as agent
from discovery.push import IngestClient
from discovery.targets import MAX_TARGETS
from tests.discovery.conftest import REPO


def max_length(model, name: str) -> int:
    (limit,) = [m.max_length for m in model.model_fields[name].metadata if isinstance(m, MaxLen)]
    return limit


def test_both_sides_use_the_one_definition():
    # The service's 413 checks and the agent's splitter read the same objects.
    assert (service.MAX_ITEMS, service.MAX_RELATIONSHIPS) == (contract.MAX_ITEMS, contract.MAX_RELATIONSHIPS)
    assert agent.split_batch.__defaults__ == (contract.MAX_ITEMS, contract.MAX_RELATIONSHIPS)
    assert IngestClient.push.__kwdefaults__ == {"limit": contract.MAX_ITEMS}


def test_no_limit_of_the_contract_is_defined_anywhere_else():
    names = {name for name in vars(contract) if name.isupper()}
    definitions = []
    for path in sorted([*(REPO / "app").rglob("*.py"), *(REPO / "discovery").rglob("*.py")]):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            definitions += [(str(path.relative_to(REPO)), t.id) for t in targets
                            if isinstance(t, ast.Name) and t.id in names]
    assert definitions == [("app/core/batch_contract.py", name) for name in sorted(names, key=list(vars(contract)).index)]


def test_the_services_field_limits_agree_with_the_contract():
    # These Field(max_length=...) lines of app/models/ingest.py do not import the contract yet: held equal here.
    assert max_length(IngestItem, "name") == contract.MAX_NAME
    assert max_length(IngestItem, "ref") == contract.MAX_REF
    assert max_length(IngestRelationship, "source") == max_length(IngestRelationship, "target") == contract.MAX_REF
    assert max_length(IngestBatch, "run_id") == contract.MAX_RUN_ID
    assert max_length(IngestScope, "subnets") == contract.MAX_SCOPE_SUBNETS
    assert max_length(IngestScope, "hosts") == contract.MAX_SCOPE_HOSTS
    assert MAX_TARGETS <= contract.MAX_SCOPE_HOSTS  # an ssh run's scope is its targets


@pytest.mark.parametrize("module", ["discovery.cli", "app.cli"])  # the agent alone, and as `karta discover`
def test_the_agent_starts_without_the_service_stack(module):
    modules = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print(sorted(sys.modules))"],
        capture_output=True, text=True, cwd=REPO, check=True, timeout=60).stdout
    loaded = set(json.loads(modules.replace("'", '"')))
    assert "app.core.batch_contract" in loaded
    heavy = {"fastapi", "sqlmodel", "sqlalchemy", "starlette", "pydantic", "app.models", "app.api", "app.services"}
    assert heavy & loaded == set()


def random_batch(rng: random.Random) -> dict:
    """Hosts with addresses and applications, depends_on edges between applications (some to CIs the
    service already holds, by id), the way build_ssh_batch shapes a run."""
    items, rels, apps = [], [], []
    for h in range(rng.randint(1, 40)):
        items.append({"ref": f"h{h}", "class": "server", "name": f"h{h}", "identifiers": {"serial_number": f"S{h}"}})
        for kind, count in (("ip", rng.randint(0, 3)), ("a", rng.randint(0, 6))):
            for n in range(count):
                ref = f"{kind}{h}.{n}"
                items.append({"ref": ref, "class": "application", "name": ref, "identifiers": {"instance_key": ref}})
                rels.append({"source": f"h{h}", "target": ref, "type": "contains"} if kind == "ip" else
                            {"source": ref, "target": f"h{h}", "type": "runs_on"})
                apps += [ref] if kind == "a" else []
    for _ in range(rng.randint(0, 60) if apps else 0):
        target = rng.choice(apps) if rng.random() < 0.9 else "0b0f6a52-6f4c-4f57-9d0c-5d1f1f6c2a11"
        rels.append({"source": rng.choice(apps), "target": target, "type": "depends_on", "attributes": {}})
    return {"source": "ssh", "run_id": "r", "scope": {"subnets": [], "hosts": ["10.0.0.1"]}, "complete": True,
            "items": items, "relationships": rels}


def assert_acceptable(batch: dict, requests: list[dict], limit: int, rel_limit: int) -> None:
    """What the service checks of each request, and what a run needs of all of them together."""
    by_ref = {item["ref"]: item for item in batch["items"]}
    for request in requests:
        assert len(request["items"]) <= limit and len(request["relationships"]) <= rel_limit
        IngestBatch.model_validate(request)  # the service's own model of a request
        refs = [item["ref"] for item in request["items"]]
        assert len(refs) == len(set(refs))
        for rel in request["relationships"]:  # a ref must be an item of the same request
            assert all(end in refs for end in (rel["source"], rel["target"]) if end in by_ref)
        assert (request["run_id"], request["scope"]) == (batch["run_id"], batch["scope"])
    assert [r["complete"] for r in requests] == [False] * (len(requests) - 1) + [True]
    assert {item["ref"] for r in requests for item in r["items"]} == set(by_ref)
    sent = sorted(json.dumps(rel, sort_keys=True) for r in requests for rel in r["relationships"])
    assert sent == sorted(json.dumps(rel, sort_keys=True) for rel in batch["relationships"])


def test_the_splitter_never_makes_a_request_the_service_refuses():
    rng = random.Random(20261202)
    for _ in range(300):
        batch, limit, rel_limit = random_batch(rng), rng.randint(2, 30), rng.randint(1, 20)
        assert_acceptable(batch, agent.split_batch(batch, limit, rel_limit), limit, rel_limit)


def test_at_the_service_limits_themselves():
    # One run past both real limits: 2,500 hosts of 5 items, 45,000 edges between applications.
    rng = random.Random(7)
    batch = {"source": "ssh", "run_id": "r", "scope": {"subnets": [], "hosts": []}, "complete": True,
             "items": [], "relationships": []}
    for h in range(2_500):
        batch["items"].append({"ref": f"h{h}", "class": "server", "name": f"h{h}", "identifiers": {}})
        for a in range(4):
            batch["items"].append({"ref": f"a{h}.{a}", "class": "application", "name": f"a{h}.{a}", "identifiers": {}})
            batch["relationships"].append({"source": f"a{h}.{a}", "target": f"h{h}", "type": "runs_on"})
    for _ in range(45_000):
        batch["relationships"].append({"source": f"a{rng.randrange(2_500)}.{rng.randrange(4)}",
                                       "target": f"a{rng.randrange(2_500)}.{rng.randrange(4)}", "type": "depends_on"})
    assert len(batch["items"]) > service.MAX_ITEMS and len(batch["relationships"]) > service.MAX_RELATIONSHIPS
    requests = agent.split_batch(batch)
    assert len(requests) > 1
    assert_acceptable(batch, requests, service.MAX_ITEMS, service.MAX_RELATIONSHIPS)


def test_a_scope_too_large_for_any_request_is_refused_before_sending():
    batch = {**random_batch(random.Random(1)), "scope": {"subnets": [], "hosts": ["h"] * (contract.MAX_SCOPE_HOSTS + 1)}}
    with pytest.raises(ValueError, match="a run's scope holds at most"):
        agent.split_batch(batch)
