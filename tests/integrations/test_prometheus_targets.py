"""GET /api/v1/integrations/prometheus/targets: Prometheus http_sd target groups, on both databases."""

import pytest

from tests.integrations.estate import expected_targets, ingest_estate

URL = "/api/v1/integrations/prometheus/targets"


def test_every_host_with_an_address_its_labels_and_the_services_it_serves(api):
    refs = ingest_estate(api)
    response = api.get(URL, as_="read")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected_targets(refs)  # 'bare' has no address; sw-1 is not a server


def test_port_address_preference_and_filters(api):
    refs = ingest_estate(api)
    by_fqdn = api.get(URL, params={"port": 9273, "address": "fqdn"}, as_="read").json()
    assert [group["targets"] for group in by_fqdn] == [["db-1.example.com:9273"], ["[2001:db8::7]:9273"],
                                                       ["web-1.example.com:9273"]]
    staging = api.get(URL, params={"environment": "staging"}, as_="read").json()
    assert [group["labels"]["cmdb_ci"] for group in staging] == [refs["db"]]
    assert [g["labels"]["cmdb_ci"] for g in api.get(URL, params={"attr.os_name": "debian"}, as_="read").json()] == [
        refs["web"]]
    assert [g["labels"]["cmdb_ci"] for g in api.get(URL, params={"class": "virtual_machine"}, as_="read").json()] == [
        refs["vm"]]
    assert api.get(URL, params={"class": "network_device"}, as_="read").json() == [
        {"targets": ["10.0.0.1:9100"], "labels": {"cmdb_ci": refs["sw"], "cmdb_name": "sw-1",
                                                  "ci_class": "network_device", "environment": "", "owner": "",
                                                  "services": ""}}]
    assert api.get(URL, params={"owner": "nobody"}, as_="read").json() == []


def test_services_follow_the_live_graph(api):
    refs = ingest_estate(api)
    link = api.get("/api/v1/relationships", params={"source": refs["shop"]}).json()["items"]
    assert len(link) == 1
    assert api.delete(f"/api/v1/relationships/{link[0]['id']}").status_code == 204
    web = [g for g in api.get(URL, as_="read").json() if g["labels"]["cmdb_ci"] == refs["web"]]
    assert web[0]["labels"]["services"] == 'check%2Cout%25"}'


@pytest.mark.parametrize("params, field", [
    ({"port": "0"}, "query.port"), ({"port": "65536"}, "query.port"), ({"port": "http"}, "query.port"),
    ({"address": "mac"}, "query.address"), ({"hosts": "x"}, "query.hosts"), ({"status": "gone"}, "query.status"),
    ({"class": "nope"}, "class"), ({"attr.a\"b": "1"}, "query.attr.a\"b"),
])
def test_bad_parameters_are_422_naming_the_field(api, params, field):
    response = api.get(URL, params=params, as_="read")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in {error["field"] for error in response.json()["errors"]}, response.json()


def test_needs_a_token_with_scope_read(api):
    assert api.get(URL, as_=None).status_code == 401
    assert api.get(URL, as_="read").status_code == 200
