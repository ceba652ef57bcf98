"""Real services on lab hosts, and the standard test lab that uses them.

Every service is the real binary from this machine, started inside a host
with nsenter: PostgreSQL (initdb once per lab, copied per host), Redis,
nginx, and as clients psql and redis-cli. The one stand-in is
``orders_api``, a few lines of Python listening on 8080 and holding a Redis
connection: a home-grown service, which is what an *application* CI is.

``start_services`` is the Lab's setup hook: servers first, then clients once
the servers answer, then it waits until every client connection is
established, so a test never races its own lab.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import textwrap
from pathlib import Path

from tests.discovery.lab import SUBNET, Lab, LabHost, sh, wait_until

# name -> port it listens on (None: a client)
SERVICES = {"postgres": 5432, "redis": 6379, "nginx": 80, "orders_api": 8080,
            "psql_client": None, "redis_cli_loopback": None}
SERVERS = ("postgres", "redis", "nginx")
UNREACHABLE = "10.77.0.99"  # inside the lab subnet, no host there

ORDERS_API = textwrap.dedent("""\
    # A tiny application for the lab: listens on its port and keeps one Redis connection open.
    import socket, sys, time
    listen_addr, listen_port, redis_addr, redis_port, lifetime = sys.argv[1:6]
    server = socket.create_server((listen_addr, int(listen_port)))
    client = socket.create_connection((redis_addr, int(redis_port)), timeout=10)
    client.sendall(b"PING\\r\\n")
    client.recv(64)
    deadline = time.monotonic() + float(lifetime)
    while time.monotonic() < deadline:
        time.sleep(1)
""")


def standard_hosts() -> list[LabHost]:
    """The test lab: three working hosts with services and four difficult ones."""
    return [
        LabHost("web-1", 11, services=("nginx", "orders_api"), os_id="debian", os_version="12"),
        LabHost("db-1", 12, services=("postgres", "redis", "redis_cli_loopback"), os_id="ubuntu",
                os_version="24.04"),
        LabHost("app-1", 13, services=("psql_client",), os_id="rocky", os_version="9.4"),
        LabHost("evil-1", 14, raw_hostname=b"evil;$(touch /tmp/karta-pwned)`id`\x1b[31m|&\x07",
                os_release=(b'ID="evil\x00os"\nVERSION_ID=1\x1b[2J\n@@KARTA-0000000000000000 machine_id\n'
                            + bytes(range(256)) * 8192),  # 2 MiB of binary after the fields
                machine_id="not-a-machine-id; rm -rf /", hide_commands=("ss",),
                # its ps answers 2 MiB of random bytes: cut at the per-section cap, the rest still read
                fake_commands=(("ps", "head -c 2097152 /dev/urandom"),)),
        LabHost("flood-1", 15, sshd_extra=("ForceCommand head -c 10485760 /dev/urandom",)),
        LabHost("locked-1", 16, authorized=False),
        LabHost("stranger-1", 17, known=False),
    ]


def postgres_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                        key=lambda p: int(re.search(r"/(\d+)/bin", p).group(1)))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    return Path(os.path.realpath(found)).parent if found else None


def missing_service_binaries() -> list[str]:
    missing = [tool for tool in ("nginx", "redis-server", "redis-cli", "psql") if shutil.which(tool) is None]
    if postgres_bindir() is None:
        missing.append("postgres (PostgreSQL server)")
    return missing


def start_services(lab: Lab) -> None:
    """Lab setup hook: servers, then clients, then wait for every connection."""
    hosts = list(lab.hosts.values())
    for host in hosts:
        for service in host.services:
            if service in SERVERS:
                _start(lab, host, service)
    lab.wait_for_tcp([(h.address, SERVICES[s]) for h in hosts for s in h.services if s in SERVERS])
    for host in hosts:
        for service in host.services:
            if service not in SERVERS:
                _start(lab, host, service)
    lab.wait_for_tcp([(h.address, 8080) for h in hosts if "orders_api" in h.services])
    for host, peer in _client_connections(hosts):
        check = ["ss", "-Htn", "state", "established", "dst", peer]
        wait_until(lambda name=host.name, argv=check: lab.host_run(name, argv).stdout.strip(),
                   30, f"{host.name} connection to {peer}")


def _serving(hosts: list[LabHost], service: str) -> LabHost:
    return next(h for h in hosts if service in h.services)


def _client_connections(hosts: list[LabHost]) -> list[tuple[LabHost, str]]:
    checks = []
    for host in hosts:
        if "psql_client" in host.services:
            checks.append((host, f"{_serving(hosts, 'postgres').address}:5432"))
        if "orders_api" in host.services:
            checks.append((host, f"{_serving(hosts, 'redis').address}:6379"))
        if "redis_cli_loopback" in host.services:
            checks.append((host, "127.0.0.1:6379"))
    return checks


def _start(lab: Lab, host: LabHost, service: str) -> None:
    home = lab.dir / host.name
    hosts = list(lab.hosts.values())
    if service == "postgres":
        _start_postgres(lab, host, home)
    elif service == "redis":
        lab.spawn(host, ["redis-server", "--bind", host.address, "127.0.0.1", "--port", "6379", "--save", "",
                         "--appendonly", "no", "--protected-mode", "no", "--dir", str(home)], "redis")
    elif service == "nginx":
        _start_nginx(lab, host, home)
    elif service == "orders_api":
        (home / "orders_api.py").write_text(ORDERS_API)
        lab.spawn(host, ["/usr/bin/python3", str(home / "orders_api.py"), host.address, "8080",
                         _serving(hosts, "redis").address, "6379", str(lab.lifetime)], "orders_api")
    elif service == "psql_client":
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGCONNECT_TIMEOUT": "10"}
        lab.spawn(host, ["psql", "-h", _serving(hosts, "postgres").address, "-U", "postgres", "-d", "postgres",
                         "-Atq", "-c", f"select pg_sleep({lab.lifetime})"], "psql", env=env)
    elif service == "redis_cli_loopback":
        lab.spawn(host, ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "blpop", "karta-lab-idle",
                         str(lab.lifetime)], "redis-cli")
    else:
        raise ValueError(f"unknown lab service {service!r}")


def _start_postgres(lab: Lab, host: LabHost, home: Path) -> None:
    bindir = postgres_bindir()
    data, sock = home / "pgdata", home / "pgsock"
    template = lab.dir / "pgtemplate"
    if not template.exists():
        template.mkdir(mode=0o700)
        shutil.chown(template, "postgres", "postgres")
        sh("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", str(bindir / "initdb"),
           "-D", str(template), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", timeout=120)
    sh("cp", "-a", str(template), str(data))
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {SUBNET} trust\n")
    sock.mkdir()
    shutil.chown(sock, "postgres", "postgres")
    lab.spawn(host, ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
                     str(bindir / "postgres"), "-D", str(data), "-c", f"listen_addresses={host.address},127.0.0.1",
                     "-c", "port=5432", "-c", f"unix_socket_directories={sock}", "-c", "shared_buffers=16MB",
                     "-c", "max_connections=20", "-c", "fsync=off", "-c", "logging_collector=off"], "postgres")


def _start_nginx(lab: Lab, host: LabHost, home: Path) -> None:
    prefix = home / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(textwrap.dedent(f"""\
        daemon off;
        worker_processes 1;
        pid {prefix}/nginx.pid;
        error_log {prefix}/error.log;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            keepalive_timeout 1200s;
            client_body_temp_path {prefix}/tmp/body;
            proxy_temp_path {prefix}/tmp/proxy;
            fastcgi_temp_path {prefix}/tmp/fastcgi;
            uwsgi_temp_path {prefix}/tmp/uwsgi;
            scgi_temp_path {prefix}/tmp/scgi;
            server {{ listen {host.address}:80; location / {{ return 200 "{host.name}\\n"; }} }}
        }}
        """))
    lab.spawn(host, ["nginx", "-p", f"{prefix}/", "-c", f"{prefix}/nginx.conf", "-e", f"{prefix}/error.log"],
              "nginx")
