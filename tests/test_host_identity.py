"""Hosts are one identity domain (issue #15): a box nmap found and the same box SNMP found are one CI.

`server` and `network_device` are two class families sharing one identifier namespace
(app.services.registry.IDENTITY_DOMAINS). The batches are built by discovery's own builders
(discovery/batch.py build_scan_batch for nmap, discovery/snmp/batch.py build_snmp_batch) and pushed
through POST /api/v1/ingest, in both orders, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from app.core import migrations
from app.core.db import make_engine
from app.models import CIIdentifier
from app.services import registry as registry_module
from discovery.batch import build_scan_batch
from discovery.models import ScanHost, ScanPort
from discovery.snmp.batch import build_snmp_batch
from discovery.snmp.models import (
    DeviceAddress,
    DeviceFacts,
    DeviceInterface,
    DeviceResult,
)

CHASSIS = "02:00:00:79:00:01"  # the lab's kind of switch: a bridge with a locally administered MAC
MGMT_MAC = "02:00:00:79:01:ff"
ROUTER = "00:1b:21:00:00:01"  # a router's burned-in MACs, one per interface
ROUTER_LAN = "00:1b:21:00:00:02"
RUN = iter(range(1, 10_000))
IDENT = CIIdentifier.__table__


def switch_facts(name: str = "sw9", chassis: str = CHASSIS) -> DeviceFacts:
    return DeviceFacts(
        target="192.0.2.9", system_name=name, vendor="net-snmp", object_id="1.3.6.1.4.1.8072.3.2.10",
        chassis_mac=chassis,
        interfaces=[DeviceInterface(1, "mgmt0", mac=MGMT_MAC, if_type=6, oper_status="up"),
                    DeviceInterface(2, "br0", mac=chassis, if_type=209, oper_status="up"),
                    DeviceInterface(3, "swp1", mac=chassis, if_type=6, oper_status="up")],
        addresses=[DeviceAddress("10.79.0.2", 24, "br0"), DeviceAddress("192.0.2.9", 30, "mgmt0")])


def router_facts() -> DeviceFacts:
    return DeviceFacts(
        target="192.0.2.1", system_name="r1", chassis_mac=ROUTER,
        interfaces=[DeviceInterface(1, "ge-0/0/0", mac=ROUTER, if_type=6),
                    DeviceInterface(2, "ge-0/0/1", mac=ROUTER_LAN, if_type=6),
                    DeviceInterface(3, "em1", mac="02:00:00:00:00:04", if_type=6),  # every routing engine's
                    DeviceInterface(4, "vrrp", mac="00:00:5e:00:01:07", if_type=6)],
        addresses=[DeviceAddress("192.0.2.1", 30, "ge-0/0/0"), DeviceAddress("10.80.0.1", 24, "ge-0/0/1"),
                   DeviceAddress("128.0.0.4", 2, "em1"), DeviceAddress("10.80.0.254", 24, "vrrp")])


def snmp(*facts: DeviceFacts) -> dict:
    batch, notes = build_snmp_batch([DeviceResult(f.target, "ok", facts=f) for f in facts], run_id=f"snmp-{next(RUN)}",
                                    complete=False)
    assert notes == []
    return batch


def nmap(address: str, mac: str | None, **seen) -> dict:
    host = ScanHost(address=address, mac=mac, ports=[ScanPort(22, "tcp", "open", "ssh")], **seen)
    return build_scan_batch([host], run_id=f"nmap-{next(RUN)}", subnets=[], complete=False)


def push(api, body: dict) -> dict:
    response = api.post("/api/v1/ingest", json=body, as_="discovery")
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["conflicts"] == [] and outcome["errors"] == [], outcome
    return outcome


def hosts(api) -> list[dict]:
    """Every CI of the domain (a host CI of either family)."""
    found = []
    for ci_class in ("server", "network_device"):
        found += api.get("/api/v1/cis", params={"class": ci_class, "limit": 1000}).json()["items"]
    return found


def the_device_ref(outcome: dict, batch: dict, ci_class: str) -> str:
    (ref,) = [item["ref"] for item in batch["items"] if item["class"] == ci_class]
    return outcome["refs"][ref]


@pytest.mark.parametrize("nmap_sees_mac", [True, False], ids=["nmap-sees-the-mac", "nmap-sees-an-address"])
def test_snmp_first_then_nmap_is_one_network_device(api, nmap_sees_mac):
    device = push(api, batch := snmp(switch_facts()))
    ci_id = the_device_ref(device, batch, "network_device")
    scanned = push(api, scan := nmap("10.79.0.2", CHASSIS if nmap_sees_mac else None))
    assert the_device_ref(scanned, scan, "server") == ci_id
    (ci,) = hosts(api)
    ci = api.get(f"/api/v1/cis/{ci_id}").json()
    # SNMP's class and facts, nmap's sighting merged in; nmap's "server" never undoes "network_device"
    assert (ci["class"], ci["name"], ci["attributes"]["ip_address"]) == ("network_device", "sw9",
                                                                          ["10.79.0.2", "192.0.2.9"])
    assert ci["attributes"]["listening"] == [{"port": 22, "protocol": "tcp", "service": "ssh"}]
    assert ci["attributes"]["vendor"] == "net-snmp"
    assert scanned["counts"]["created"] == 0  # SNMP made the address's CI too
    again = push(api, nmap("10.79.0.2", CHASSIS if nmap_sees_mac else None))
    assert again["counts"]["updated"] == 0 and api.get(f"/api/v1/cis/{ci_id}").json()["class"] == "network_device"


@pytest.mark.parametrize("nmap_sees_mac", [True, False], ids=["nmap-sees-the-mac", "nmap-sees-an-address"])
def test_nmap_first_then_snmp_makes_the_server_a_network_device(api, nmap_sees_mac):
    scanned = push(api, scan := nmap("10.79.0.2", CHASSIS if nmap_sees_mac else None))
    ci_id = the_device_ref(scanned, scan, "server")
    device = push(api, batch := snmp(switch_facts()))
    assert the_device_ref(device, batch, "network_device") == ci_id
    assert len(hosts(api)) == 1
    ci = api.get(f"/api/v1/cis/{ci_id}").json()
    assert (ci["class"], ci["name"], ci["attributes"]["vendor"]) == ("network_device", "sw9", "net-snmp")
    history = api.get(f"/api/v1/cis/{ci_id}/history").json()["items"]
    updates = [record["diff"] for record in history if record["action"] == "update" and "class" in record["diff"]]
    assert [diff["class"] for diff in updates] == [["server", "network_device"]]
    # nmap's next sighting (its fingerprint left at the server's version) is derived, and keeps the class
    rescan = push(api, nmap("10.79.0.2", CHASSIS if nmap_sees_mac else None))
    assert the_device_ref(rescan, scan, "server") == ci_id
    assert api.get(f"/api/v1/cis/{ci_id}").json()["class"] == "network_device"
    # and the one after is confirmed by its fingerprint: still one network_device, unchanged
    confirmed = push(api, nmap("10.79.0.2", CHASSIS if nmap_sees_mac else None))
    assert confirmed["counts"]["unchanged"] == 2 and confirmed["counts"]["updated"] == 0
    assert [(ci["class"], ci["id"]) for ci in hosts(api)] == [("network_device", ci_id)]


def test_a_router_is_found_by_the_mac_of_the_interface_nmap_sees(api):
    """nmap on a router's LAN sees that interface's MAC, not the chassis's: SNMP sends it too (burned in,
    one interface, addressed); never the locally administered MAC every routing engine has, nor VRRP's."""
    batch = snmp(router_facts())
    (item,) = [i for i in batch["items"] if i["class"] == "network_device"]
    assert item["identifiers"] == {"mac_address": [ROUTER, ROUTER_LAN],
                                   "ip_address": ["192.0.2.1", "10.80.0.1", "128.0.0.4", "10.80.0.254"]}
    scanned = push(api, scan := nmap("10.80.0.1", ROUTER_LAN))
    device = push(api, batch)
    assert the_device_ref(device, batch, "network_device") == the_device_ref(scanned, scan, "server")
    assert [ci["class"] for ci in hosts(api)] == ["network_device"]


def test_two_devices_claiming_one_interface_mac_are_not_made_one():
    """A MAC two devices of one batch carry (a cloned router), or one that is another item's chassis
    MAC, identifies neither: ingest would make items sharing an identifier one machine."""
    (alone,) = [i for i in snmp(router_facts())["items"] if i["class"] == "network_device"]
    assert alone["identifiers"]["mac_address"] == [ROUTER, ROUTER_LAN]
    clone = router_facts()
    clone.target, clone.system_name, clone.chassis_mac = "192.0.2.5", "r2", "00:1b:21:00:00:11"
    clone.interfaces = [DeviceInterface(1, "ge-0/0/0", mac="00:1b:21:00:00:11", if_type=6),
                        DeviceInterface(2, "ge-0/0/1", mac=ROUTER_LAN, if_type=6),
                        DeviceInterface(3, "ge-0/0/2", mac=CHASSIS.replace("02:", "00:", 1), if_type=6)]
    clone.addresses = [DeviceAddress("192.0.2.5", 30, "ge-0/0/0"), DeviceAddress("10.81.0.1", 24, "ge-0/0/1"),
                       DeviceAddress("10.82.0.1", 24, "ge-0/0/2")]
    switch = switch_facts(chassis=CHASSIS.replace("02:", "00:", 1))
    batch = snmp(router_facts(), clone, switch)
    macs = {i["name"]: i["identifiers"]["mac_address"] for i in batch["items"] if i["class"] == "network_device"}
    assert macs == {"r1": [ROUTER], "r2": ["00:1b:21:00:00:11"], "sw9": [CHASSIS.replace("02:", "00:", 1)]}


def test_the_api_refuses_a_second_host_of_the_other_family_and_a_class_change_keeps_the_identifiers(api, engine):
    server = api.create_ci("server", "box", attributes={"mac_address": [CHASSIS], "ip_address": ["10.79.0.2"]})
    twin = api.post("/api/v1/cis", json={"class": "network_device", "name": "sw", "attributes": {"mac_address": [CHASSIS]}})
    assert twin.status_code == 409, twin.text
    assert twin.json()["existing_ci"] == server["id"]
    changed = api.patch(f"/api/v1/cis/{server['id']}", json={"class": "network_device"})
    assert changed.status_code == 200 and changed.json()["class"] == "network_device", changed.text
    with engine.connect() as conn:
        rows = conn.execute(sa.select(IDENT.c.family, IDENT.c.key, IDENT.c.value).order_by(IDENT.c.key)).all()
    assert [tuple(row) for row in rows] == [("server", "ip_address", "10.79.0.2"), ("server", "mac_address", CHASSIS)]
    again = api.post("/api/v1/cis", json={"class": "server", "name": "box-2", "attributes": {"mac_address": [CHASSIS]}})
    assert again.status_code == 409 and again.json()["existing_ci"] == server["id"], again.text
    # search finds the device by its MAC, among network devices too (its rows are the identity family's)
    for params in ({"q": CHASSIS}, {"q": CHASSIS, "class": "network_device"}):
        found = api.get("/api/v1/search", params=params).json()["results"]
        assert [(hit["id"], hit["matched"]) for hit in found] == [
            (server["id"], {"field": "identifier.mac_address", "value": CHASSIS})], params


def test_an_import_row_of_one_family_may_name_a_ci_of_the_other(api):
    """A spreadsheet row saying a `server` CI is a network_device (by its id) updates it, and its class
    wins as a discovery report's would; a row naming a CI outside the domain stays an error."""
    box = api.create_ci("server", "box")
    service = api.create_ci("service", "shop")
    sheet = f"id,name,attribute.model\n{box['id']},sw-core,X9\n{service['id']},shop,X9\n"
    response = api.post("/api/v1/import?class=network_device&all_or_nothing=false", content=sheet,
                        headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    rows = {row["row"]: row for row in response.json()["rows"]}
    assert (rows[2]["action"], rows[2]["ci"]) == ("update", box["id"])
    assert rows[3]["errors"] == [{"column": "id", "reason": f"CI {service['id']} is a service, not a network_device "
                                                            "or server or one of their subclasses"}]
    ci = api.get(f"/api/v1/cis/{box['id']}").json()
    # (the name a person gave outranks an import)
    assert (ci["class"], ci["name"], ci["attributes"]) == ("network_device", "box", {"model": "X9"})


def test_new_rules_of_one_family_reindex_the_whole_identity_family(api, engine):
    def rules(ci_class: str, *keys: str, status: int = 200) -> None:
        response = api.patch(f"/api/v1/classes/{ci_class}", json={"identification_rules": [[key] for key in keys]})
        assert response.status_code == status, response.text

    server = api.create_ci("server", "box", attributes={"serial_number": "SN-7", "mac_address": [ROUTER]})
    rules("network_device", "serial_number")
    device = api.create_ci("network_device", "sw", attributes={"serial_number": "SN-8", "mac_address": [ROUTER]})
    with engine.connect() as conn:
        rows = {(row.family, row.value): str(row.ci_id) for row in conn.execute(sa.select(IDENT))}
    # the re-index rebuilt the identity family: the server's rows kept, the device's under `server`
    assert rows == {("server", "sn-7"): server["id"], ("server", ROUTER): server["id"],
                    ("server", "sn-8"): device["id"]}
    # rules that would make the device claim the server's MAC are refused, naming both
    rules("network_device", "serial_number", "mac_address", status=409)
    api.patch(f"/api/v1/cis/{device['id']}", json={"attributes": {"mac_address": [ROUTER_LAN]}})
    rules("network_device", "serial_number", "mac_address")


def test_the_registry_digest_covers_the_identity_family(api, monkeypatch):
    """A report confirmed before two families shared identifiers must be derived again after: its
    fingerprint is salted with the registry digest, which includes each class's identity family."""
    registry = api.client.app.state.registry.get()
    before = registry.digest
    monkeypatch.setattr(registry_module, "IDENTITY_DOMAINS", {})
    assert registry_module.Registry(registry.classes, registry.relationship_types).digest != before


# ---- migration 0016 --------------------------------------------------------------------------------------

def _ci(conn, ci_class: str, name: str, attributes: dict | None = None) -> uuid.UUID:
    from app.models import ConfigurationItem
    from app.models.types import utcnow

    ci_id, now = uuid.uuid4(), utcnow()
    conn.execute(sa.insert(ConfigurationItem.__table__), {
        "id": ci_id, "ci_class": ci_class, "name": name, "status": "active", "tags": [], "attributes": attributes or {},
        "created_at": now, "updated_at": now, "version": 1, "provenance": {}})
    return ci_id


def test_0016_moves_device_identifiers_and_resolves_todays_duplicates(database_url):
    ident = IDENT
    engine = make_engine(database_url)
    try:
        migrations.downgrade(engine, "0015")
        with engine.begin() as conn:
            # nmap's server and SNMP's switch, one MAC: the server knows nothing the switch does not
            scanned, switch = _ci(conn, "server", "10.0.0.2"), _ci(conn, "network_device", "sw1")
            # an SSH-known server (a machine-id of its own) and a device sharing its MAC
            known, device = _ci(conn, "server", "box"), _ci(conn, "network_device", "box-by-snmp")
            # a router's interface MAC (burned in, one interface) that nmap made a server of
            router = _ci(conn, "network_device", "r1", {"interfaces": [
                {"name": "ge0", "mac_address": ROUTER}, {"name": "ge1", "mac_address": ROUTER_LAN},
                {"name": "em1", "mac_address": "02:00:00:00:00:04"}]})
            lan, internal = _ci(conn, "server", "10.80.0.1"), _ci(conn, "server", "128.0.0.4")
            alone = _ci(conn, "network_device", "sw2")
            conn.execute(sa.insert(ident), [
                {"family": f, "key": k, "value": v, "ci_id": c} for f, k, v, c in [
                    ("server", "mac_address", CHASSIS, scanned), ("server", "ip_address", "10.0.0.2", scanned),
                    ("network_device", "mac_address", CHASSIS, switch),
                    ("server", "machine_id", "0f8e7a1b2c3d4e5f60718293a4b5c6d7", known),
                    ("server", "mac_address", "00:1b:21:00:00:09", known),
                    ("network_device", "mac_address", "00:1b:21:00:00:09", device),
                    ("network_device", "mac_address", ROUTER, router),
                    ("server", "mac_address", ROUTER_LAN, lan),
                    ("server", "mac_address", "02:00:00:00:00:04", internal),  # locally administered: not the router's
                    ("network_device", "mac_address", "00:1b:21:00:00:99", alone),
                    ("network_device", "ip_address", "10.0.0.99", alone)]])
        migrations.upgrade(engine)
        with engine.connect() as conn:
            rows = {tuple(row) for row in conn.execute(sa.select(ident.c.family, ident.c.key, ident.c.value, ident.c.ci_id))}
        assert rows == {
            ("server", "mac_address", CHASSIS, switch), ("server", "ip_address", "10.0.0.2", scanned),
            ("server", "machine_id", "0f8e7a1b2c3d4e5f60718293a4b5c6d7", known),
            ("server", "mac_address", "00:1b:21:00:00:09", known),
            ("server", "mac_address", ROUTER, router),
            ("server", "mac_address", "02:00:00:00:00:04", internal),
            ("server", "mac_address", "00:1b:21:00:00:99", alone), ("server", "ip_address", "10.0.0.99", alone)}
        migrations.downgrade(engine, "0015")
        with engine.connect() as conn:
            back = {tuple(row) for row in conn.execute(sa.select(ident.c.family, ident.c.key, ident.c.value, ident.c.ci_id))}
        assert back == {(("network_device",) + row[1:]) if row[3] in (switch, router, alone) else row for row in rows}
        migrations.upgrade(engine)
        assert migrations.is_at_head(engine)
    finally:
        engine.dispose()
