"""Every parser on recorded output (tests/discovery/data/), including hostile output."""

from __future__ import annotations

import json

import pytest

from discovery import parse_network as net
from discovery import parse_system as sysp
from discovery.facts import facts_from_output
from discovery.models import Connection, Disk, Filesystem, Interface, InterfaceAddress, Listener
from discovery.nmapscan import ScanError, parse_nmap, parse_nmap_xml
from discovery.sanitize import clean_text

TOKEN = "0123456789abcdef"
M = f"@@KARTA-{TOKEN}"


def recorded(data_dir, name: str):
    facts, reply = facts_from_output("10.77.0.12", (data_dir / f"reply_{name}.txt").read_bytes(), TOKEN)
    return facts, reply


def test_recorded_db_host_parses_to_exact_facts(data_dir):
    facts, reply = recorded(data_dir, "db-1")
    assert reply.finished
    assert (facts.hostname, facts.fqdn, facts.os_id, facts.os_version) == ("db-1", "db-1.lab", "ubuntu", "24.04")
    assert facts.os_pretty_name == "ubuntu 24.04 (karta lab)"
    assert (facts.kernel, facts.architecture) == ("6.18.44-fc-v669", "x86_64")
    assert facts.machine_id == "226ea11ed6c5225df34ceae5a27e5df3"
    assert (facts.serial_number, facts.product_uuid) == (None, None)  # no DMI on that VM
    assert (facts.cpu_count, facts.cpu_model, facts.memory_mb, facts.swap_mb) == (2, "AMD EPYC", 24105, 0)
    assert facts.disks == [Disk("vda", 274877906944, None, None, True)]  # zram0 of size 0 dropped
    assert facts.filesystems == [Filesystem("/dev/vda", "ext4", "/", 264212084, 24160948)]
    assert facts.interfaces == [Interface("lo", None, "UNKNOWN", 65536, "loopback"),
                                Interface("eth0", "52:54:00:77:00:0c", "UP", 1500, "ether")]
    assert facts.addresses == [InterfaceAddress("lo", "127.0.0.1", 8, "inet", "host"),
                               InterfaceAddress("eth0", "10.77.0.12", 24, "inet", "global")]
    assert set(facts.listeners) == {
        Listener("10.77.0.12", 22, "sshd", (9,)), Listener("10.77.0.12", 6379, "redis-server", (10,)),
        Listener("10.77.0.12", 5432, "postgres", (11,)), Listener("127.0.0.1", 6379, "redis-server", (10,)),
        Listener("127.0.0.1", 5432, "postgres", (11,))}
    assert set(facts.connections) == {
        Connection("10.77.0.12", 6379, "10.77.0.11", 45712, "redis-server", (10,)),
        Connection("127.0.0.1", 6379, "127.0.0.1", 55338, "redis-server", (10,)),
        Connection("10.77.0.12", 5432, "10.77.0.13", 43732, "postgres", (25,)),
        Connection("127.0.0.1", 55338, "127.0.0.1", 6379, "redis-cli", (24,))}
    assert facts.ephemeral_ports == (32768, 60999)
    assert len(facts.packages) == 790 and ("bash", "5.2.15-2+b8") in facts.packages
    assert facts.services == []
    assert facts.warnings == ["services: exit status 1"]  # no systemd in the lab


def test_recorded_web_and_app_hosts(data_dir):
    web, _ = recorded(data_dir, "web-1")
    assert set(web.listeners) == {Listener("10.77.0.11", 8080, "python3", (13,)),
                                  Listener("10.77.0.11", 22, "sshd", (9,)),
                                  Listener("10.77.0.11", 80, "nginx", (10, 11))}
    assert web.connections == [Connection("10.77.0.11", 45712, "10.77.0.12", 6379, "python3", (13,))]
    assert web.command_lines[13].endswith("orders_api.py 10.77.0.11 8080 10.77.0.12 6379 1800")
    assert web.packages is None  # not asked for
    app, _ = recorded(data_dir, "app-1")
    assert (app.os_id, app.os_version) == ("rocky", "9.4")
    assert app.connections == [Connection("10.77.0.13", 43732, "10.77.0.12", 5432, "psql", (11,))]


def test_ss_listening_in_every_address_shape(data_dir):
    listeners = net.parse_listening((data_dir / "ss_listening_mixed.txt").read_text())
    assert listeners == [
        Listener("0.0.0.0", 5432, "postgres", (812,)),
        Listener("::", 5432, "postgres", (812,)),
        Listener("*", 80, "apache2", (1190, 1199, 1201)),
        Listener("*", 443, "apache2", (1190, 1199, 1201)),
        Listener("127.0.0.53", 53, "systemd-resolve", (640,)),
        Listener("10.1.2.3", 8443, "java", (2200,)),  # ::ffff:10.1.2.3 folded to IPv4
        Listener("0.0.0.0", 9000, "tmux: server", (99,)),
        Listener("10.1.2.3", 6380, None, ()),  # not root: owner unknown
        Listener("fe80::1", 22, "sshd", (700,)),
    ]  # garbage, an invalid address and an invalid port are skipped


def test_ss_established_with_and_without_the_state_column(data_dir):
    connections = net.parse_established((data_dir / "ss_established_mixed.txt").read_text())
    assert connections == [
        Connection("10.1.2.3", 41234, "10.1.2.9", 5432, "java", (2200,)),
        Connection("10.1.2.3", 41236, "10.1.2.9", 5432, "java", (2200,)),
        Connection("10.1.2.3", 22, "10.9.9.9", 51515, "sshd", (3000, 3001)),
        Connection("10.1.2.3", 8443, "10.1.2.50", 60001, "java", (2200,)),
        Connection("127.0.0.1", 5432, "127.0.0.1", 38000, "postgres", (900,)),
        Connection("::1", 38002, "::1", 6379, None, ()),
        Connection("2001:db8::3", 50000, "2001:db8::9", 443, "curl", (4000,)),
        Connection("10.1.2.3", 41240, "10.1.2.10", 6379, "node", (5000,)),
    ]


def test_ip_links_and_addresses_of_a_busy_host(data_dir):
    links = net.parse_links((data_dir / "ip_link_multi.txt").read_text())
    assert [(i.name, i.mac, i.kind, i.mtu) for i in links] == [
        ("lo", None, "loopback", 65536), ("eno1", "3c:ec:ef:10:20:30", "ether", 1500),
        ("bond0", "3c:ec:ef:10:20:30", "ether", 9000), ("docker0", "02:42:8a:11:22:33", "ether", 1500),
        ("veth1a2b3c", "6e:11:22:33:44:55", "ether", 1500), ("wg0", None, "none", 1420)]
    addresses = net.parse_addresses((data_dir / "ip_addr_multi.txt").read_text())
    assert [(a.interface, a.address, a.prefix_length, a.family) for a in addresses] == [
        ("lo", "127.0.0.1", 8, "inet"), ("lo", "::1", 128, "inet6"), ("bond0", "10.1.2.3", 24, "inet"),
        ("bond0", "10.1.2.100", 32, "inet"), ("bond0", "2001:db8::3", 64, "inet6"),
        ("bond0", "fe80::3eec:efff:fe10:2030", 64, "inet6"), ("docker0", "172.17.0.1", 16, "inet"),
        ("wg0", "10.200.0.5", 24, "inet")]


@pytest.mark.parametrize("text, expected", [
    ("32768\t60999\n", (32768, 60999)), ("1024 65535", (1024, 65535)), ("60999 32768", None), ("x", None), ("", None),
])
def test_port_range(text, expected):
    assert net.parse_port_range(text) == expected


def test_os_release_quoting_and_first_value_wins():
    text = ('NAME="Red Hat Enterprise Linux"\nID="rhel"\nVERSION_ID=\'9.4\'\n'
            'PRETTY_NAME="A \\"quoted\\" name"\nID=other\nlower=x\n')
    assert sysp.parse_os_release(text) == {"NAME": "Red Hat Enterprise Linux", "ID": "rhel", "VERSION_ID": "9.4",
                                           "PRETTY_NAME": 'A "quoted" name'}


def test_dmi_drops_placeholders_and_normalizes_uuids():
    text = ("/sys/class/dmi/id/product_serial:To Be Filled By O.E.M.\n"
            "/sys/class/dmi/id/product_uuid:4C4C4544-0042-3510-8051-B4C04F4B4E32\n"
            "/sys/class/dmi/id/sys_vendor:Dell Inc.\n/sys/class/dmi/id/board_serial:.CN7016345R0099.\n"
            "/etc/shadow:root:x\n")
    assert sysp.parse_dmi(text) == {"product_uuid": "4c4c4544-0042-3510-8051-b4c04f4b4e32",
                                    "sys_vendor": "Dell Inc.", "board_serial": ".CN7016345R0099."}
    assert sysp.parse_dmi("/sys/class/dmi/id/product_uuid:00000000-0000-0000-0000-000000000000\n") == {}
    assert sysp.parse_dmi("/sys/class/dmi/id/product_uuid:not-a-uuid\n") == {}


@pytest.mark.parametrize("text, expected", [
    ("web-1.lab\n", "web-1.lab"), ("WEB-1.Example.ORG.\n", "web-1.example.org"), ("web-1\n", None),
    ("localhost.localdomain\n", None), ("evil;$(id).lab\n", None), ("", None),
])
def test_fqdn(text, expected):
    assert sysp.parse_fqdn(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("78bf5ad7c6acf53eccae1689de27346d\n", "78bf5ad7c6acf53eccae1689de27346d"),
    ("78BF5AD7C6ACF53ECCAE1689DE27346D\n", "78bf5ad7c6acf53eccae1689de27346d"),
    ("0" * 32, None), ("uninitialized\n", None), ("not-a-machine-id; rm -rf /", None),
])
def test_machine_id(text, expected):
    assert sysp.parse_machine_id(text) == expected


def test_lsblk_df_services_and_processes():
    lsblk = 'NAME="nvme0n1" TYPE="disk" SIZE="512110190592" MODEL="Samsung SSD 980" SERIAL="S64DNX0R" ROTA="0"\n' \
            'NAME="sr0" TYPE="rom" SIZE="1073741312" MODEL="" SERIAL="" ROTA="1"\n'
    assert sysp.parse_lsblk(lsblk) == [Disk("nvme0n1", 512110190592, "Samsung SSD 980", "S64DNX0R", False)]
    df = ("Filesystem Type 1024-blocks Used Available Capacity Mounted on\n"
          "/dev/sda1 xfs 1000 10 990 1% /srv/my data\ntmpfs tmpfs 5 0 5 0% /run\n")
    assert sysp.parse_df(df) == [Filesystem("/dev/sda1", "xfs", "/srv/my data", 1000, 10)]
    services = "cron.service loaded active running Regular background program\nssh.service loaded active running x\n"
    assert sysp.parse_services(services) == ["cron.service", "ssh.service"]
    assert sysp.parse_processes("  1 /sbin/init splash\n  42 [kthreadd]\nx y\n") == {1: "/sbin/init splash",
                                                                                       42: "[kthreadd]"}


@pytest.mark.parametrize("text, expected", [
    ("bash\t5.2.15-2\nlibc6\t2.36-9\n", [("bash", "5.2.15-2"), ("libc6", "2.36-9")]),  # dpkg-query
    ("openssl-libs\t3.0.7-27.el9\n", [("openssl-libs", "3.0.7-27.el9")]),  # rpm
    ("musl-1.2.4-r2\nca-certificates-bundle-20230506-r0\n",
     [("musl", "1.2.4-r2"), ("ca-certificates-bundle", "20230506-r0")]),  # apk info -v
])
def test_packages(text, expected):
    assert sysp.parse_packages(text) == expected


def test_hostile_reply_metacharacters_escapes_and_binary():
    hostile = (f"\n{M} hostname\n".encode() + b"web;$(reboot)`id`\x1b[31m|&\x07\xff\xfe\n"
               + f"\n{M} rc 0\n\n{M} os_release\n".encode()
               + b'ID="deb\x00ian"\nVERSION_ID=12\x1b]0;pwned\x07\n' + bytes(range(256)) * 4
               + f"\n{M} rc 0\n\n{M} machine_id\n".encode() + b"\x00" * 32
               + f"\n{M} rc 0\n\n{M} end\n".encode())
    facts, reply = facts_from_output("10.0.0.9", hostile, TOKEN)
    assert reply.finished
    assert facts.hostname == "web;$(reboot)`id`|&\ufffd\ufffd"
    assert (facts.os_id, facts.os_version) == ("debian", "12")
    assert facts.machine_id is None
    assert json.dumps(vars(facts), default=str)  # serializable


def test_a_ten_megabyte_section_is_capped_and_the_host_still_parses():
    huge = (f"\n{M} hostname\nbig\n\n{M} rc 0\n\n{M} processes\n".encode()
            + b"  7 " + b"A" * 10_000_000 + f"\n\n{M} rc 0\n\n{M} end\n".encode())
    facts, _ = facts_from_output("10.0.0.9", huge, TOKEN)
    assert facts.hostname == "big"
    assert len(facts.command_lines[7]) == 4096


def test_clean_text_removes_controls_escapes_and_bidi_overrides():
    assert clean_text("a\tb\nc\x00d\u202eevil\u2066\x1b[2Je\x9b1mf", 100) == "a b cdevilef"
    assert clean_text("Cisco IOS\r\nTechnical Support: x\n  Copyright (c)\u2028end") == "Cisco IOS Technical Support: x Copyright (c) end"
    assert clean_text("a\n\n  b\r\n\r\nc") == "a b c"
    assert clean_text("x" * 5000) == "x" * 1024
    assert clean_text("\udcff lone surrogate") == "? lone surrogate"


def test_nmap_lab_recording(data_dir, nmap_program):
    hosts = parse_nmap(parse_nmap_xml((data_dir / "nmap_lab.xml").read_text()))
    assert [(h.address, h.hostname, h.mac) for h in hosts] == [("10.77.0.1", None, None)] + [
        (f"10.77.0.{n}", f"{name}.lab", f"52:54:00:77:00:{n:02x}")
        for n, name in ((11, "web-1"), (12, "db-1"), (13, "app-1"), (14, "evil-1"), (15, "flood-1"),
                        (16, "locked-1"), (17, "stranger-1"))]
    db = hosts[2]
    assert [(p.port, p.state, p.service) for p in db.ports] == [
        (22, "open", "ssh"), (5432, "open", "postgresql"), (6379, "open", "redis")]
    assert (db.os_name, db.os_accuracy, db.os_types, db.vendor) == (
        "Linux 5.3 - 5.4", 96, ["general purpose"], "QEMU virtual NIC")


def test_nmap_router_and_hostile_service_strings(data_dir, nmap_program):
    router, app = parse_nmap(parse_nmap_xml((data_dir / "nmap_router.xml").read_text()))
    assert (router.os_types, router.os_vendors, router.vendor) == (["router"], ["Cisco"], "Cisco Systems")
    assert [p.port for p in router.ports if p.state == "open"] == [22, 23]
    assert app.ports[0].product == "evil\\x1b[2Jhttpd"  # nmap's own escaping; the bidi override is gone
    assert app.ports[0].version == "1.0 beta"


def test_nmap_garbage_is_a_scan_error(nmap_program):
    with pytest.raises(ScanError):
        parse_nmap_xml("<nmaprun><host>")
