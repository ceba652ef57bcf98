"""The SNMP collector against real agents: net-snmp's snmpd (v2c and v3 authPriv) with lldpd's LLDP-MIB over AgentX.

The lab (snmp_lab.py) fixes every name, MAC and address, so the collected facts are asserted whole.
"""

from __future__ import annotations

import os

import pytest

from discovery.snmp import oids
from discovery.snmp.client import SnmpCredentials, SnmpSettings, collect_devices
from discovery.snmp.models import (
    ArpEntry,
    DeviceAddress,
    DeviceInterface,
    LldpNeighbour,
)
from tests.discovery.conftest import require
from tests.discovery.snmp_lab import (
    COMMUNITY,
    V3_AUTH_KEY,
    V3_PRIV_KEY,
    V3_USER,
    SnmpLab,
    missing_requirements,
)

pytestmark = pytest.mark.lab

V2C = SnmpCredentials("2c", community=COMMUNITY)
V3 = SnmpCredentials("3", user=V3_USER, auth_key=V3_AUTH_KEY, priv_key=V3_PRIV_KEY, auth_protocol="SHA",
                     priv_protocol="AES")


@pytest.fixture(scope="module")
def snmp_lab():
    require(missing_requirements())
    with SnmpLab() as lab:
        yield lab


def expected_interfaces(lab: SnmpLab, name: str) -> list[DeviceInterface]:
    switch = lab.switches[name]
    ports = ["swp9", *lab.host_ports(name)]
    macs = {"mgmt0": f"02:00:00:78:{switch.number:02x}:ff", "br0": switch.mac, "swp9": switch.mac}
    rows = [DeviceInterface(1, "lo", "lo", None, None, 10, "up", "up", 24)]
    for index, port in enumerate(["mgmt0", "br0", *ports], start=2):
        rows.append(DeviceInterface(index, port, port, None, macs.get(port) or lab.port_mac(name, port), 10000,
                                    "up", "up", 6))
    return rows


def test_v2c_walk_collects_the_exact_facts(snmp_lab):
    results = collect_devices(snmp_lab.targets(), SnmpSettings(V2C, timeout=2, retries=1))
    assert [(r.target, r.status, r.error) for r in results] == [(t, "ok", None) for t in snmp_lab.targets()]
    sw1, sw2 = (r.facts for r in results)
    h1, h2, h3, h4 = (snmp_lab.hosts[n] for n in ("h1", "h2", "h3", "h4"))
    uname = os.uname()
    for facts, switch in ((sw1, snmp_lab.switches["sw1"]), (sw2, snmp_lab.switches["sw2"])):
        assert (facts.system_name, facts.object_id, facts.vendor, facts.contact, facts.location, facts.chassis_mac,
                facts.system_description) == (
            switch.name, "1.3.6.1.4.1.8072.3.2.10", "net-snmp", "netops@lab.example", f"lab rack {switch.number}",
            switch.mac, f"{uname.sysname} {uname.nodename} {uname.release} {uname.version} {uname.machine}")
        assert facts.uptime_seconds is not None and 0 <= facts.uptime_seconds < 600
        assert facts.interfaces == expected_interfaces(snmp_lab, switch.name)
        assert facts.addresses == [DeviceAddress(switch.lan_address, 24, "br0"),
                                   DeviceAddress(switch.management, 30, "mgmt0"), DeviceAddress("127.0.0.1", 8, "lo")]
        # the switch pinged every host; this machine's side of the /30 answered the agent's requests
        assert facts.arp == [*(ArpEntry(h.address, h.mac, "br0") for h in (h1, h2, h3, h4)),
                             ArpEntry(switch.agent_side, f"02:00:00:78:ff:{switch.number:02x}", "mgmt0")]
        assert facts.forwarding == []  # a Linux bridge's table is not in net-snmp (recorded walks cover it)
        assert facts.warnings == []
    # lldpd sends the port's MAC as its id and its name as the description; hosts are stations, switches bridges
    sw1_mac, sw2_mac = snmp_lab.switches["sw1"].mac, snmp_lab.switches["sw2"].mac
    assert sw1.lldp == [
        LldpNeighbour("swp9", sw2_mac, sw2_mac, sw2_mac, "swp9", "sw2", "sw2 (Karta SNMP lab)", ("bridge",),
                      ("10.78.0.3",)),
        LldpNeighbour("swp1", h1.mac, h1.mac, h1.mac, "eth0", "h1", "h1 (Karta SNMP lab)", ("station",),
                      (h1.address,)),
        LldpNeighbour("swp3", h4.mac, h4.mac, h4.mac, "eth0", "h4", "h4 (Karta SNMP lab)", ("station",),
                      (h4.address,)),
    ]
    assert sw2.lldp == [
        LldpNeighbour("swp9", sw1_mac, sw1_mac, sw1_mac, "swp9", "sw1", "sw1 (Karta SNMP lab)", ("bridge",),
                      ("10.78.0.2",)),
        LldpNeighbour("swp1", h2.mac, h2.mac, h2.mac, "eth0", "h2", "h2 (Karta SNMP lab)", ("station",),
                      (h2.address,)),
        # h4's second cable: the same chassis (eth0's MAC), the port is eth1
        LldpNeighbour("swp3", h4.mac, h4.mac, h4.second_mac, "eth1", "h4", "h4 (Karta SNMP lab)", ("station",),
                      (h4.address,)),
    ]


def test_v3_auth_priv_collects_what_v2c_does(snmp_lab):
    v2c = collect_devices(snmp_lab.targets(), SnmpSettings(V2C))
    v3 = collect_devices(snmp_lab.targets(), SnmpSettings(V3))
    assert [r.status for r in v3] == ["ok", "ok"]
    for a, b in zip(v2c, v3, strict=True):
        a.facts.uptime_seconds = b.facts.uptime_seconds = None  # the clock moved between the walks
        assert a.facts == b.facts


@pytest.mark.parametrize(("credentials", "status"), [
    (SnmpCredentials("2c", community="not-the-community"), "timeout"),  # v2c answers a wrong community with silence
    (SnmpCredentials("3", user=V3_USER, auth_key="wrong-auth-key", priv_key=V3_PRIV_KEY), "refused"),
    # net-snmp drops a request it cannot decrypt without a word
    (SnmpCredentials("3", user=V3_USER, auth_key=V3_AUTH_KEY, priv_key="wrong-priv-key"), "timeout"),
    (SnmpCredentials("3", user=V3_USER, auth_key=V3_AUTH_KEY), "refused"),  # authNoPriv: the user needs priv
    (SnmpCredentials("3", user="nobody", auth_key=V3_AUTH_KEY, priv_key=V3_PRIV_KEY), "refused"),
])
def test_wrong_credentials_fail_that_device_only(snmp_lab, credentials, status):
    (result,) = collect_devices(snmp_lab.targets()[:1], SnmpSettings(credentials, timeout=0.5, retries=0))
    assert (result.status, result.facts) == (status, None)
    assert COMMUNITY not in repr(credentials) and V3_PRIV_KEY not in repr(credentials)


def test_a_silent_address_times_out_within_its_bounds(snmp_lab):
    """An address with nothing on UDP 161 costs timeout x (retries + 1), not more: 3 retries more cost 3
    timeouts more. Measured as that difference, so the engine's own start, which a loaded machine
    stretches (4.2 s for a nominal 1 s once, at a load of 5), is the same on both sides."""
    import time

    def silent_seconds(retries: int) -> float:
        started = time.monotonic()
        (result,) = collect_devices([snmp_lab.switches["sw1"].agent_side],
                                    SnmpSettings(V2C, timeout=0.5, retries=retries))
        assert result.status == "timeout"
        return time.monotonic() - started

    once, four_times = silent_seconds(0), silent_seconds(3)
    assert once < 30 and 0.75 <= four_times - once <= 3.5, (once, four_times)


def test_a_device_running_past_its_time_is_partial_with_what_it_gave(snmp_lab, monkeypatch):
    """A device that answers but takes longer than device_seconds (a huge forwarding table, here an agent
    slowed down after each table) keeps what it sent, and its run ends nothing (scope.run_is_complete)."""
    import asyncio

    from discovery.snmp.client import _Session
    from discovery.snmp.scope import run_is_complete

    real_walk = _Session.walk

    async def slow_walk(self, roots, into):
        await real_walk(self, roots, into)
        await asyncio.sleep(5)

    monkeypatch.setattr(_Session, "walk", slow_walk)
    # The budget leaves the first walk time to finish on a busy machine (it failed at 1 s with a load of 3-4);
    # the agent's 5 s pause after it is what runs past it.
    (result,) = collect_devices(snmp_lab.targets()[:1], SnmpSettings(V2C, timeout=2, retries=1, device_seconds=3))
    assert (result.status, result.error) == ("partial", "walk took over 3s")
    assert result.facts.system_name == "sw1" and result.facts.interfaces
    assert result.facts.warnings == ["walk stopped: walk took over 3s"]
    notes: list[str] = []
    assert not run_is_complete([result], notes)
    (silent,) = collect_devices([snmp_lab.switches["sw1"].agent_side],
                                SnmpSettings(V2C, timeout=0.5, retries=0, device_seconds=0.2))
    assert (silent.status, silent.facts) == ("timeout", None)


def test_a_table_cut_at_its_row_bound_makes_the_device_partial(snmp_lab, monkeypatch):
    """A forwarding table longer than MAX_ROWS_PER_TABLE (here a bound of 3 rows) is said, and the walk is
    partial: the run must not end the attachments the rows past the bound would have confirmed."""
    from discovery.snmp import client

    monkeypatch.setattr(client, "MAX_ROWS_PER_TABLE", 3)
    (result,) = collect_devices(snmp_lab.targets()[:1], SnmpSettings(V2C, timeout=2, retries=1))
    assert result.status == "partial" and result.facts.system_name == "sw1"
    assert len(result.facts.interfaces) == 3
    assert f"table {'.'.join(map(str, oids.IF_DESCR))} cut at 3 rows" in result.facts.warnings
    assert result.facts.truncated and result.error.endswith("cut at a bound")
