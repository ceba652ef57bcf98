"""nmap runs: a scope with IPv4 and IPv6 subnets scans each family with its own flags (real nmap)."""

from __future__ import annotations

import socket

import pytest

from discovery.nmapscan import parse_nmap, run_nmap, scan_plan


def test_each_family_gets_its_own_run_and_excludes():
    plan = scan_plan(["2001:db8::/120", "10.0.0.0/24", "10.1.0.0/24"],
                     exclude=["10.0.0.1", "2001:db8::1", " "])
    assert plan == [(["10.0.0.0/24", "10.1.0.0/24"], ["10.0.0.1"], False),
                    (["2001:db8::/120"], ["2001:db8::1"], True)]
    assert scan_plan(["10.0.0.0/24"], exclude=["2001:db8::1"]) == [(["10.0.0.0/24"], [], False)]
    assert scan_plan(["2001:db8::/120"]) == [(["2001:db8::/120"], [], True)]


@pytest.fixture
def listening_on_both_loopbacks():
    """One TCP port open on 127.0.0.1 and on ::1."""
    v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    port = v6.getsockname()[1]
    try:
        v4 = socket.create_server(("127.0.0.1", port))
    except OSError:
        v6.close()
        pytest.skip("could not listen on the same port on both loopbacks")
    try:
        yield port
    finally:
        v4.close()
        v6.close()


def test_a_mixed_scope_finds_hosts_of_both_families(nmap_program, listening_on_both_loopbacks):
    # With -6 applied to the whole scope, nmap skipped 127.0.0.1 ("IPv4 target given with -6").
    port = listening_on_both_loopbacks
    hosts = parse_nmap(run_nmap(["127.0.0.1/32", "::1/128"], ports=str(port), names="off", timeout=120))
    assert {(h.address, tuple((p.port, p.state) for p in h.ports)) for h in hosts} == {
        ("127.0.0.1", ((port, "open"),)), ("::1", ((port, "open"),))}
