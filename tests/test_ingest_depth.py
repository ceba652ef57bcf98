"""A batch nested too deeply is a clear problem naming why, like the same depth sent to /api/v1/cis, never a 500.

The batch decoder (services/ingest/batch.py) reads the body with msgspec, which recurses once per
level: about 950 levels exhaust Python's stack. The CI API refuses the same body as malformed JSON.
"""

import pytest

PROBLEM = "application/problem+json"
ITEM = b'{"ref": "h", "class": "server", "name": "h", "identifiers": {"serial_number": "SN-1"}%s}'
RELATIONSHIP = b'{"source": "h", "target": "h2", "type": "runs_on"%s}'


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"1" + b"]" * levels


def _body(*, item=b"", relationship=b"", scope=b"") -> bytes:
    items = b", ".join([ITEM % item, ITEM.replace(b'"h"', b'"h2"').replace(b"SN-1", b"SN-2") % b""])
    return (b'{"source": "ssh", "run_id": "deep", "scope": {"subnets": ["10.0.0.0/24"]%s}, "items": [%s], '
            b'"relationships": [%s]}' % (scope, items, RELATIONSHIP % relationship))


def _post(api, raw: bytes):
    return api.post("/api/v1/ingest", content=raw, headers={"content-type": "application/json"}, as_="discovery")


@pytest.mark.parametrize("levels", [300, 951, 5000])
@pytest.mark.parametrize(("where", "field"), [("items", "items.0.attributes.d.0.0"),
                                              ("relationship attributes", "relationships.0.attributes.d.0.0"),
                                              ("scope", "scope.hosts.0.0")])
def test_a_value_nested_too_deeply_is_refused_naming_it(api, where, field, levels):
    deep = _deep(levels)
    raw = {"items": _body(item=b', "attributes": {"d": %s}' % deep),
           "relationship attributes": _body(relationship=b', "attributes": {"d": %s}' % deep),
           "scope": _body(scope=b', "hosts": %s' % deep)}[where]
    response = _post(api, raw)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "urn:karta:problem:invalid-input"
    [error] = problem["errors"]
    assert error["field"].startswith(field) and error["message"] == "nested deeper than 32 levels"
    assert problem["detail"] == f"{error['field']}: nested deeper than 32 levels."
    # The CI API says the same of the same value when its JSON parser can read it (beyond that, 400).
    cis = api.post("/api/v1/cis", content=b'{"class": "server", "name": "x", "attributes": {"d": %s}}' % deep,
                   headers={"content-type": "application/json"})
    if cis.status_code == 422:
        assert cis.json()["errors"][0]["message"] == error["message"]
    else:
        assert (cis.status_code, cis.json()["type"]) == (400, "urn:karta:problem:malformed-json")
    assert api.get("/api/v1/discovery/runs").json()["items"] == []
    assert api.get("/api/v1/changes?object_type=ci").json()["items"] == []


def test_the_same_batch_not_so_deep_applies(api):
    response = _post(api, _body(item=b', "attributes": {"d": %s}' % _deep(3)))
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["created"] == 2
