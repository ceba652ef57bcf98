"""A small discovered estate for the Prometheus tests: hosts with and without addresses, services
reaching them through applications and a cluster, and hostile names and owners."""

from tests.conftest import new_id

HOSTILE_OWNER = 'evil",owner="x"\n<script>alert(1)</script>'
HOSTILE_SERVICE = 'check,out%"}'


def ingest_estate(api) -> dict[str, str]:
    """Ingest the estate; the CI ids by ref."""
    host = {"class": "server"}
    items = [
        {**host, "ref": "web", "name": "web-1", "environment": "prod", "owner": "team-web",
         "identifiers": {"fqdn": "web-1.example.com", "ip_address": ["10.0.0.5", "10.0.0.6"]},
         "attributes": {"os_name": "debian"}},
        {"ref": "vm", "class": "virtual_machine", "name": "vm-7", "environment": "prod", "owner": HOSTILE_OWNER,
         "identifiers": {"ip_address": ["fe80::1", "2001:db8::7"], "machine_id": "5f4dcc3b5aa765d61d8327deb882cf99"}},
        {**host, "ref": "db", "name": "db-1", "environment": "staging",
         "identifiers": {"fqdn": "db-1.example.com", "serial_number": "SN-DB-1"}},
        {**host, "ref": "bare", "name": "bare", "identifiers": {"serial_number": "SN-BARE"}},
        {"ref": "sw", "class": "network_device", "name": "sw-1", "identifiers": {"ip_address": ["10.0.0.1"],
                                                                                "serial_number": "SN-SW"}},
        {"ref": "app1", "class": "application", "name": "shop-app", "identifiers": {"instance_key": "web/shop/80"}},
        {"ref": "app2", "class": "application", "name": "reports-app", "identifiers": {"instance_key": "c/rep/80"}},
        {"ref": "cluster", "class": "cluster", "name": "c1", "identifiers": {"cluster_id": "c1"},
         "attributes": {"min_members": 1}},
        {"ref": "shop", "class": "service", "name": "shop", "identifiers": {"service_id": "S-1"}},
        {"ref": "checkout", "class": "service", "name": HOSTILE_SERVICE, "identifiers": {"service_id": "S-2"}},
        {"ref": "reports", "class": "service", "name": "reports", "identifiers": {"service_id": "S-3"}},
    ]
    relationships = [
        {"source": "app1", "target": "web", "type": "runs_on"},
        {"source": "shop", "target": "app1", "type": "depends_on"},
        {"source": "checkout", "target": "app1", "type": "depends_on"},
        {"source": "vm", "target": "cluster", "type": "member_of"},
        {"source": "db", "target": "cluster", "type": "member_of"},
        {"source": "app2", "target": "cluster", "type": "runs_on"},
        {"source": "reports", "target": "app2", "type": "depends_on"},
    ]
    response = api.post("/api/v1/ingest", json={"source": "ssh", "run_id": f"estate-{new_id()}", "items": items,
                                                 "relationships": relationships})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] == [] and body["relationships"]["created"] == len(relationships), response.text
    return body["refs"]


def expected_targets(refs: dict[str, str], port: int = 9100) -> list[dict]:
    """What the targets endpoint answers for the estate by default (servers, by IP first)."""
    return [
        {"targets": [f"db-1.example.com:{port}"],
         "labels": {"cmdb_ci": refs["db"], "cmdb_name": "db-1", "ci_class": "server", "environment": "staging",
                    "owner": "", "services": "reports"}},
        {"targets": [f"[2001:db8::7]:{port}"],
         "labels": {"cmdb_ci": refs["vm"], "cmdb_name": "vm-7", "ci_class": "virtual_machine",
                    "environment": "prod", "owner": HOSTILE_OWNER, "services": "reports"}},
        {"targets": [f"10.0.0.5:{port}"],
         "labels": {"cmdb_ci": refs["web"], "cmdb_name": "web-1", "ci_class": "server", "environment": "prod",
                    "owner": "team-web", "services": "check%2Cout%25\"},shop"}},
    ]
