"""nmap's reverse-DNS name is the `dns_name` of the address, never a host's identifier (issue #15,
finding 5): the host or device at an address is one CI whatever DNS calls the address, and alerts and
service entry points still find the host by that name. Through the real ingest API and the agent's own
batch builder, on SQLite and PostgreSQL; and migration 0017 forgets the PTR names older agents sent as
an fqdn."""

import uuid

import pytest
import sqlalchemy as sa

from app.core.db import make_engine
from app.models import CIIdentifier
from app.services import alert_binding, service_map
from discovery.batch import build_scan_batch
from discovery.models import ScanHost
from tests.integrations.test_incidents import am_alert, am_payload, post_am
from tests.test_host_identity import migrate_while_running
from tests.test_ingest import batch, push

IDENT = CIIdentifier.__table__
MID_A, MID_B = "0f8e7a1b2c3d4e5f60718293a4b5c6d7", "1f8e7a1b2c3d4e5f60718293a4b5c6d7"


def nmap(api, *hosts: ScanHost) -> dict:
    """The agent's own scan batch for these hosts, pushed: ref -> CI id, by address."""
    body = build_scan_batch(list(hosts), run_id=f"scan-{hosts[0].address}-{len(hosts)}", subnets=["10.0.0.0/24"])
    out = push(api, body)
    assert out["conflicts"] == [] and out["errors"] == [], out
    return {ref.split(":", 1)[1]: ci for ref, ci in out["refs"].items() if ref.startswith("h:")}


def ssh(name, machine_id, addresses, fqdn=None):
    identifiers = {"machine_id": machine_id, "ip_address": addresses}
    if fqdn:
        identifiers["fqdn"] = fqdn
    return {"ref": "s", "class": "server", "name": name, "identifiers": identifiers, "attributes": {}}


def live_hosts(api):
    return [ci for cls in ("server", "network_device")
            for ci in api.get(f"/api/v1/cis?class={cls}").json()["items"] if ci["status"] != "retired"]


def fqdn_rows(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(IDENT.c.value).where(IDENT.c.key == "fqdn")).scalars().all()


def test_the_scan_batch_puts_the_ptr_name_on_the_address():
    hosts = [ScanHost("10.0.0.5", hostname="web-1.example.com"), ScanHost("10.0.0.6", hostname="printer")]
    body = build_scan_batch(hosts, run_id="r", subnets=["10.0.0.0/24"])
    web, web_ip, printer, printer_ip = body["items"]
    assert web["identifiers"] == {"ip_address": ["10.0.0.5"]} and web["name"] == "web-1.example.com"
    assert "dns_name" not in web["attributes"] and web_ip["attributes"]["dns_name"] == "web-1.example.com"
    assert printer["identifiers"] == {"ip_address": ["10.0.0.6"]} and printer_ip["attributes"]["dns_name"] == "printer"


def address_ci(api, address):
    [ci] = [ci for ci in api.get("/api/v1/cis?class=ip_address").json()["items"] if ci["name"] == address]
    return api.get(f"/api/v1/cis/{ci['id']}").json()


@pytest.mark.parametrize("nmap_first", [True, False])
def test_a_host_whose_hostname_f_is_short_and_its_ptr_name_are_one_ci(api, engine, nmap_first):
    sighting = ScanHost("10.0.0.5", hostname="web-1.example.com")
    if nmap_first:
        seen = nmap(api, sighting)["10.0.0.5"]
        host = push(api, batch("ssh", [ssh("web-1", MID_A, ["10.0.0.5"])]))["refs"]["s"]
        assert host == seen  # nmap's CI, known by nothing but its address, became the host
    else:
        host = push(api, batch("ssh", [ssh("web-1", MID_A, ["10.0.0.5"])]))["refs"]["s"]
    for _ in range(2):  # and every later scan is the host
        assert nmap(api, sighting)["10.0.0.5"] == host
    [ci] = live_hosts(api)
    detail = api.get(f"/api/v1/cis/{host}").json()
    assert ci["id"] == host and detail["name"] == "web-1"  # SSH's name outranks nmap's
    assert address_ci(api, "10.0.0.5")["attributes"]["dns_name"] == "web-1.example.com"
    assert fqdn_rows(engine) == []


def test_a_host_with_two_addresses_keeps_both_ptr_names_and_scans_change_nothing(api):
    # review: on the host, one name per address flipped on every scan (a change record each time)
    host = push(api, batch("ssh", [ssh("web-1", MID_A, ["10.0.0.5", "10.0.0.6"])]))["refs"]["s"]
    scan = (ScanHost("10.0.0.5", hostname="web-1.prod.example"), ScanHost("10.0.0.6", hostname="web-1.mgmt.example"))
    assert set(nmap(api, *scan).values()) == {host}
    out = push(api, build_scan_batch(list(scan), run_id="again", subnets=["10.0.0.0/24"]))
    assert out["counts"]["updated"] == 0 and out["counts"]["created"] == 0, out["counts"]
    assert bound(api, "two", ["web-1.prod.example", "web-1.mgmt.example:9100"]) == {
        "web-1.prod.example": "web-1", "web-1.mgmt.example:9100": "web-1"}


def test_a_switchs_ptr_name_is_the_switch(api, engine):
    device = {"ref": "d", "class": "network_device", "name": "sw1", "identifiers": {
        "mac_address": ["00:1b:21:00:00:10"], "serial_number": "FOC123", "ip_address": ["10.0.0.1"]},
        "attributes": {"vendor": "Cisco"}}
    switch = push(api, batch("snmp", [device]))["refs"]["d"]
    assert nmap(api, ScanHost("10.0.0.1", hostname="sw1-mgmt.example.net"))["10.0.0.1"] == switch
    [ci] = live_hosts(api)
    assert ci["class"] == "network_device" and fqdn_rows(engine) == []


def test_a_nat_address_ptr_name_stays_with_the_firewall_and_alerts_find_the_web_server(api):
    firewall = {"ref": "d", "class": "network_device", "name": "fw1", "identifiers": {
        "mac_address": ["00:1b:21:00:00:10"], "serial_number": "FGT123", "ip_address": ["10.0.0.254"]},
        "attributes": {"vendor": "Fortinet"}}
    fw = push(api, batch("snmp", [firewall]))["refs"]["d"]
    assert nmap(api, ScanHost("10.0.0.254", hostname="www.example.com"))["10.0.0.254"] == fw
    web = push(api, batch("ssh", [ssh("www", MID_A, ["10.0.1.10"], fqdn="www.example.com")]))["refs"]["s"]
    assert web != fw
    assert bound(api, "nat", ["www.example.com:443", "www"]) == {"www.example.com:443": "www", "www": "www"}


def bound(api, group: str, instances: list[str]) -> dict[str, str | None]:
    response = post_am(api, am_payload(group, [am_alert(f"{group}{n}", instance=i) for n, i in enumerate(instances)]))
    assert response.status_code == 200, response.text
    detail = api.get(f"/api/v1/incidents/{response.json()['id']}", as_="read").json()
    return {a["labels"]["instance"]: a["ci"] and a["ci"]["name"] for a in detail["alerts"]}


def test_alerts_find_a_host_by_the_name_dns_gives_its_address(api):
    # SSH knows web-1 by a short name and `hostname -f` web-1.corp; DNS calls its address web-1.example.com
    push(api, batch("ssh", [ssh("web-1", MID_A, ["10.0.0.5"], fqdn="web-1.corp")]))
    nmap(api, ScanHost("10.0.0.5", hostname="web-1.example.com"),
         ScanHost("10.0.0.7", hostname="printer-3.example.com"),
         ScanHost("10.0.0.8", hostname="pool.example.com"), ScanHost("10.0.0.9", hostname="pool.example.com"),
         ScanHost("10.0.0.10", hostname="Mixed.Example.com"))
    # an SSH host whose own name another's PTR name also starts with: its own name wins
    push(api, batch("ssh", [ssh("printer", MID_B, ["10.0.0.20"])]))
    nmap(api, ScanHost("10.0.0.21", hostname="printer.example.com"))
    assert bound(api, "dns", ["web-1.example.com:9100", "web-1.corp", "web-1", "printer-3", "printer-3.example.com",
                              "pool.example.com", "pool", "mixed", "printer"]) == {
        "web-1.example.com:9100": "web-1", "web-1.corp": "web-1", "web-1": "web-1",
        "printer-3": "printer-3.example.com", "printer-3.example.com": "printer-3.example.com",
        "pool.example.com": None, "pool": None,  # two addresses DNS calls alike: no guess
        "mixed": "Mixed.Example.com",  # compared in lower case
        "printer": "printer",
    }


def test_the_dns_name_is_read_from_its_index(api, engine):
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Enough rows (rolled back below) that the planner weighs its indexes, not the table's pages.
            conn.exec_driver_sql(
                "INSERT INTO ci (id, ci_class, name, status, tags, attributes, provenance, created_at, updated_at, "
                "version) SELECT gen_random_uuid(), 'ip_address', '10.1.' || n, 'active', '[]', "
                "jsonb_build_object('dns_name', 'h' || n || '.example.com'), '{}', now(), now(), 1 "
                "FROM generate_series(1, 20000) AS n")
            conn.exec_driver_sql("ANALYZE ci")
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        explain = "EXPLAIN" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
        plans = []
        for statement in (alert_binding._by_dns_name(conn, ["ip_address"], ["web-1.example.com", "db.example.com"]),
                          alert_binding._dns_names_of_hostnames(conn, ["ip_address"], ["web-1", "db"])):
            compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
            plans.append("\n".join(str(row[-1]) for row in conn.exec_driver_sql(f"{explain} {compiled}")))
        conn.rollback()
    for plan in plans:
        assert "ix_ci_dns_name" in plan, plan
        assert "SCAN ci\n" not in plan + "\n" and "Seq Scan" not in plan, plan


def test_entry_points_know_a_host_by_its_addresss_dns_name(api, engine):
    seen = nmap(api, ScanHost("10.0.0.5", hostname="nas-1.example.com"))["10.0.0.5"]
    host = push(api, batch("ssh", [ssh("nas-1", MID_A, ["10.0.0.5"])]))["refs"]["s"]
    assert host == seen
    address = address_ci(api, "10.0.0.5")["id"]
    with engine.connect() as conn:
        registry = api.client.app.state.registry.get(conn=conn)
        keys = service_map.host_keys_of_cis(conn, registry, [uuid.UUID(address)])
        assert alert_binding.find_hosts(conn, registry, {"nas-1.example.com", "nas-1"}) == {
            "nas-1.example.com": uuid.UUID(host), "nas-1": uuid.UUID(host)}
    assert {"nas-1.example.com", "nas-1"} <= keys


def test_other_classes_dns_names_never_crowd_a_host_out(api):
    # review: the prefix read 10 rows before keeping the addresses' classes
    for n in range(12):
        api.create_ci("service", f"svc-{n}", attributes={"dns_name": f"web-1.svc{n:02d}.example.com"})
    nmap(api, ScanHost("10.0.0.5", hostname="web-1.zz.example.com"))
    assert bound(api, "crowd", ["web-1"]) == {"web-1": "web-1.zz.example.com"}


@pytest.mark.parametrize("value", ["x" * 4000, "é" * 1500, ["a.example.com"] * 500, 12, {"a": "b"}])
def test_any_dns_name_a_person_writes_is_stored(api, value):
    # review: a value over a btree entry's size failed the write with a 500 on PostgreSQL
    ci = api.create_ci("ip_address", "10.0.0.9", attributes={"address": "10.0.0.9", "dns_name": value})
    assert api.get(f"/api/v1/cis/{ci['id']}").json()["attributes"]["dns_name"] == value
    assert bound(api, "odd", ["x", "a.example.com"]) == {"x": None, "a.example.com": None}


def test_0017_forgets_the_ptr_names_older_agents_sent_as_an_fqdn(api, database_url):
    engine = make_engine(database_url)
    try:
        old_agent = {"ref": "n", "class": "server", "name": "web-1.example.com",
                     "identifiers": {"fqdn": "web-1.example.com", "ip_address": ["10.0.0.5"]}, "attributes": {}}
        made = push(api, batch("nmap", [old_agent]))["refs"]["n"]
        mixed = push(api, batch("import", [{**old_agent, "name": "db-1", "identifiers": {
            "fqdn": "db-1.example.com", "ip_address": ["10.0.0.7"]}}]), as_="write")["refs"]["n"]
        push(api, batch("nmap", [{**old_agent, "name": "db-1.example.com", "identifiers": {
            "fqdn": "db-1.example.com", "ip_address": ["10.0.0.7"]}}]))  # nmap's PTR agrees with the sheet
        migrate_while_running(engine, "0016", down=True)
        migrate_while_running(engine)
        assert sorted(fqdn_rows(engine)) == ["db-1.example.com"]  # the sheet's stays
        ci = api.get(f"/api/v1/cis/{made}").json()
        assert "fqdn" not in ci["attributes"] and ci["version"] == 2
        history = api.get(f"/api/v1/cis/{made}/history").json()["items"]
        assert history[0]["actor"] == "migration 0017"
        # the host SSH reports at that address is now the CI nmap made, and nmap's scans go to it
        host = push(api, batch("ssh", [ssh("web-1", MID_A, ["10.0.0.5"])]))["refs"]["s"]
        assert host == made and nmap(api, ScanHost("10.0.0.5", hostname="web-1.example.com"))["10.0.0.5"] == made
        assert api.get(f"/api/v1/cis/{mixed}").json()["attributes"]["fqdn"] == "db-1.example.com"
    finally:
        engine.dispose()


def test_a_short_ptr_name_is_found_whole(api):
    # second review: `printer` (a PTR name without a dot) was only tried as the prefix `printer.`
    push(api, batch("ssh", [ssh("prn-01", MID_A, ["10.0.0.6"])]))
    nmap(api, ScanHost("10.0.0.6", hostname="printer"))
    assert bound(api, "short", ["printer"]) == {"printer": "prn-01"}


def mapped_through_a_dns_name(api, app):
    """The service-map estate, a service whose entry point is web-1's address's PTR name, mapped."""
    from tests.test_service_map import estate_batch, ingest, keep_in_step, the_map
    ingest(api, estate_batch())
    service = api.create_ci("service", "shop", attributes={"entry_points": ["web-1.example.com:80"]})
    nmap(api, ScanHost("10.0.0.5", hostname="web-1.example.com"))
    keep_in_step(app)
    assert the_map(api, service["id"])["status"] == "mapped"
    return lambda: (keep_in_step(app), the_map(api, service["id"])["status"])[1]


def test_a_service_map_follows_its_entry_points_dns_name(api, app):
    # second review: the address CI is no member of the map, so its renamed PTR refreshed nothing
    status = mapped_through_a_dns_name(api, app)
    nmap(api, ScanHost("10.0.0.5", hostname="other.example.com"))
    assert status() != "mapped"


def test_a_service_map_follows_its_entry_points_address_deleted(api, app):
    # third review: the deleted address CI's row is gone, so its address is read from the delete's diff
    status = mapped_through_a_dns_name(api, app)
    assert api.delete(f"/api/v1/cis/{address_ci(api, '10.0.0.5')['id']}").status_code == 204
    assert status() != "mapped"
