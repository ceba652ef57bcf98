"""Hosts are one identity domain (issue #15): what nmap, SSH and SNMP report of one box is one CI, and
its class follows source precedence both ways (app.services.ingest.phases.class_after), on SQLite and
PostgreSQL, through the real ingest API; and migration 0016 merges the duplicates made before it."""

import time
import uuid

import pytest
import sqlalchemy as sa

from app.core import migrations
from app.core.db import make_engine
from discovery.snmp.batch import build_snmp_batch
from discovery.snmp.models import DeviceFacts, DeviceInterface, DeviceResult
from tests.test_ingest import batch, push

CHASSIS, PORT_MAC, OTHER = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"
UA_PORT = "00:1b:21:00:00:02"  # universally administered: a port MAC migration 0016 may join by


def nmap_host(mac, address="10.0.0.1"):
    return {"ref": "n", "class": "server", "name": address, "identifiers": {"mac_address": [mac],
                                                                          "ip_address": [address]}, "attributes": {}}


def snmp_device(chassis=CHASSIS, secondary=(PORT_MAC,), name="sw1"):
    attributes = {"vendor": "Cisco"}
    if secondary:
        attributes["interface_mac"] = list(secondary)
    return {"ref": "d", "class": "network_device", "name": name, "identifiers": {"mac_address": [chassis]},
            "attributes": attributes}


def ssh_host(mac=CHASSIS):
    return {"ref": "s", "class": "server", "name": "web-1", "identifiers": {"machine_id": "0f8e7a1b2c3d4e5f60718293a4b5c6d7",
                                                                         "mac_address": [mac]},
            "attributes": {"os_name": "debian"}}


def hosts(api):
    return [ci for cls in ("server", "network_device")
            for ci in api.get(f"/api/v1/cis?class={cls}").json()["items"] if ci["status"] != "retired"]


def test_nmap_then_snmp_is_one_network_device(api):
    nmap = push(api, batch("nmap", [nmap_host(PORT_MAC)]))  # nmap saw the interface's MAC, not the chassis's
    snmp = push(api, batch("snmp", [snmp_device()]))
    assert snmp["conflicts"] == [] and snmp["refs"]["d"] == nmap["refs"]["n"]
    [ci] = hosts(api)
    assert ci["class"] == "network_device"
    again = push(api, batch("nmap", [nmap_host(PORT_MAC)]))  # nmap's guess never undoes SNMP's class
    assert again["refs"]["n"] == ci["id"] and again["conflicts"] == []
    assert api.get(f"/api/v1/cis/{ci['id']}").json()["class"] == "network_device"


def test_snmp_then_nmap_is_one_network_device(api):
    snmp = push(api, batch("snmp", [snmp_device()]))
    for mac in (CHASSIS, PORT_MAC):
        nmap = push(api, batch("nmap", [nmap_host(mac)]))
        assert nmap["refs"]["n"] == snmp["refs"]["d"] and nmap["conflicts"] == []
    [ci] = hosts(api)
    assert ci["class"] == "network_device"


def test_a_server_ssh_knows_stays_a_server_and_ssh_wins_later(api):
    ssh = push(api, batch("ssh", [ssh_host()]))
    # lldpd on a Docker host announces a bridge: SNMP says network_device, but SSH outranks SNMP
    snmp = push(api, batch("snmp", [snmp_device(secondary=())]))
    assert snmp["refs"]["d"] == ssh["refs"]["s"] and snmp["conflicts"] == []
    [ci] = hosts(api)
    assert ci["class"] == "server"
    # the other way: SNMP's device, then SSH logs into it and says server: the higher source wins
    device = push(api, batch("snmp", [snmp_device(chassis=OTHER, secondary=(), name="sw2")]))["refs"]["d"]
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "network_device"
    push(api, batch("ssh", [{**ssh_host(OTHER), "identifiers": {"mac_address": [OTHER]}}]))
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "server"


def test_a_persons_class_wins(api):
    device = push(api, batch("snmp", [snmp_device()]))["refs"]["d"]
    assert api.patch(f"/api/v1/cis/{device}", json={"class": "server"}).status_code == 200
    assert push(api, batch("snmp", [snmp_device()]))["refs"]["d"] == device
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "server"
    host = push(api, batch("nmap", [nmap_host(OTHER, "10.0.0.9")]))["refs"]["n"]
    assert api.patch(f"/api/v1/cis/{host}", json={"class": "network_device"}).status_code == 200
    assert push(api, batch("ssh", [ssh_host(OTHER)]))["refs"]["s"] == host
    assert api.get(f"/api/v1/cis/{host}").json()["class"] == "network_device"
    assert len(hosts(api)) == 2


def test_a_routers_interface_mac_held_by_nmaps_ci_is_taken_over_without_conflict(api):
    device = push(api, batch("snmp", [snmp_device(secondary=())]))["refs"]["d"]  # known by its chassis MAC
    sighting = push(api, batch("nmap", [nmap_host(PORT_MAC, "10.0.0.2")]))["refs"]["n"]  # nmap saw a port
    assert sighting != device
    for _ in range(3):
        out = push(api, batch("snmp", [snmp_device()]))
        assert out["conflicts"] == [] and out["refs"]["d"] == device
    # nmap's next sighting of that port is the router, and its old CI can still be edited
    assert push(api, batch("nmap", [nmap_host(PORT_MAC, "10.0.0.2")]))["refs"]["n"] == device
    assert api.patch(f"/api/v1/cis/{sighting}", json={"owner": "net"}).status_code == 200
    assert api.patch(f"/api/v1/cis/{device}", json={"owner": "net"}).status_code == 200
    assert push(api, batch("nmap", [nmap_host(PORT_MAC, "10.0.0.2")]))["refs"]["n"] == device


def test_snmp_then_ssh_of_a_linux_router_is_one_ci(api):
    # SNMP first: SSH's strong MAC is the device's secondary row, one CI, class SSH's.
    device = push(api, batch("snmp", [snmp_device()]))["refs"]["d"]
    for _ in range(2):
        for source, item, ref in (("ssh", ssh_host(PORT_MAC), "s"), ("snmp", snmp_device(), "d")):
            out = push(api, batch(source, [item]))
            assert out["conflicts"] == [] and out["refs"][ref] == device, (source, out)
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "server"
    assert [ci["id"] for ci in hosts(api)] == [device]


def test_ssh_then_snmp_of_a_linux_router_is_one_ci(api):
    # finding 9: SSH first names the router's port MAC as its own; SNMP walks it after and reports that
    # MAC as an interface's beside a chassis MAC SSH never reported (a bridge's): the same CI, as in the
    # other order, and both sources keep finding it.
    host = push(api, batch("ssh", [ssh_host(PORT_MAC)]))["refs"]["s"]
    for _ in range(2):
        for source, item, ref in (("snmp", snmp_device(), "d"), ("ssh", ssh_host(PORT_MAC), "s")):
            out = push(api, batch(source, [item]))
            assert out["conflicts"] == [] and out["refs"][ref] == host, (source, out)
    assert api.get(f"/api/v1/cis/{host}").json()["class"] == "server"
    assert [ci["id"] for ci in hosts(api)] == [host]
    assert push(api, batch("snmp", [snmp_device()]))["counts"]["unchanged"] == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite serializes writers: no race
def test_a_host_ssh_commits_while_snmp_makes_its_router_is_found_on_the_retry(api, engine, monkeypatch):
    # review of finding 9, 2: the SNMP batch read the index before SSH's host with the port MAC committed;
    # making a new CI then would leave two for good (its chassis MAC finds it first every next run): the
    # batch is decided again and finds the host.
    from app.services.ingest import store
    host = push(api, batch("ssh", [ssh_host(PORT_MAC)]))["refs"]["s"]
    where = sa.and_(IDENT.c.key == "mac_address", IDENT.c.value == PORT_MAC)
    with engine.begin() as conn:  # the index as the SNMP batch reads it: the host's row not there yet
        conn.execute(IDENT.delete().where(where))
    real = store.claim_identifiers

    def after_identify(conn, *args):
        with engine.begin() as other:  # the host's batch commits now, in a transaction of its own
            other.execute(IDENT.insert(), [{"family": "server", "key": "mac_address", "value": PORT_MAC,
                                            "ci_id": uuid.UUID(host)}])
        monkeypatch.setattr(store, "claim_identifiers", real)
        return real(conn, *args)

    monkeypatch.setattr(store, "claim_identifiers", after_identify)
    out = push(api, batch("snmp", [snmp_device()]))
    assert out["conflicts"] == [] and out["refs"]["d"] == host
    assert [ci["id"] for ci in hosts(api)] == [host]
    assert push(api, batch("snmp", [snmp_device()]))["refs"]["d"] == host


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite serializes writers: no race
def test_a_host_that_stops_naming_the_mac_meanwhile_is_not_joined(api, engine, monkeypatch):
    # review of finding 9, 3: identification read the host unlocked; before the batch locks it, another
    # transaction commits the host without that MAC (its NIC replaced): decided again, not joined
    from app.services.ingest import store
    host = push(api, batch("ssh", [ssh_host(PORT_MAC)]))["refs"]["s"]
    real = store.load_cis
    ci = sa.table("ci", sa.column("id", sa.Uuid), sa.column("attributes", sa.JSON))

    def meanwhile(conn, ci_ids):
        with engine.begin() as other:
            attributes = other.execute(sa.select(ci.c.attributes).where(ci.c.id == uuid.UUID(host))).scalar_one()
            other.execute(ci.update().where(ci.c.id == uuid.UUID(host)).values(attributes={**attributes,
                                                                                          "mac_address": [OTHER]}))
        monkeypatch.setattr(store, "load_cis", real)
        return real(conn, ci_ids)

    monkeypatch.setattr(store, "load_cis", meanwhile)
    out = push(api, batch("snmp", [snmp_device()]))
    assert out["conflicts"] == [] and out["refs"]["d"] != host


def test_a_firewall_naming_one_port_mac_an_ssh_host_names_is_not_that_host(api):
    # review of finding 9, 7: an HA pair's shared (universally administered) MAC is one of the SSH-known
    # member's own; the other member, walked by SNMP, reports it among its other ports: not the host
    host = push(api, batch("ssh", [ssh_host(UA_PORT)]))["refs"]["s"]
    for _ in range(2):
        out = push(api, batch("snmp", [snmp_device(chassis=OTHER, secondary=(UA_PORT, "00:1b:21:00:00:77"),
                                                   name="fw-b")]))
        assert out["conflicts"] == [] and out["refs"]["d"] != host
    assert len(hosts(api)) == 2


def test_a_linux_router_made_two_cis_before_is_one_once_snmps_is_deleted(api):
    # made before finding 9's rule: SNMP's device, known by its chassis MAC, beside SSH's host
    device = push(api, batch("snmp", [snmp_device(secondary=())]))["refs"]["d"]
    host = push(api, batch("ssh", [ssh_host(PORT_MAC)]))["refs"]["s"]
    assert push(api, batch("snmp", [snmp_device()]))["refs"]["d"] == device  # its chassis MAC still names it
    assert api.delete(f"/api/v1/cis/{device}").status_code == 204
    out = push(api, batch("snmp", [snmp_device()]))
    assert out["conflicts"] == [] and out["refs"]["d"] == host
    assert [ci["id"] for ci in hosts(api)] == [host]


def test_ssh_then_snmp_of_a_linux_router_nmap_saw_at_its_address_is_one_ci(api, engine):
    # the same with nmap's sighting of another of its addresses (no MAC: routed) also matching SNMP's
    # item: the router is SSH's CI, and takes the address over; no third CI
    host = push(api, batch("ssh", [ssh_host(PORT_MAC)]))["refs"]["s"]
    sighting = push(api, batch("nmap", [{"ref": "n", "class": "server", "name": "10.0.1.1",
                                         "identifiers": {"ip_address": ["10.0.1.1"]}, "attributes": {}}]))["refs"]["n"]
    assert sighting != host
    device_item = snmp_device()
    device_item["identifiers"]["ip_address"] = ["10.0.1.1"]
    out = push(api, batch("snmp", [device_item]))
    assert out["conflicts"] == [] and out["refs"]["d"] == host
    assert push(api, batch("nmap", [{"ref": "n", "class": "server", "name": "10.0.1.1",
                                     "identifiers": {"ip_address": ["10.0.1.1"]}, "attributes": {}}]))["refs"]["n"] == host
    assert holder_of(engine, "ip_address", "10.0.1.1") == [host]
    assert sorted(ci["id"] for ci in hosts(api)) == sorted([host, sighting])  # the sighting is left to go stale


def test_a_device_whose_interface_macs_two_hosts_name_as_their_own_is_neither(api, engine):
    # several CIs name the item's secondary MACs as their own: none of them is the device (it is made,
    # no conflict), and each host keeps its MAC
    one = push(api, batch("ssh", [ssh_at("a", "1" * 32, ["10.0.0.1"], mac=PORT_MAC)]))["refs"]["s"]
    two = push(api, batch("ssh", [ssh_at("b", "2" * 32, ["10.0.0.2"], mac=OTHER)]))["refs"]["s"]
    for _ in range(2):
        out = push(api, batch("snmp", [snmp_device(secondary=(PORT_MAC, OTHER))]))
        assert out["conflicts"] == [] and out["refs"]["d"] not in (one, two)
    assert holder_of(engine, "mac_address", PORT_MAC) == [one]
    assert holder_of(engine, "mac_address", OTHER) == [two]


def test_a_device_reporting_as_an_interfaces_a_mac_another_device_holds_as_secondary_is_not_it(api):
    # two firewalls of an HA pair (no serial) carry one universally administered virtual MAC: each
    # reports it as an interface's; the first holds the row as secondary, not as its own: two CIs
    first = push(api, batch("snmp", [snmp_device(chassis=PORT_MAC, secondary=(UA_PORT,), name="fw-a")]))["refs"]["d"]
    for _ in range(2):
        out = push(api, batch("snmp", [snmp_device(chassis=OTHER, secondary=(UA_PORT,), name="fw-b")]))
        assert out["conflicts"] == [] and out["refs"]["d"] != first
    assert len(hosts(api)) == 2


def test_a_secondary_mac_another_machine_names_as_its_own_stays_there_until_it_stops(api, engine):
    # SSH knows a host by its serial and a MAC that a device with another serial reports as one of its
    # interfaces' (a mistaken agent, a NIC moved between boxes): two machines; the device does not take
    # the MAC and nobody conflicts. Its report is not confirmed, so once the host stops naming the MAC
    # the device's identical report takes it (second review, finding 1's secondary part).
    host_item = {**ssh_host(PORT_MAC), "identifiers": {"serial_number": "HOST-1", "mac_address": [PORT_MAC]}}
    device_item = snmp_device()
    device_item["identifiers"]["serial_number"] = "SW-1"
    host = push(api, batch("ssh", [host_item]))["refs"]["s"]
    where = sa.and_(IDENT.c.key == "mac_address", IDENT.c.value == PORT_MAC)

    def holder():
        with engine.connect() as conn:
            return conn.execute(sa.select(IDENT.c.ci_id).where(where)).scalar_one()

    for _ in range(2):
        out = push(api, batch("snmp", [device_item]))
        assert out["conflicts"] == [] and out["refs"]["d"] != host
        out = push(api, batch("ssh", [host_item]))
        assert out["conflicts"] == [] and out["refs"]["s"] == host
    device = push(api, batch("snmp", [device_item]))["refs"]["d"]
    assert holder() == uuid.UUID(host)
    for ci_id in (host, device):
        assert api.patch(f"/api/v1/cis/{ci_id}", json={"owner": "net"}).status_code == 200
    assert push(api, batch("ssh", [host_item]))["conflicts"] == []
    assert push(api, batch("snmp", [device_item]))["refs"]["d"] == device  # left the MAC: not confirmed
    # the NIC moved: SSH reports another MAC; the index lets the old row go when the CI is written whole
    # (an edit; ingest leaves a strong row a report stops naming)
    push(api, batch("ssh", [{**host_item, "identifiers": {"serial_number": "HOST-1", "mac_address": [OTHER]}}]))
    assert api.patch(f"/api/v1/cis/{host}", json={"owner": "ops"}).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(sa.select(IDENT.c.ci_id).where(where)).all() == []
    assert push(api, batch("snmp", [device_item]))["refs"]["d"] == device
    assert holder() == uuid.UUID(device)


def test_an_snmp_agent_on_a_host_is_no_network_device():
    host = DeviceFacts("10.0.0.5", system_name="web-1", services=72, chassis_mac=CHASSIS,
                       interfaces=[DeviceInterface(2, "eth0", mac=CHASSIS, if_type=6)])
    switch = DeviceFacts("10.0.0.6", system_name="sw1", services=72, capabilities=("bridge",), chassis_mac=OTHER)
    body, notes = build_snmp_batch([DeviceResult("10.0.0.5", "ok", host), DeviceResult("10.0.0.6", "ok", switch)],
                                   run_id="r")
    assert [(i["class"], i["name"]) for i in body["items"] if i["class"] != "ip_address"] == [("network_device", "sw1")]
    assert notes and notes[0].startswith("10.0.0.5: no sign of switching or routing")


SOURCE = sa.table("ci_source", sa.column("ci_id", sa.Uuid), sa.column("source"))
def migrate_while_running(engine, revision: str = "head", *, down: bool = False) -> None:
    """Up or down while the app runs: on SQLite, a write its background work commits between the
    migration's first read and its first write fails the migration at once (a stale snapshot, not a
    wait); it rolls back whole and is tried again, a few times at most."""
    for attempt in range(5):
        try:
            (migrations.downgrade if down else migrations.upgrade)(engine, revision)
            return
        except sa.exc.OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.5)


def downgrade_to_0015(engine) -> None:
    migrate_while_running(engine, "0015", down=True)


IDENT = sa.table("ci_identifier", sa.column("family"), sa.column("key"), sa.column("value"), sa.column("ci_id", sa.Uuid))


def across_0016(database_url, before, after_downgrade):
    """What `before` makes on 0016, then what `after_downgrade(engine)` makes on 0015, then the upgrade."""
    engine = make_engine(database_url)
    try:
        made = before()
        downgrade_to_0015(engine)
        other = after_downgrade(engine)
        migrate_while_running(engine)
    finally:
        engine.dispose()
    return made, other


def test_0016_merges_the_duplicates_made_before_it(api, database_url):
    # Before 0016 a network_device and a server with one MAC were two CIs. Made here by the real ingest on
    # a database downgraded to 0015 (the device's rows back in their own namespace), then upgraded.
    engine = make_engine(database_url)
    try:
        rels = [{"source": "d", "target": "ip", "type": "contains"}]
        ip = {"ref": "ip", "class": "ip_address", "name": "10.0.0.1", "identifiers": {"address": "10.0.0.1"},
              "attributes": {}}
        device = push(api, batch("snmp", [snmp_device(secondary=()), ip], rels))["refs"]["d"]
        api.patch(f"/api/v1/cis/{device}", json={"attributes": {"interfaces": [{"name": "ge0", "mac_address": UA_PORT}]}})
        downgrade_to_0015(engine)
        with engine.connect() as conn:
            assert {f for (f,) in conn.execute(sa.select(IDENT.c.family).where(IDENT.c.ci_id == uuid.UUID(device)))} \
                == {"network_device"}
        # nmap saw the chassis MAC (one duplicate) and a port's MAC (another), with an address each
        ip2 = {**ip, "ref": "ip2", "name": "10.0.0.2", "identifiers": {"address": "10.0.0.2"}}
        nmap = push(api, batch("nmap", [nmap_host(CHASSIS), ip, {**nmap_host(UA_PORT, "10.0.0.2"), "ref": "p"}, ip2],
                               [{"source": "n", "target": "ip", "type": "contains"},
                                {"source": "p", "target": "ip2", "type": "contains"}]))
        twin, port = nmap["refs"]["n"], nmap["refs"]["p"]
        assert len({device, twin, port}) == 3
        migrate_while_running(engine)
        with engine.connect() as conn:
            sources = {s for (s,) in conn.execute(sa.select(SOURCE.c.source).where(SOURCE.c.ci_id == uuid.UUID(device)))}
            left = conn.execute(sa.select(sa.func.count()).select_from(SOURCE).where(
                SOURCE.c.ci_id.in_([uuid.UUID(twin), uuid.UUID(port)]))).scalar()
            actors = conn.execute(sa.text("SELECT object_type, action FROM change_record WHERE actor = 'migration 0016' "
                                          "ORDER BY seq")).all()
            families = {f for (f,) in conn.execute(sa.text("SELECT DISTINCT family FROM ci_identifier"))}
    finally:
        engine.dispose()
    assert sources == {"snmp", "nmap"} and left == 0  # nmap's sightings moved to the survivor
    assert "network_device" not in families
    # the survivor's update, two retirements, the twin's edge ended (the device had it), the port's moved
    assert sorted(tuple(a) for a in actors) == sorted([("ci", "update")] * 3 + [("relationship", "delete")] * 2
                                    + [("relationship", "create")])
    [ci] = hosts(api)
    assert ci["id"] == device and ci["class"] == "network_device"
    for other in (twin, port):
        retired = api.get(f"/api/v1/cis/{other}").json()
        assert retired["status"] == "retired" and retired["attributes"]["merged_into"] == device
        assert "mac_address" not in retired["attributes"]
        assert api.get(f"/api/v1/cis/{other}").json()["relationships"] == []
    detail = api.get(f"/api/v1/cis/{device}").json()
    assert detail["attributes"]["interface_mac"] == [UA_PORT]
    # review finding 8: the addresses it took over are named by its attributes, so an edit keeps their rows
    assert sorted(detail["attributes"]["ip_address"]) == ["10.0.0.1", "10.0.0.2"]
    assert api.patch(f"/api/v1/cis/{device}", json={"owner": "net"}).status_code == 200
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert sorted(v for (v,) in conn.execute(sa.select(IDENT.c.value).where(
                IDENT.c.ci_id == uuid.UUID(device), IDENT.c.key == "ip_address"))) == ["10.0.0.1", "10.0.0.2"]
    finally:
        engine.dispose()
    assert sorted(r["ci_name"] for r in detail["relationships"] if r["type"] == "contains") == ["10.0.0.1", "10.0.0.2"]
    # every CI can be edited, and the next runs of both sources find the one CI without a conflict
    for ci_id in [item["id"] for item in api.get("/api/v1/cis?limit=500").json()["items"]]:
        assert api.patch(f"/api/v1/cis/{ci_id}", json={"owner": "net"}).status_code == 200, ci_id
    for mac in (CHASSIS, UA_PORT):
        out = push(api, batch("nmap", [nmap_host(mac)]))
        assert out["refs"]["n"] == device and out["conflicts"] == []
    out = push(api, batch("snmp", [snmp_device()]))
    assert out["refs"]["d"] == device and out["conflicts"] == []


def test_0016_keeps_the_class_a_higher_source_set(api, database_url):
    # A Linux router SSH knows (a server) and SNMP walked (a device) with one MAC: merged into the device's
    # CI, which becomes the server SSH says it is; no network_device is left.
    device, host = across_0016(database_url, lambda: push(api, batch("snmp", [snmp_device(secondary=())]))["refs"]["d"],
                               lambda _: push(api, batch("ssh", [ssh_host(CHASSIS)]))["refs"]["s"])
    assert host != device
    [ci] = hosts(api)
    assert (ci["id"], ci["class"]) == (device, "server")
    detail = api.get(f"/api/v1/cis/{device}").json()
    assert detail["attributes"]["machine_id"] == "0f8e7a1b2c3d4e5f60718293a4b5c6d7"
    assert detail["provenance"]["class"]["source"] == "ssh"
    out = push(api, batch("ssh", [ssh_host(CHASSIS)]))
    assert out["refs"]["s"] == device and out["conflicts"] == []
    out = push(api, batch("snmp", [snmp_device(secondary=())]))
    assert out["refs"]["d"] == device and out["conflicts"] == []
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "server"
    for ci_id in (device, host):
        assert api.patch(f"/api/v1/cis/{ci_id}", json={"owner": "net"}).status_code == 200


def test_a_network_device_is_found_by_its_mac_in_its_class(api):
    # its rows are in the servers' namespace: search within the class looks there (search._identifier_keys)
    device = push(api, batch("snmp", [snmp_device()]))["refs"]["d"]
    for mac in (CHASSIS, PORT_MAC.upper().replace(":", "-")):
        response = api.get("/api/v1/search", params={"q": mac, "class": "network_device"}, as_="read")
        assert response.status_code == 200, response.text
        assert [(r["id"], r["matched"]["field"]) for r in response.json()["results"]] == [
            (device, "identifier.mac_address")], mac


def test_a_router_nmap_saw_on_two_segments_is_made_and_takes_both_sightings_over(api):
    # review finding 1: nmap saw a new router on two segments, by one port's MAC here and by its address
    # alone there; SNMP reports both: the router is made (by its chassis MAC), not a conflict on every run
    by_mac = push(api, batch("nmap", [nmap_host(PORT_MAC, "10.0.0.2")], scope={"subnets": ["10.0.0.0/24"]}))["refs"]["n"]
    by_address = push(api, batch("nmap", [{"ref": "n", "class": "server", "name": "10.0.1.1",
                                           "identifiers": {"ip_address": ["10.0.1.1"]}, "attributes": {}}],
                                 scope={"subnets": ["10.0.1.0/24"]}))["refs"]["n"]
    device_item = snmp_device()
    device_item["identifiers"]["ip_address"] = ["10.0.0.2", "10.0.1.1"]
    out = push(api, batch("snmp", [device_item]))
    assert out["conflicts"] == []
    device = out["refs"]["d"]
    assert device not in (by_mac, by_address)
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "network_device"
    again = push(api, batch("snmp", [device_item]))
    assert again["conflicts"] == [] and again["refs"]["d"] == device
    # what nmap sees next on either segment is the router
    assert push(api, batch("nmap", [nmap_host(PORT_MAC, "10.0.0.2")]))["refs"]["n"] == device
    sighting = {"ref": "n", "class": "server", "name": "10.0.1.1", "identifiers": {"ip_address": ["10.0.1.1"]},
                "attributes": {}}
    assert push(api, batch("nmap", [sighting]))["refs"]["n"] == device
    # and so with two MAC sightings (two ports' MACs, no address in common)
    first = push(api, batch("nmap", [nmap_host(OTHER, "10.0.2.1")]))["refs"]["n"]
    second = push(api, batch("nmap", [nmap_host("52:54:00:00:00:04", "10.0.3.1")]))["refs"]["n"]
    out = push(api, batch("snmp", [snmp_device(chassis="52:54:00:00:00:05", secondary=(OTHER, "52:54:00:00:00:04"),
                                               name="sw2")]))
    assert out["conflicts"] == [] and out["refs"]["d"] not in (first, second)
    assert push(api, batch("nmap", [nmap_host(OTHER, "10.0.2.1")]))["refs"]["n"] == out["refs"]["d"]


def test_a_secondary_mac_a_host_claimed_meanwhile_is_not_taken_from_it(api, engine, monkeypatch):
    # review finding 2: an SSH batch commits host S with MAC P (strong for it) after the SNMP batch read the
    # index and before it writes: the device's claim of P as a secondary MAC must not delete S's row.
    from app.services.ingest import store
    device = push(api, batch("snmp", [snmp_device(secondary=())]))["refs"]["d"]
    host = push(api, batch("ssh", [ssh_host(PORT_MAC)]))["refs"]["s"]
    where = sa.and_(IDENT.c.key == "mac_address", IDENT.c.value == PORT_MAC)
    with engine.begin() as conn:  # the index as the SNMP batch reads it: S's row not there yet
        conn.execute(IDENT.delete().where(where))
    real = store.claim_identifiers

    def after_identify(conn, *args):
        # S's batch commits now (between this batch's identify and its writes)
        conn.execute(IDENT.insert(), [{"family": "server", "key": "mac_address", "value": PORT_MAC,
                                       "ci_id": uuid.UUID(host)}])
        monkeypatch.setattr(store, "claim_identifiers", real)
        return real(conn, *args)

    monkeypatch.setattr(store, "claim_identifiers", after_identify)
    assert push(api, batch("snmp", [snmp_device()]))["refs"]["d"] == device
    with engine.connect() as conn:
        assert conn.execute(sa.select(IDENT.c.ci_id).where(where)).all() == [(uuid.UUID(host),)]
    for _ in range(2):
        out = push(api, batch("ssh", [ssh_host(PORT_MAC)]))
        assert out["conflicts"] == [] and out["refs"]["s"] == host
        out = push(api, batch("snmp", [snmp_device()]))
        assert out["conflicts"] == [] and out["refs"]["d"] == device


def test_nmap_never_flips_a_class_across_families(api):
    # review finding 6: nmap's OS guess differs between runs (server, then network_device): the class it
    # set stays; only a higher source changes it across families
    nmap = push(api, batch("nmap", [nmap_host(OTHER, "10.0.0.7")]))["refs"]["n"]
    for _ in range(2):
        out = push(api, batch("nmap", [{**nmap_host(OTHER, "10.0.0.7"), "class": "network_device"}]))
        assert out["refs"]["n"] == nmap
        assert api.get(f"/api/v1/cis/{nmap}").json()["class"] == "server"
    push(api, batch("snmp", [snmp_device(chassis=OTHER, secondary=())]))
    assert api.get(f"/api/v1/cis/{nmap}").json()["class"] == "network_device"
    push(api, batch("nmap", [nmap_host(OTHER, "10.0.0.7")]))
    assert api.get(f"/api/v1/cis/{nmap}").json()["class"] == "network_device"


def test_0016_gives_snmp_no_class_it_had_no_evidence_for(api, database_url):
    # review finding 3: before 0016 SNMP made a network_device of a Linux host's net-snmp agent, and nmap
    # a server of the same box; merged into the device, the class is nobody's: nmap's next report decides
    (device, real), twin = across_0016(
        database_url, lambda: (push(api, batch("snmp", [snmp_device(secondary=(), name="web-7")]))["refs"]["d"],
                               push(api, batch("snmp", [snmp_device(chassis=OTHER, secondary=(), name="sw9")]))["refs"]["d"]),
        lambda _: push(api, batch("nmap", [nmap_host(CHASSIS)]))["refs"]["n"])
    assert twin != device
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "network_device"  # merged, nothing decided yet
    for _ in range(2):  # SNMP now leaves that host out; nmap says server
        assert push(api, batch("nmap", [nmap_host(CHASSIS)]))["refs"]["n"] == device
        assert api.get(f"/api/v1/cis/{device}").json()["class"] == "server"
    # a real switch SNMP reports again keeps its class, now on SNMP's evidence, and nmap cannot undo it
    assert push(api, batch("snmp", [snmp_device(chassis=OTHER, secondary=(), name="sw9")]))["refs"]["d"] == real
    assert api.get(f"/api/v1/cis/{real}").json()["provenance"]["class"]["source"] == "snmp"
    assert push(api, batch("nmap", [nmap_host(OTHER, "10.0.0.9")]))["refs"]["n"] == real
    assert api.get(f"/api/v1/cis/{real}").json()["class"] == "network_device"


def test_0016_stamps_a_persons_class_edit_made_before_it(api, database_url):
    # review finding 4: before 0016 a person's class edit was not stamped; the first SNMP run after the
    # upgrade must not undo it
    def persons_edit(engine):
        assert api.patch(f"/api/v1/cis/{device}", json={"class": "server"}).status_code == 200
        ci = sa.table("ci", sa.column("id", sa.Uuid), sa.column("provenance", sa.JSON))
        with engine.begin() as conn:  # main stamped no class: the edit as it was made before 0016
            where = ci.c.id == uuid.UUID(device)
            provenance = conn.execute(sa.select(ci.c.provenance).where(where)).scalar_one()
            assert provenance.pop("class")["source"] == "manual"
            conn.execute(ci.update().where(where).values(provenance=provenance))

    device = push(api, batch("snmp", [snmp_device(secondary=())]))["refs"]["d"]
    across_0016(database_url, lambda: None, persons_edit)
    assert api.get(f"/api/v1/cis/{device}").json()["provenance"]["class"]["source"] == "manual"
    for _ in range(2):
        assert push(api, batch("snmp", [snmp_device(secondary=())]))["refs"]["d"] == device
        assert api.get(f"/api/v1/cis/{device}").json()["class"] == "server"


def test_0016_joins_no_sighting_by_a_mac_two_devices_carry_or_a_local_one(api, database_url):
    # review finding 7: an interface MAC two devices carry (MLAG) names neither, and a locally administered
    # one (software's, repeated across boxes) names nothing: nmap's sightings of them are not merged away
    shared = {"interfaces": [{"name": "po1", "mac_address": UA_PORT}]}

    def devices():
        made = [push(api, batch("snmp", [snmp_device(chassis=chassis, secondary=(), name=name)]))["refs"]["d"]
                for chassis, name in ((CHASSIS, "sw1"), (OTHER, "sw2"))]
        for device in made:
            assert api.patch(f"/api/v1/cis/{device}", json={"attributes": shared}).status_code == 200
        api.patch(f"/api/v1/cis/{made[0]}", json={"attributes": {"interfaces": [
            {"name": "po1", "mac_address": UA_PORT}, {"name": "vlan9", "mac_address": PORT_MAC}]}})
        return made

    _, sightings = across_0016(database_url, devices, lambda _: [
        push(api, batch("nmap", [nmap_host(mac, address)]))["refs"]["n"]
        for mac, address in ((UA_PORT, "10.0.0.2"), (PORT_MAC, "10.0.0.3"))])
    for sighting in sightings:
        assert api.get(f"/api/v1/cis/{sighting}").json()["status"] != "retired"


def ptr_sighting(address, fqdn=None, mac=None):
    """nmap's item from an agent before migration 0017 (--names system), which sent a dotted PTR name as
    a strong fqdn; agents since send it as the attribute dns_name (tests/test_dns_name.py)."""
    identifiers = {"ip_address": [address]}
    if fqdn:
        identifiers["fqdn"] = fqdn
    if mac:
        identifiers["mac_address"] = [mac]
    return {"ref": "n", "class": "server", "name": fqdn or address, "identifiers": identifiers, "attributes": {}}


def holder_of(engine, key, value):
    with engine.connect() as conn:
        return [str(ci) for (ci,) in conn.execute(sa.select(IDENT.c.ci_id).where(IDENT.c.key == key,
                                                                                   IDENT.c.value == value))]


def test_an_address_moves_to_another_machine_that_contradicts_its_holder(api, engine):
    # A DHCP lease reused (second review, finding 1): the host SSH knew at 10.0.0.5 stops reporting; nmap
    # sees another box there, by a PTR name other than the host's fqdn, or by another MAC: a new CI,
    # which takes the address; an SSH report of yet another machine-id takes it too
    old = {"ref": "s", "class": "server", "name": "a", "identifiers": {
        "machine_id": "0f8e7a1b2c3d4e5f60718293a4b5c6d7", "fqdn": "a.example.com", "mac_address": [CHASSIS],
        "ip_address": ["10.0.0.5"]}, "attributes": {}}
    host = push(api, batch("ssh", [old]))["refs"]["s"]
    by_name = push(api, batch("nmap", [ptr_sighting("10.0.0.5", "b.example.com")]))["refs"]["n"]
    assert by_name != host and holder_of(engine, "ip_address", "10.0.0.5") == [by_name]
    push(api, batch("ssh", [old]))  # the old host is back for a moment: it takes its address back
    assert holder_of(engine, "ip_address", "10.0.0.5") == [host]
    by_mac = push(api, batch("nmap", [ptr_sighting("10.0.0.5", mac=PORT_MAC)]))["refs"]["n"]
    assert by_mac not in (host, by_name) and holder_of(engine, "ip_address", "10.0.0.5") == [by_mac]
    new = {**old, "name": "c", "identifiers": {"machine_id": "1f8e7a1b2c3d4e5f60718293a4b5c6d7",
                                               "mac_address": [OTHER], "ip_address": ["10.0.0.5"]}}
    other = push(api, batch("ssh", [new]))["refs"]["s"]
    assert other not in (host, by_name, by_mac) and holder_of(engine, "ip_address", "10.0.0.5") == [other]


def test_a_persons_edit_of_another_field_does_not_pin_the_class(api):
    # second review, finding 2: only a person's class edit (or a CI a person made) pins the class
    sighting = push(api, batch("nmap", [nmap_host(PORT_MAC)]))["refs"]["n"]
    assert api.patch(f"/api/v1/cis/{sighting}", json={"name": "core switch"}).status_code == 200
    assert push(api, batch("snmp", [snmp_device()]))["refs"]["d"] == sighting
    assert api.get(f"/api/v1/cis/{sighting}").json()["class"] == "network_device"
    device = push(api, batch("snmp", [snmp_device(chassis=OTHER, secondary=(), name="sw2")]))["refs"]["d"]
    assert api.patch(f"/api/v1/cis/{device}", json={"attributes": {"location": "rack 4"}}).status_code == 200
    push(api, batch("ssh", [ssh_host(OTHER)]))
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "server"
    made = api.post("/api/v1/cis", json={"class": "network_device", "name": "fw1",
                                         "attributes": {"mac_address": ["52:54:00:00:00:09"]}})
    assert made.status_code == 201, made.text
    push(api, batch("ssh", [ssh_host("52:54:00:00:00:09")]))
    assert api.get(f"/api/v1/cis/{made.json()['id']}").json()["class"] == "network_device"


def test_an_import_row_of_class_server_may_name_a_network_device_by_id(api):
    # review finding 11: the id check compares identity families (one for hosts), not class families
    from tests.integrations.test_import import post_csv, rows_by_number
    device = push(api, batch("snmp", [snmp_device()]))["refs"]["d"]
    service = api.create_ci("service", "shop")
    sheet = f"id,name,attribute.rack\n{device},sw1,R9\n{service['id']},shop,\n"
    rows = rows_by_number(post_csv(api, sheet, "class=server&all_or_nothing=false").json())
    assert (rows[2]["action"], rows[2]["ci"], rows[2].get("errors", [])) == ("update", device, [])
    assert rows[3]["errors"][0]["column"] == "id"
    ci = api.get(f"/api/v1/cis/{device}").json()
    assert (ci["class"], ci["attributes"]["rack"]) == ("network_device", "R9")


MID_A, MID_B, MID_C = "0f8e7a1b2c3d4e5f60718293a4b5c6d7", "1f8e7a1b2c3d4e5f60718293a4b5c6d7", "2f8e7a1b2c3d4e5f60718293a4b5c6d7"
MAC_A, MAC_B, MAC_C = "00:1b:21:00:00:0a", "00:1b:21:00:00:0b", "00:1b:21:00:00:0c"


def ssh_at(name, machine_id, addresses, mac=None, fqdn=None, serial=None):
    identifiers = {"machine_id": machine_id, "ip_address": addresses}
    for key, value in (("mac_address", [mac] if mac else None), ("fqdn", fqdn), ("serial_number", serial)):
        if value:
            identifiers[key] = value
    return {"ref": "s", "class": "server", "name": name, "identifiers": identifiers, "attributes": {}}


def test_a_ptr_name_of_a_nat_address_never_names_the_firewall(api, engine):
    # third review, 1: nmap's PTR name of a firewall's public (NAT) address is no name of the firewall:
    # the web server SSH reports under that name is never the firewall, which stays a network_device
    firewall = {"ref": "d", "class": "network_device", "name": "fw1", "identifiers": {
        "mac_address": ["00:1b:21:00:00:10"], "serial_number": "FGT123", "ip_address": ["203.0.113.10"]},
        "attributes": {"vendor": "Fortinet"}}
    device = push(api, batch("snmp", [firewall]))["refs"]["d"]
    sighting = push(api, batch("nmap", [ptr_sighting("203.0.113.10", "www.example.com")]))["refs"]["n"]
    assert sighting != device and holder_of(engine, "fqdn", "www.example.com") == [sighting]
    web = ssh_at("www", MID_A, ["10.0.1.10"], MAC_A, fqdn="www.example.com")
    out = push(api, batch("ssh", [web]))
    assert out["conflicts"] == [] and out["refs"]["s"] != device
    ci = api.get(f"/api/v1/cis/{device}").json()
    assert ci["class"] == "network_device" and "fqdn" not in ci["attributes"]


@pytest.mark.parametrize("sighting", [ptr_sighting("10.0.0.5", "c.example.com"), ptr_sighting("10.0.0.5", mac=MAC_C)])
def test_a_new_box_at_a_hosts_address_is_no_conflict(api, sighting):
    # third review, 2: nmap's sighting of a new box at A's address by a name or MAC A lacks is not A; the
    # new box's own SSH report (its fqdn or MAC is what nmap saw) is never refused as sharing them with A
    a = push(api, batch("ssh", [ssh_at("a", MID_A, ["10.0.0.5"])]))["refs"]["s"]
    assert push(api, batch("nmap", [sighting]))["refs"]["n"] != a
    out = push(api, batch("ssh", [ssh_at("c", MID_C, ["10.0.0.5"], MAC_C, fqdn="c.example.com")]))
    assert out["conflicts"] == [] and out["refs"]["s"] != a


def test_a_stale_sheet_row_at_a_hosts_address_does_not_block_its_serial(api):
    # third review, 2 (T7): a row with another box's serial at A's address is not A; A's own report of
    # its serial later is no conflict
    a = push(api, batch("ssh", [ssh_at("a", MID_A, ["10.0.0.5"], MAC_A)]))["refs"]["s"]
    row = {"ref": "i", "class": "server", "name": "old-box",
           "identifiers": {"serial_number": "CZX111", "ip_address": ["10.0.0.5"]}, "attributes": {}}
    push(api, batch("import", [row]), as_="write")
    out = push(api, batch("ssh", [ssh_at("a", MID_A, ["10.0.0.5"], MAC_A, serial="CZY222")]))
    assert out["conflicts"] == [] and out["refs"]["s"] == a


def test_0016_keeps_the_class_of_a_device_a_person_made_that_snmp_reported_on(api, database_url):
    # third review, 5: main stamped no class on creation; a device a person made (no source's sighting
    # began with it) and SNMP reported on since is the person's class after 0016, renamed or not
    mac = "00:1b:21:00:00:0d"

    def before():
        made = api.post("/api/v1/cis", json={"class": "network_device", "name": "fw1", "attributes": {"mac_address": [mac]}})
        assert made.status_code == 201, made.text
        device = made.json()["id"]
        assert push(api, batch("snmp", [snmp_device(chassis=mac, secondary=())]))["refs"]["d"] == device
        time.sleep(1.1)  # a rename later than the creation: still the person's device
        assert api.patch(f"/api/v1/cis/{device}", json={"name": "fw1-dc1"}).status_code == 200
        return device

    def as_main_left_it(engine):
        ci = sa.table("ci", sa.column("id", sa.Uuid), sa.column("provenance", sa.JSON))
        with engine.begin() as conn:
            where = ci.c.id == uuid.UUID(device)
            provenance = conn.execute(sa.select(ci.c.provenance).where(where)).scalar_one()
            provenance.pop("class", None)
            conn.execute(ci.update().where(where).values(provenance=provenance))

    device = None

    def made():
        nonlocal device
        device = before()
        return device

    across_0016(database_url, made, as_main_left_it)
    assert api.get(f"/api/v1/cis/{device}").json()["provenance"]["class"]["source"] == "manual"
    assert push(api, batch("nmap", [nmap_host(mac)]))["refs"]["n"] == device
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "network_device"


def test_0016_gives_a_renamed_snmp_device_whose_sightings_a_merge_moved_no_persons_class(api, database_url):
    # fifth review, 3: SNMP's forwarding table made a server CI of a switch's MAC before 0016, then SNMP
    # walked the switch (a network_device with that MAC), and a person renamed it; the merge moves the
    # older sighting onto the device, which is still SNMP's, not the person's
    mac, chassis = "00:1b:21:00:00:21", "00:1b:21:00:00:22"
    made = {}

    def before():
        made["host"] = push(api, batch("snmp", [{"ref": "h", "class": "server", "name": mac,
                                                  "identifiers": {"mac_address": [mac]}, "attributes": {}}]))["refs"]["h"]
        made["device"] = push(api, batch("snmp", [snmp_device(chassis=chassis, secondary=(), name="sw2")]))["refs"]["d"]
        assert api.patch(f"/api/v1/cis/{made['device']}", json={"name": "core-sw2"}).status_code == 200

    def as_main_left_it(engine):
        ci = sa.table("ci", sa.column("id", sa.Uuid), sa.column("provenance", sa.JSON), sa.column("attributes", sa.JSON))
        with engine.begin() as conn:
            where = ci.c.id == uuid.UUID(made["device"])
            provenance, attributes = conn.execute(sa.select(ci.c.provenance, ci.c.attributes).where(where)).one()
            provenance.pop("class", None)
            attributes["mac_address"] = [mac]  # main's device carried the MAC the host CI had
            conn.execute(ci.update().where(where).values(provenance=provenance, attributes=attributes))
            conn.execute(IDENT.update().where(IDENT.c.ci_id == uuid.UUID(made["device"]), IDENT.c.value == chassis)
                         .values(value=mac))

    across_0016(database_url, before, as_main_left_it)
    assert api.get(f"/api/v1/cis/{made['host']}").json()["status"] == "retired"
    assert api.get(f"/api/v1/cis/{made['device']}").json()["provenance"]["class"]["source"] != "manual"


def sheet_device(address="10.0.0.1"):
    return {"ref": "i", "class": "network_device", "name": "core-sw", "identifiers": {
        "serial_number": "FOC999", "ip_address": [address]}, "attributes": {"vendor": "Cisco"}}


def test_a_device_a_sheet_imported_stays_one_when_nmap_guesses_server(api):
    # third review 6: import ranked below nmap for every attribute, the class too, so nmap's OS guess
    # turned a switch from a person's sheet into a server
    device = push(api, batch("import", [sheet_device()]), as_="write")["refs"]["i"]
    sighting = {"ref": "n", "class": "server", "name": "10.0.0.1", "identifiers": {"ip_address": ["10.0.0.1"]},
                "attributes": {"os_family": "Linux"}}
    assert push(api, batch("nmap", [sighting]))["refs"]["n"] == device
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "network_device"
    # and a sheet names the class of a box nmap found first
    found = push(api, batch("nmap", [{**sighting, "identifiers": {"ip_address": ["10.0.0.2"]}}]))["refs"]["n"]
    assert push(api, batch("import", [sheet_device("10.0.0.2") | {"identifiers": {
        "serial_number": "FOC998", "ip_address": ["10.0.0.2"]}}]), as_="write")["refs"]["i"] == found
    assert api.get(f"/api/v1/cis/{found}").json()["class"] == "network_device"


def test_a_rule_for_everything_decides_the_class_too(api):
    rules = [{"class": None, "attribute": None, "sources": ["manual", "ssh", "snmp", "nmap", "import"]}]
    assert api.request("PUT", "/api/v1/precedence", json=rules).status_code == 200
    device = push(api, batch("import", [sheet_device()]), as_="write")["refs"]["i"]
    sighting = {"ref": "n", "class": "server", "name": "10.0.0.1", "identifiers": {"ip_address": ["10.0.0.1"]},
                "attributes": {}}
    assert push(api, batch("nmap", [sighting]))["refs"]["n"] == device
    assert api.get(f"/api/v1/cis/{device}").json()["class"] == "server"


def test_0018_writes_the_class_rule_only_over_the_shipped_rules(api, database_url):
    assert {"class": None, "attribute": "class", "sources": ["manual", "ssh", "snmp", "import", "nmap"]} in \
        api.get("/api/v1/precedence").json()
    engine = make_engine(database_url)
    try:
        migrate_while_running(engine, "0017", down=True)
        assert [r["attribute"] for r in api.get("/api/v1/precedence").json()] == [None]
        # review: beside an admin's rule for a class it would outrank that rule for `class`
        mine = [{"class": None, "attribute": None, "sources": ["manual", "ssh", "snmp", "nmap", "import"]},
                {"class": "network_device", "attribute": None, "sources": ["manual", "import", "ssh", "snmp", "nmap"]}]
        assert api.request("PUT", "/api/v1/precedence", json=mine).status_code == 200
        migrate_while_running(engine)
        assert api.get("/api/v1/precedence").json() == mine
    finally:
        engine.dispose()
