"""The dependency mapper: connections -> depends_on, and the connections that must make no edge."""

from __future__ import annotations

from discovery.classify import classify_host
from discovery.dependencies import RemoteApplication, map_dependencies
from discovery.facts import facts_from_output
from discovery.models import Connection, HostFacts, InterfaceAddress, Listener

TOKEN = "0123456789abcdef"


def host(name: str, address: str, listeners=(), connections=(), command_lines=None, extra_addresses=()):
    addresses = [InterfaceAddress("lo", "127.0.0.1", 8, "inet"), InterfaceAddress("eth0", address, 24, "inet")]
    addresses += [InterfaceAddress("docker0", a, 16, "inet") for a in extra_addresses]
    return HostFacts(target=address, hostname=name, addresses=addresses, listeners=list(listeners),
                     connections=list(connections), command_lines=command_lines or {})


def mapped(*hosts: HostFacts, remote_lookup=None):
    pairs = [(h, classify_host(h)) for h in hosts]
    result = map_dependencies(pairs, remote_lookup)
    edges = {(f"{d.source.kind}@{d.source.host.hostname}",
              f"{d.target.kind}@{d.target.host.hostname}" if hasattr(d.target, "host") else d.target.name,
              d.port) for d in result.dependencies}
    return edges, result


def test_recorded_lab_hosts_give_exactly_the_two_real_edges(data_dir):
    hosts = []
    for name, address in (("web-1", "10.77.0.11"), ("db-1", "10.77.0.12"), ("app-1", "10.77.0.13")):
        facts, _ = facts_from_output(address, (data_dir / f"reply_{name}.txt").read_bytes(), TOKEN)
        hosts.append(facts)
    edges, result = mapped(*hosts)
    assert edges == {("orders_api@web-1", "redis@db-1", 6379), ("psql@app-1", "postgresql@db-1", 5432)}
    assert [(c.kind, c.host.hostname, c.client_only) for c in result.client_apps] == [("psql", "app-1", True)]
    assert result.unresolved == {}


def test_the_server_side_of_a_connection_makes_no_edge_to_the_ephemeral_port():
    db = host("db", "10.0.0.2", [Listener("0.0.0.0", 5432, "postgres", (9,))],
              [Connection("10.0.0.2", 5432, "10.0.0.1", 45000, "postgres", (31,))])
    # web listens on 45000 by coincidence with a classified app: still no edge from db.
    web = host("web", "10.0.0.1", [Listener("0.0.0.0", 45000, "node", (4,))])
    edges, result = mapped(db, web)
    assert edges == set() and result.client_apps == []


def test_loopback_and_own_address_chatter_make_no_edge():
    db = host("db", "10.0.0.2", [Listener("0.0.0.0", 6379, "redis-server", (9,)),
                                 Listener("0.0.0.0", 8000, "python3", (5,))],
              [Connection("127.0.0.1", 41000, "127.0.0.1", 6379, "python3", (5,)),
               Connection("::1", 41002, "::1", 6379, "redis-cli", (6,)),
               Connection("10.0.0.2", 41004, "10.0.0.2", 6379, "python3", (5,))])
    edges, result = mapped(db)
    assert edges == set() and result.client_apps == []


def test_a_port_where_no_known_application_listens_makes_no_edge():
    a = host("a", "10.0.0.1", [], [Connection("10.0.0.1", 50000, "10.0.0.2", 22, "ssh", (3,)),
                                   Connection("10.0.0.1", 50002, "10.0.0.2", 41000, "curl", (4,))])
    b = host("b", "10.0.0.2", [Listener("0.0.0.0", 22, "sshd", (1,))])
    edges, result = mapped(a, b)
    assert edges == set()
    assert result.unresolved == {}  # in-run peers are never "unresolved"


def test_a_client_that_is_a_listening_app_is_the_source_and_pools_make_one_edge():
    web = host("web", "10.0.0.1", [Listener("0.0.0.0", 8080, "java", (70,))],
               [Connection("10.0.0.1", 41000 + n, "10.0.0.2", 5432, "java", (70,)) for n in range(20)],
               command_lines={70: "java -jar /opt/orders.jar"})
    db = host("db", "10.0.0.2", [Listener("10.0.0.2", 5432, "postgres", (9,))])
    edges, result = mapped(web, db)
    assert edges == {("orders@web", "postgresql@db", 5432)}
    assert result.client_apps == []


def test_two_client_processes_of_one_program_make_one_client_ci():
    app = host("app", "10.0.0.3", [], [Connection("10.0.0.3", 41000, "10.0.0.2", 5432, "psql", (10,)),
                                       Connection("10.0.0.3", 41001, "10.0.0.2", 5432, "psql", (11,)),
                                       Connection("10.0.0.3", 41002, "10.0.0.2", 5432, None, ())])
    db = host("db", "10.0.0.2", [Listener("0.0.0.0", 5432, "postgres", (9,))])
    edges, result = mapped(app, db)
    assert edges == {("psql@app", "postgresql@db", 5432)}
    assert [(c.kind, c.pids) for c in result.client_apps] == [("psql", frozenset({10, 11}))]


def test_an_address_on_two_hosts_is_ambiguous_and_gets_no_edge():
    a = host("a", "10.0.0.1", [Listener("0.0.0.0", 6379, "redis-server", (9,))], extra_addresses=["172.17.0.1"])
    b = host("b", "10.0.0.2", [], [Connection("10.0.0.2", 41000, "172.17.0.1", 6379, "node", (5,)),
                                   Connection("10.0.0.2", 41001, "10.0.0.1", 6379, "node", (5,))],
             extra_addresses=["172.17.0.1"])
    edges, _ = mapped(a, b)
    assert edges == {("node@b", "redis@a", 6379)}


def test_peers_outside_the_run_go_to_the_remote_lookup_or_stay_unresolved():
    calls = []

    def lookup(address: str, port: int):
        calls.append((address, port))
        if (address, port) == ("10.9.0.5", 5432):
            return RemoteApplication("0b0f6a52-6f4c-4f57-9d0c-5d1f1f6c2a11", "postgresql@pg-9:5432")
        return None

    web = host("web", "10.0.0.1", [Listener("0.0.0.0", 8080, "node", (4,))],
               [Connection("10.0.0.1", 41000, "10.9.0.5", 5432, "node", (4,)),
                Connection("10.0.0.1", 41001, "10.9.0.5", 5432, "node", (4,)),
                Connection("10.0.0.1", 41002, "10.9.0.6", 443, "node", (4,)),
                Connection("10.0.0.1", 41003, "10.9.0.7", 50123, "node", (4,))])
    edges, result = mapped(web, remote_lookup=lookup)
    assert edges == {("node@web", "postgresql@pg-9:5432", 5432)}
    assert calls == [("10.9.0.5", 5432), ("10.9.0.6", 443), ("10.9.0.7", 50123)]  # cached per endpoint
    # An ephemeral peer port names nothing worth keeping; 443 is kept as an outbound fact.
    assert result.unresolved == {"10.0.0.1": [("node", "10.9.0.6", 443)]}
    _, without = mapped(web)
    assert without.unresolved == {"10.0.0.1": [("node", "10.9.0.5", 5432), ("node", "10.9.0.6", 443)]}
