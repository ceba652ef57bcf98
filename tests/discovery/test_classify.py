"""The classification table: listening processes -> application CIs, rules as data."""

from __future__ import annotations

import pytest

from discovery.classify import (
    DEFAULT_RULES,
    ClassificationRule,
    application_name,
    classify_host,
    effective_rules,
    host_class,
    rules_from_config,
)
from discovery.models import HostFacts, Listener, ScanHost


def facts_with(*listeners: Listener, command_lines: dict | None = None, virt: str | None = None) -> HostFacts:
    return HostFacts(target="10.0.0.5", hostname="h", listeners=list(listeners),
                     command_lines=command_lines or {}, virtualization=virt)


def classified(facts: HostFacts, rules=DEFAULT_RULES) -> set[tuple]:
    return {(a.ci_class, a.kind, a.port, tuple(a.ports)) for a in classify_host(facts, rules)}


@pytest.mark.parametrize("process, port, expected", [
    ("postgres", 5432, ("database", "postgresql")),
    ("mysqld", 3306, ("database", "mysql")),
    ("mariadbd", 3306, ("database", "mariadb")),
    ("redis-server", 6379, ("database", "redis")),
    ("mongod", 27017, ("database", "mongodb")),
    ("nginx", 80, ("web_server", "nginx")),
    ("apache2", 80, ("web_server", "apache")),
    ("httpd", 8080, ("web_server", "apache")),
    ("haproxy", 443, ("load_balancer", "haproxy")),
    ("envoy", 10000, ("load_balancer", "envoy")),
    ("java", 9200, ("database", "elasticsearch")),
    ("beam.smp", 5672, ("application", "rabbitmq")),
    ("node", 3000, ("application", "node")),
    (None, 5432, ("database", "postgresql")),  # owner unknown: the port fallback
    (None, 80, ("web_server", "http")),
])
def test_default_table(process, port, expected):
    pids = (100,) if process else ()
    apps = classify_host(facts_with(Listener("0.0.0.0", port, process, pids)))
    assert [(a.ci_class, a.kind) for a in apps] == [expected]


@pytest.mark.parametrize("process, port", [("sshd", 22), ("chronyd", 323), ("systemd-resolve", 53), (None, 22),
                                           ("python3", 5432)])
def test_unknown_or_non_application_listeners_make_no_ci_and_ports_never_override_a_known_name(process, port):
    apps = classify_host(facts_with(Listener("0.0.0.0", port, process, (1,) if process else ())))
    if process == "python3":  # a Python program on 5432 is that program, not PostgreSQL
        assert [(a.ci_class, a.kind) for a in apps] == [("application", "python3")]
    else:
        assert apps == []


def test_one_instance_per_owning_process_with_its_lowest_port():
    facts = facts_with(
        Listener("0.0.0.0", 80, "nginx", (10, 11)), Listener("::", 80, "nginx", (10, 11)),
        Listener("0.0.0.0", 443, "nginx", (10, 11)),
        Listener("0.0.0.0", 6379, "redis-server", (20,)), Listener("0.0.0.0", 6380, "redis-server", (21,)))
    assert classified(facts) == {("web_server", "nginx", 80, (80, 443)),
                                 ("database", "redis", 6379, (6379,)), ("database", "redis", 6380, (6380,))}


@pytest.mark.parametrize("process, command_line, expected", [
    ("python3", "/usr/bin/python3 /srv/orders/orders_api.py --port 8080", "orders_api"),
    ("python3", "python3 -u -m uvicorn app:api --port 8000", "app"),
    ("python3", "python3 -m http.server 8000", "http.server"),
    ("java", "java -Xmx2g -Dx=y -jar /opt/billing/billing-2.1.jar --server.port=8081", "billing-2.1"),
    ("java", "/usr/bin/java -cp /opt/lib/*:/opt/app.jar com.example.inventory.InventoryService", "InventoryService"),
    ("node", "node --max-old-space-size=4096 /srv/web/server.js", "server"),
    ("gunicorn", "/venv/bin/python /venv/bin/gunicorn -w 4 shop.wsgi:application", "shop.wsgi"),
    ("python3", "/venv/bin/python /venv/bin/celery", "celery"),
    ("python3", "python3", "python3"),
    ("psql", "psql -h 10.0.0.12 -U postgres", "psql"),  # not an interpreter: its own name
    ("python3", "python3 /tmp/$(reboot);`id`.py", "reboot-id"),
])
def test_application_names_come_from_the_command_line_for_interpreters(process, command_line, expected):
    assert application_name(process, command_line) == expected


def test_interpreted_services_are_named_by_program_so_two_python_services_are_two_cis():
    facts = facts_with(Listener("0.0.0.0", 8080, "python3", (7,)), Listener("0.0.0.0", 9090, "python3", (8,)),
                       command_lines={7: "python3 /srv/orders_api.py", 8: "python3 /srv/reports.py"})
    assert classified(facts) == {("application", "orders_api", 8080, (8080,)),
                                 ("application", "reports", 9090, (9090,))}


def test_config_rules_come_first_and_are_validated():
    extra = rules_from_config([{"class": "application", "kind": "billing", "process": ["billingd"]},
                               {"class": "load_balancer", "kind": "edge-nginx", "process": ["nginx"],
                                "ports": [443]}])
    facts = facts_with(Listener("0.0.0.0", 7000, "billingd", (5,)), Listener("0.0.0.0", 443, "nginx", (9,)),
                       Listener("0.0.0.0", 8080, "nginx", (12,)))
    assert classified(facts, effective_rules(extra)) == {
        ("application", "billing", 7000, (7000,)), ("load_balancer", "edge-nginx", 443, (443,)),
        ("web_server", "nginx", 8080, (8080,))}
    with pytest.raises(ValueError):
        ClassificationRule("firewall", "x", ("x",))
    with pytest.raises(ValueError):
        ClassificationRule("application", "x")
    with pytest.raises(KeyError):
        rules_from_config([{"kind": "x", "process": ["x"]}])


def test_host_class():
    assert host_class(HostFacts("h", virtualization="kvm")) == "virtual_machine"
    assert host_class(HostFacts("h", virtualization="none")) == "server"
    assert host_class(HostFacts("h", virtualization="docker")) == "server"
    assert host_class(scan=ScanHost("192.0.2.1", os_types=["router"])) == "network_device"
    assert host_class(scan=ScanHost("192.0.2.2", vendor="Juniper Networks")) == "network_device"
    assert host_class(scan=ScanHost("192.0.2.3", vendor="Cisco Systems", os_types=["general purpose"])) == "server"
    assert host_class(scan=ScanHost("192.0.2.4", vendor="QEMU virtual NIC")) == "server"
