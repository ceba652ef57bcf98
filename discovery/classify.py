"""Classify step: listening processes become application CIs, by a table of rules.

The rules are data. ``DEFAULT_RULES`` is the built-in table; a config file can
put its own rules in front of it (``[[classification.rules]]``). For each
listening socket the first rule that matches wins:

* ``process``: shell-style patterns on the process name as ss(8) reports it
  (the kernel's 15-character ``comm``). A rule with patterns matches only
  sockets whose owner is known.
* ``ports``: the rule matches only these ports. A rule with ports and no
  ``process`` is a fallback for sockets whose owner could not be read (the
  agent was not root); it never overrides a known process name.
* ``kind``: the instance's kind; ``{app}`` stands for the application's own
  name taken from its command line (``python3 /srv/orders_api.py`` ->
  ``orders_api``, ``java -jar billing.jar`` -> ``billing``), so two Python
  services on one host are two CIs, not one "python3".

Sockets that no rule matches (sshd, chronyd...) stay facts on the host.
Sockets held by the same process (v4 and v6, 80 and 443, master and workers)
make one instance; its port is the lowest one it listens on.

The host itself is classified here too: ``network_device`` when nmap's OS
guess or MAC vendor says so (``NETWORK_DEVICE_HINTS``), else ``server`` or
``virtual_machine``.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

from discovery.facts import is_virtual_machine
from discovery.models import HostFacts, Listener, ScanHost
from discovery.sanitize import clean_token

APP_CLASSES = frozenset({"application", "database", "web_server", "load_balancer"})
INTERPRETERS = ("java", "python", "python2*", "python3*", "pypy*", "node", "nodejs",
                "ruby", "perl", "php", "php-fpm*", "dotnet", "gunicorn", "uvicorn")


@dataclass(frozen=True)
class ClassificationRule:
    ci_class: str
    kind: str
    process: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.ci_class not in APP_CLASSES:
            raise ValueError(f"class must be one of {sorted(APP_CLASSES)}, not {self.ci_class!r}")
        if not self.process and not self.ports:
            raise ValueError("a rule needs process patterns, ports, or both")
        if not self.kind:
            raise ValueError("a rule needs a kind")

    def matches(self, process: str | None, port: int) -> bool:
        if self.ports and port not in self.ports:
            return False
        if not self.process:
            return process is None
        return process is not None and any(fnmatch.fnmatchcase(process, p) for p in self.process)


def _rule(ci_class: str, kind: str, process=(), ports=()) -> ClassificationRule:
    return ClassificationRule(ci_class, kind, tuple(process), tuple(ports))


DEFAULT_RULES: tuple[ClassificationRule, ...] = (
    _rule("database", "postgresql", ("postgres", "postmaster")),
    _rule("database", "mysql", ("mysqld",)),
    _rule("database", "mariadb", ("mariadbd",)),
    _rule("database", "redis", ("redis-server",)),
    _rule("database", "valkey", ("valkey-server",)),
    _rule("database", "mongodb", ("mongod", "mongos")),
    _rule("database", "elasticsearch", ports=(9200, 9300), process=("java",)),
    _rule("database", "memcached", ("memcached",)),
    _rule("web_server", "nginx", ("nginx",)),
    _rule("web_server", "apache", ("apache2", "httpd")),
    _rule("web_server", "caddy", ("caddy",)),
    _rule("web_server", "lighttpd", ("lighttpd",)),
    _rule("load_balancer", "haproxy", ("haproxy",)),
    _rule("load_balancer", "envoy", ("envoy",)),
    _rule("load_balancer", "traefik", ("traefik",)),
    _rule("application", "rabbitmq", ("beam.smp",), ports=(5671, 5672, 15672)),
    _rule("application", "kafka", ("java",), ports=(9092,)),
    _rule("application", "mosquitto", ("mosquitto",)),
    _rule("application", "nats", ("nats-server",)),
    _rule("application", "{app}", INTERPRETERS),
    # Owner unknown (agent not root): fall back to well-known ports.
    _rule("database", "postgresql", ports=(5432,)),
    _rule("database", "mysql", ports=(3306,)),
    _rule("database", "redis", ports=(6379,)),
    _rule("database", "mongodb", ports=(27017,)),
    _rule("web_server", "http", ports=(80, 443)),
)

# nmap OS classes and MAC vendors that mean "network device", as data.
NETWORK_DEVICE_HINTS = {
    "os_types": frozenset({"router", "switch", "firewall", "wap", "broadband router",
                           "load balancer", "bridge", "hub", "terminal server", "proxy server"}),
    "vendors": ("cisco", "juniper", "arista", "mikrotik", "routerboard", "ubiquiti", "fortinet",
                "palo alto", "aruba", "hpe networking", "netgear", "tp-link", "zyxel",
                "huawei", "brocade", "extreme networks", "f5 networks", "sonicwall", "watchguard"),
}


def rules_from_config(entries: list[dict]) -> list[ClassificationRule]:
    """Rules as written in the config file: class, kind, process (list), ports (list)."""
    rules = []
    for entry in entries:
        rules.append(ClassificationRule(
            ci_class=str(entry["class"]),
            kind=str(entry["kind"]),
            process=tuple(str(p) for p in entry.get("process", ())),
            ports=tuple(int(p) for p in entry.get("ports", ())),
        ))
    return rules


def effective_rules(extra: list[ClassificationRule] | None = None) -> tuple[ClassificationRule, ...]:
    """Config rules first, then the built-in table."""
    return tuple(extra or ()) + DEFAULT_RULES


def is_interpreter(process: str | None) -> bool:
    return process is not None and any(fnmatch.fnmatchcase(process, p) for p in INTERPRETERS)


def application_name(process: str, command_line: str | None) -> str:
    """An interpreted program's own name from its command line, else the process name."""
    if command_line and is_interpreter(process):
        args = command_line.split()
        name = _name_from_args(args[1:]) if args else None
        if name:
            return name
    return clean_token(process) or "unknown"


# Options of interpreters that take a value, so the value is not the program.
_VALUE_OPTIONS = frozenset({"-cp", "-classpath", "--class-path", "-W", "-X", "-r", "--require",
                            "--config", "-c", "-b", "--bind", "-w", "--workers", "-k"})


# Programs that only launch the real application named later on the line.
_LAUNCHERS = frozenset({"gunicorn", "uvicorn", "hypercorn", "daphne", "celery", "flask", "waitress-serve",
                        "pm2", "ts-node", "npm", "yarn", "uwsgi"})


def _name_from_args(args: list[str]) -> str | None:
    launcher = None
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg in ("-jar", "-m") and i + 1 < len(args):
            name = _program_name(args[i + 1])
            skip = True
        elif arg in _VALUE_OPTIONS:
            skip = True
            continue
        elif arg.startswith("-"):
            continue
        else:
            name = _program_name(arg)
        if not name:
            continue
        if name.split(".", 1)[0] in _LAUNCHERS:
            launcher = launcher or name.split(".", 1)[0]
            continue
        return name
    return launcher


def _program_name(arg: str) -> str | None:
    base = os.path.basename(arg)
    for suffix in (".py", ".js", ".mjs", ".cjs", ".rb", ".pl", ".php", ".jar", ".dll"):
        base = base.removesuffix(suffix)
    base = base.split(":", 1)[0]  # gunicorn module:app
    if base.count(".") >= 2:  # a Java main class: com.example.Orders
        base = base.rsplit(".", 1)[-1]
    return clean_token(base) or None


@dataclass
class AppInstance:
    """One application CI found on one host."""

    host: HostFacts
    ci_class: str
    kind: str  # "postgresql", "nginx", or an application's own name
    process: str | None
    pids: frozenset[int] = frozenset()
    endpoints: set[tuple[str, int]] = field(default_factory=set)  # (listen address, port)
    client_only: bool = False  # made for a connection's source; listens on nothing

    @property
    def ports(self) -> list[int]:
        return sorted({port for _, port in self.endpoints})

    @property
    def port(self) -> int:
        """The instance's port for its key: the lowest it listens on, 0 for a pure client."""
        ports = self.ports
        return ports[0] if ports else 0


def _kind_for(rule: ClassificationRule, listener: Listener, facts: HostFacts) -> str:
    if rule.kind != "{app}":
        return rule.kind
    pid = min(listener.pids) if listener.pids else None
    return application_name(listener.process or "unknown", facts.command_lines.get(pid) if pid else None)


def classify_host(facts: HostFacts, rules: tuple[ClassificationRule, ...] = DEFAULT_RULES) -> list[AppInstance]:
    """Listening sockets of one host -> application instances, one per owning process."""
    instances: dict[tuple, AppInstance] = {}
    for listener in sorted(facts.listeners, key=lambda s: (s.port, s.address)):
        rule = next((r for r in rules if r.matches(listener.process, listener.port)), None)
        if rule is None:
            continue
        kind = _kind_for(rule, listener, facts)
        owner = min(listener.pids) if listener.pids else ("port", listener.port)
        key = (rule.ci_class, kind, owner)
        instance = instances.get(key)
        if instance is None:
            instance = instances[key] = AppInstance(
                host=facts, ci_class=rule.ci_class, kind=kind, process=listener.process,
                pids=frozenset(listener.pids))
        instance.endpoints.add((listener.address, listener.port))
        instance.pids = instance.pids | frozenset(listener.pids)
    return sorted(instances.values(), key=lambda a: (a.port, a.kind))


def host_class(facts: HostFacts | None = None, scan: ScanHost | None = None) -> str:
    """server, virtual_machine or network_device."""
    if scan is not None:
        types = {t.lower() for t in scan.os_types}
        vendor = " ".join([scan.vendor or "", *scan.os_vendors]).lower()
        if types & NETWORK_DEVICE_HINTS["os_types"] or (
                vendor and any(v in vendor for v in NETWORK_DEVICE_HINTS["vendors"])
                and "general purpose" not in types):
            return "network_device"
        return "server"
    if facts is not None and is_virtual_machine(facts):
        return "virtual_machine"
    return "server"
