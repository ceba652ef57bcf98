"""Many `karta serve` behind a real nginx (issue #14), configured by deploy/nginx/karta.conf itself.

Two `karta serve` processes of two workers each, over a PostgreSQL primary and its hot standby
(tests/replica/conftest.py), behind the nginx of this machine run as a private instance (its own
prefix, pid and logs under a temporary directory, on free loopback ports, over TLS with a certificate
made here): the production file, with only the strings it names as a site's own replaced.

  - a mixed read/write load through nginx fails no request, and both hosts serve it;
  - a commit through nginx reaches every worker's next impact answer: each worker is asked directly, on
    a keep-alive connection whose server end the test finds in that worker's file descriptors (a
    worker says nothing about itself over HTTP), and the lag from the commit to each worker's first
    answer showing it is measured;
  - one `karta serve` killed (SIGKILL, its workers with it) mid-load: reads keep succeeding (nginx asks
    the other host), a POST that was in flight on the dead host fails with 502 and is never sent again
    by nginx (no CI is created twice); POSTs sent after the kill go to the living host;
  - deterministically, with a host that reads each request and closes without answering: a GET and an
    impact question go on to the next host, a POST that creates is answered 502 and goes nowhere else;
  - TLS and X-Forwarded-Proto reach Karta: the web UI's cookies are Secure behind nginx.

Needs nginx, openssl and what the replica fixture needs (root, PostgreSQL's server programs); skips and
says why without them, fails in CI (KARTA_REQUIRE_ALL). bench/lb_bench.py uses the helpers here."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.core.db import make_engine
from app.models import ConfigurationItem
from tests.conftest import missing_requirement
from tests.replica.conftest import replicated  # noqa: F401 - the primary + hot standby fixture
from tests.replica.test_read_replicas import create_tokens
from tests.server import free_ports, running_server
from tests.thread_group import ThreadGroup

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx" / "karta.conf"
NGINX_START_SECONDS = 15
LOAD_SECONDS = 10
READERS = 4
WRITERS = 2
MAX_FAILS = 2  # each upstream line's max_fails, as deploy/nginx/karta-upstreams.conf sets it
LAG_WRITES = 12
LAG_BOUND_SECONDS = 3.0  # per write and worker, on a shared machine (bench/lb_bench.py measures the p99)
SERVER_ENV = {"KARTA_THREADS": "4"}  # 4 workers x (4 + 4 overflow) to each database: within max_connections


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def render_config(text: str, *, upstreams: Path, https_port: int, http_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx/karta.conf with the strings its header names as a site's own replaced, each exactly
    once outside comments (a file that no longer has one fails here, not silently)."""
    lines = text.splitlines(keepends=True)
    for old, new in {"include /etc/nginx/karta-upstreams.conf;": f"include {upstreams};",
                     "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
                     "listen 80;": f"listen 127.0.0.1:{http_port};",
                     "/etc/nginx/tls/karta.crt;": f"{cert};",
                     "/etc/nginx/tls/karta.key;": f"{key};"}.items():
        at = [n for n, line in enumerate(lines) if old in line and not line.lstrip().startswith("#")]
        assert len(at) == 1, f"{NGINX_CONF} should hold {old!r} once (outside comments)"
        lines[at[0]] = lines[at[0]].replace(old, new)
    return "".join(lines)


class Nginx:
    """A private nginx running deploy/nginx/karta.conf in front of `upstreams` (host:port each)."""

    def __init__(self, home: Path, upstreams: list[str], *, upstream_lines: list[str] | None = None) -> None:
        self.home = home
        # Distinct: nginx given one port for both listens made both TLS, and refused to start (a flake in CI).
        self.https_port, self.http_port = free_ports(2)
        self.cert, self.key = home / "karta.crt", home / "karta.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=karta.test", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(self.key), "-out", str(self.cert)], check=True, capture_output=True, timeout=30)
        # The upstream file as deploy/nginx/karta-upstreams.conf writes it, with these servers.
        lines = upstream_lines or [f"server {u} max_fails={MAX_FAILS} fail_timeout=5s;" for u in upstreams]
        (home / "upstreams.conf").write_text("".join(f"{line}\n" for line in lines))
        (home / "karta.conf").write_text(render_config(
            NGINX_CONF.read_text(), upstreams=home / "upstreams.conf", https_port=self.https_port,
            http_port=self.http_port, cert=self.cert, key=self.key))
        temp = "\n".join(f"    {kind}_temp_path {home / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))
        (home / "nginx.conf").write_text(f"""worker_processes 2;
error_log {home}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '$request_method\\t$uri\\t$status\\t$upstream_addr\\t$upstream_status\\t$request_time';
    access_log {home}/access.log upstreams;
{temp}
    include {home}/karta.conf;
}}
""")
        home.chmod(0o755)  # nginx's workers (not root) create their temporary files under it
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Nginx:
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", str(self.home), "-e", str(self.home / "error.log"), "-c", str(self.home / "nginx.conf"),
             "-g", f"daemon off; pid {self.home}/nginx.pid;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + NGINX_START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self.process.stderr.read()}"
                                   f"{self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen in time") from None
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: its workers finish what they serve
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def client(self, secret: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, verify=ssl.create_default_context(cafile=self.cert), timeout=30, trust_env=False,
                            **kwargs)

    def error_log(self) -> str:
        path = self.home / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def access_log(self) -> list[dict[str, str]]:
        """Every request nginx answered: method, uri, status, and the upstreams it tried, in order."""
        lines = (self.home / "access.log").read_text().splitlines()
        keys = ("method", "uri", "status", "upstreams", "upstream_statuses", "seconds")
        return [dict(zip(keys, line.split("\t"), strict=True)) for line in lines]


# --- the workers of a `karta serve`, told apart -----------------------------------------------------------

def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the workers of `karta serve`, and any helper it started)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of the loopback TCP connection server_port <-> client_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (int(fields[1].rsplit(":", 1)[1], 16) == server_port
                    and int(fields[2].rsplit(":", 1)[1], 16) == client_port):
                return fields[9]
    return None


def socket_owner(pids: list[int], server_port: int, client_port: int) -> int | None:
    """Which of `pids` holds the server end of that connection: the worker that accepted it."""
    inode = _socket_inode(server_port, client_port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return pid
            except OSError:
                continue
    return None


class WorkerConnection:
    """A keep-alive connection straight to one worker of one `karta serve` (no nginx in between)."""

    def __init__(self, port: int, pid: int, conn: http.client.HTTPConnection, secret: str) -> None:
        self.port, self.pid, self.conn = port, pid, conn
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        self.conn.request("POST", path, body=json.dumps(body), headers=self.headers)
        answer = self.conn.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data else {}

    def close(self) -> None:
        self.conn.close()


def pin_workers(server_pid: int, port: int, workers: int, secret: str, attempts: int = 300,
                timeout: float = 60) -> list[WorkerConnection]:
    """One connection to each of the `workers` workers of the `karta serve` whose process is
    `server_pid`, listening on `port`: connections are opened until every worker has accepted one
    (the kernel hands each to whichever worker accepts first), the others closed."""
    pinned: dict[int, WorkerConnection] = {}
    for _ in range(attempts):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", "/healthz")
        conn.getresponse().read()  # answered: a worker has accepted it
        pid = socket_owner(children(server_pid), port, conn.sock.getsockname()[1])
        if pid is None or pid in pinned:
            conn.close()
            continue
        pinned[pid] = WorkerConnection(port, pid, conn, secret)
        if len(pinned) == workers:
            return list(pinned.values())
    for worker in pinned.values():
        worker.close()
    raise AssertionError(f"found {len(pinned)} of {workers} workers of pid {server_pid} in {attempts} connections")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class LagProbes(ThreadGroup):
    """A thread per worker asking the impact question of `target` (depth 1) again and again; the first
    time each worker's answer names each awaited CI, and the as_of_seq of that answer."""

    must_stop = False  # daemon threads: a probe stuck in a worker's answer is left behind

    def __init__(self, workers: list[WorkerConnection], target: str, seconds: float) -> None:
        self.workers, self.target = workers, target
        self.deadline = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.seen: dict[tuple[int, str], tuple[float, int]] = {}
        self.errors: list[str] = []
        self.answers = Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._probe, args=(w,), daemon=True) for w in workers]

    def _probe(self, worker: WorkerConnection) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                status, answer = worker.post("/api/v1/impact", {"ci_ids": [self.target], "max_depth": 1})
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.errors.append(f"worker {worker.pid}: {type(exc).__name__}: {exc}")
                return
            now = time.monotonic()
            with self.lock:
                self.answers[worker.pid] += 1
                if status != 200:
                    self.errors.append(f"worker {worker.pid}: {status} {answer}")
                    return
                for entry in answer["impacted"]:
                    self.seen.setdefault((worker.pid, entry["id"]), (now, answer["as_of_seq"]))

    def wait_all_saw(self, ci_id: str, seconds: float) -> dict[int, tuple[float, int]]:
        deadline = time.monotonic() + seconds
        while True:
            with self.lock:
                got = {w.pid: self.seen[(w.pid, ci_id)] for w in self.workers if (w.pid, ci_id) in self.seen}
                if len(got) == len(self.workers) or self.errors:
                    return got
            if time.monotonic() > deadline:
                return got
            time.sleep(0.005)


def kill_server(process: subprocess.Popen) -> list[int]:
    """SIGKILL a `karta serve` as a host dies: the process and its workers (killed alone, the supervisor
    would leave its workers serving). The pids killed."""
    workers = children(process.pid)
    process.kill()
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)
    return [process.pid, *workers]


# --- the stack: primary + standby, two `karta serve`, nginx --------------------------------------------------

class Stack:
    def __init__(self, servers: list, nginx: Nginx, secret: str, primary_url: str) -> None:
        self.servers, self.nginx, self.secret, self.primary_url = servers, nginx, secret, primary_url


@pytest.fixture(scope="module")
def stack(replicated):  # noqa: F811 - the fixture imported above
    if nginx_binary() is None:
        missing_requirement("nginx is not installed (Debian: nginx-light): the load balancer tests run it")
    if shutil.which("openssl") is None:
        missing_requirement("openssl is not installed: the load balancer tests make nginx a certificate with it")
    engine = make_engine(replicated.primary_url)
    try:
        secret = create_tokens(engine)["admin"]
    finally:
        engine.dispose()
    env = {**SERVER_ENV, "KARTA_DATABASE_REPLICA_URLS": replicated.replica_url}
    home = Path(tempfile.mkdtemp(prefix="karta-nginx-"))
    try:
        with ExitStack() as stack:
            # As in production: one host delivers webhooks and keeps the service maps, the other only
            # serves the API.
            api_only = {**env, "KARTA_WEBHOOKS_DELIVER": "false", "KARTA_SERVICE_MAPS_KEEP": "false"}
            servers = [stack.enter_context(running_server(replicated.primary_url, workers=2, env=env)),
                       stack.enter_context(running_server(replicated.primary_url, workers=2, env=api_only))]
            nginx = stack.enter_context(Nginx(home, [s.removeprefix("http://") for s in servers]))
            try:
                yield Stack(servers, nginx, secret, replicated.primary_url)
            except BaseException:
                print(f"nginx error log:\n{nginx.error_log()}")
                raise
    finally:
        shutil.rmtree(home, ignore_errors=True)


class Load(ThreadGroup):
    """Readers (CI list, impact) and writers (a CI, then a relationship to it) through nginx, in threads,
    until stopped; every answer counted by kind and time, every failure kept."""

    join_seconds = 60.0

    def __init__(self, nginx: Nginx, secret: str, known: list[str], tag: str) -> None:
        self.nginx, self.secret, self.known, self.tag = nginx, secret, known, tag
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: Counter[str] = Counter()
        self.failures: list[tuple[float, str, str]] = []  # (time, kind, what)
        self.created: list[tuple[float, str]] = []  # (time answered, name) of every CI answered 201
        self.attempted: list[str] = []  # the name of every CI a writer sent
        self.threads = [threading.Thread(target=self._reader, args=(n,)) for n in range(READERS)]
        self.threads += [threading.Thread(target=self._writer, args=(n,)) for n in range(WRITERS)]

    def _record(self, kind: str, answer: httpx.Response | Exception, expected: int = 200) -> bool:
        with self.lock:
            self.answers[kind] += 1
            if isinstance(answer, Exception):
                self.failures.append((time.monotonic(), kind, f"{type(answer).__name__}: {answer}"))
                return False
            if answer.status_code != expected:
                self.failures.append((time.monotonic(), kind, f"{answer.status_code} {answer.text[:200]}"))
                return False
            return True

    def _reader(self, n: int) -> None:
        with self.nginx.client(self.secret) as http:
            for i in range(100_000):
                if self.stop.is_set():
                    return
                target = self.known[(n + i) % len(self.known)]
                try:
                    if i % 2:
                        self._record("list", http.get("/api/v1/cis", params={"limit": 20}))
                    else:
                        self._record("impact", http.post("/api/v1/impact", json={"ci_ids": [target]}))
                except httpx.HTTPError as exc:
                    self._record("read", exc)

    def _writer(self, n: int) -> None:
        with self.nginx.client(self.secret) as http:
            for i in range(100_000):
                if self.stop.is_set():
                    return
                name = f"{self.tag}-{n}-{i}"
                with self.lock:
                    self.attempted.append(name)
                try:
                    created = http.post("/api/v1/cis", json={"class": "application", "name": name})
                    if not self._record("create CI", created, 201):
                        continue
                    with self.lock:
                        self.created.append((time.monotonic(), name))
                    target = self.known[(n + i) % len(self.known)]
                    self._record("relate", http.post("/api/v1/relationships", json={
                        "source": created.json()["id"], "target": target, "type": "depends_on"}), 201)
                except httpx.HTTPError as exc:
                    self._record("write", exc)


def known_cis(stack: Stack, count: int = 5) -> list[str]:
    with stack.nginx.client(stack.secret) as http:
        answers = [http.post("/api/v1/cis", json={"class": "server", "name": f"known-{n}-{uuid.uuid4()}"})
                   for n in range(count)]
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    return [a.json()["id"] for a in answers]


def test_tls_and_forwarded_headers_reach_karta(stack):
    """Karta sees the client's scheme through nginx (X-Forwarded-Proto from a trusted address): the web
    UI's cookie is Secure behind TLS; plain HTTP is sent to https."""
    with stack.nginx.client() as http:
        login = http.get("/ui/login")
    assert login.status_code == 200, login.text
    assert "; secure" in login.headers["set-cookie"].lower(), login.headers["set-cookie"]
    plain = httpx.get(f"http://127.0.0.1:{stack.nginx.http_port}/ui/login", trust_env=False)
    assert plain.status_code == 308 and plain.headers["location"].startswith("https://127.0.0.1/ui/login")
    # Straight to a host over plain HTTP, no proxy header: not Secure (the flag follows the real scheme).
    direct = httpx.get(f"{stack.servers[0]}/ui/login", trust_env=False)
    assert "; secure" not in direct.headers["set-cookie"].lower()


def test_a_mixed_load_through_nginx_fails_no_request(stack):
    known = known_cis(stack)
    with Load(stack.nginx, stack.secret, known, f"mixed-{uuid.uuid4().hex[:8]}") as load:
        time.sleep(LOAD_SECONDS)
    assert load.failures == [], load.failures[:10]
    counted = dict(load.answers)
    print(f"answers through nginx in {LOAD_SECONDS} s: {counted}")
    assert all(counted.get(kind, 0) >= 20 for kind in ("list", "impact", "create CI", "relate")), counted
    served = Counter(u for entry in stack.nginx.access_log() for u in entry["upstreams"].split(", "))
    hosts = [s.removeprefix("http://") for s in stack.servers]
    assert all(served[h] >= 20 for h in hosts), served  # both hosts took a share


def test_a_commit_reaches_every_workers_impact_answer(stack):
    """Through nginx a relationship `A depends_on T` is committed; each of the 4 workers, asked
    directly, answers the impact of T with A within the bound. The lag: from sending the write to the
    first answer of that worker that names A (so it includes the write itself and the replica's replay)."""
    target = known_cis(stack, 1)[0]
    workers = [w for server in stack.servers
               for w in pin_workers(server.process.pid, int(server.rsplit(":", 1)[1]), 2, stack.secret)]
    assert len({w.pid for w in workers}) == 4
    lags: list[float] = []
    try:
        with stack.nginx.client(stack.secret) as http, LagProbes(workers, target, 120) as probes:
            for n in range(LAG_WRITES):
                app = http.post("/api/v1/cis", json={"class": "application", "name": f"lag-{n}-{uuid.uuid4()}"})
                assert app.status_code == 201, app.text
                sent = time.monotonic()
                related = http.post("/api/v1/relationships", json={"source": app.json()["id"], "target": target,
                                                                   "type": "depends_on"})
                assert related.status_code == 201, related.text
                seq = int(related.headers["X-Karta-Seq"])
                got = probes.wait_all_saw(app.json()["id"], LAG_BOUND_SECONDS)
                assert probes.errors == [], probes.errors
                assert set(got) == {w.pid for w in workers}, (
                    f"write {n}: workers {sorted(set(w.pid for w in workers) - set(got))} did not answer with it "
                    f"within {LAG_BOUND_SECONDS} s")
                # An answer that names A reflects the change that made it (or a later one).
                assert all(as_of >= seq for _, as_of in got.values()), (seq, got)
                lags += [seen - sent for seen, _ in got.values()]
                time.sleep(0.2)
            answered = dict(probes.answers)
    finally:
        for worker in workers:
            worker.close()
    print(f"commit -> each worker's impact answer, {len(lags)} samples ({LAG_WRITES} writes x 4 workers, "
          f"answers per worker {answered}): p50 {statistics.median(lags) * 1000:.0f} ms, "
          f"p95 {percentile(lags, 0.95) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms")


class DroppingHost:
    """A host that reads each request whole and then closes the connection without answering: as a
    `karta serve` does that dies after applying a write and before its answer left."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.requests: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DroppingHost:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(body) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        body += chunk
                except OSError:
                    pass
                if head:
                    self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))


def test_a_request_a_host_dropped_is_sent_again_only_if_it_only_reads(stack):
    """nginx (this configuration) sends a read that a host dropped unanswered to the next host, a
    question-only POST too, but answers 502 to a POST that creates: the host may have applied it."""
    known = known_cis(stack, 1)[0]
    home = Path(tempfile.mkdtemp(prefix="karta-nginx-drop-"))
    real = stack.servers[0].removeprefix("http://")
    try:
        # Every request goes to the dropping host first (never marked failed), then to the backup.
        with DroppingHost() as dropping, Nginx(home, [], upstream_lines=[f"server {dropping.address} max_fails=0;",
                                                                         f"server {real} backup;"]) as nginx, \
                nginx.client(stack.secret) as http:
            listed = http.get("/api/v1/cis", params={"limit": 1})
            asked = http.post("/api/v1/impact", json={"ci_ids": [known]})
            name = f"dropped-{uuid.uuid4()}"
            created = http.post("/api/v1/cis", json={"class": "application", "name": name})
            found = http.get("/api/v1/cis", params={"q": name})
            requests = list(dropping.requests)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert listed.status_code == 200 and asked.status_code == 200, (listed.text, asked.text)
    assert created.status_code == 502, created.text
    assert found.status_code == 200 and found.json()["items"] == [], found.text  # not sent to the real host
    sent = [" ".join((line.split(" ")[0], line.split(" ")[1].split("?")[0])) for line in requests]
    assert sent == ["GET /api/v1/cis", "POST /api/v1/impact", "POST /api/v1/cis", "GET /api/v1/cis"], requests


def test_a_host_killed_mid_load_fails_no_read_and_sends_no_post_twice(stack):
    known = known_cis(stack)
    doomed = stack.servers[1]
    before = len(stack.nginx.access_log())
    with Load(stack.nginx, stack.secret, known, f"kill-{uuid.uuid4().hex[:8]}") as load:
        time.sleep(2)
        killed_at = time.monotonic()
        kill_server(doomed.process)
        time.sleep(6)
    reads = [f for f in load.failures if f[1] in ("list", "impact", "read")]
    writes = [f for f in load.failures if f not in reads]
    counted = dict(load.answers)
    print(f"answers with one host killed: {counted}; failed: {[(kind, what[:3]) for _, kind, what in load.failures]}")
    # A host that dies after its answer's head went through nginx to the client and before its body
    # (uvicorn writes them apart) leaves nginx nothing to do but cut the connection: HTTP cannot take
    # a head back, so the client sees that answer end early, read or write. Around the kill only, and
    # at most one per client thread (each sends one request at a time).
    cut = "RemoteProtocolError: peer closed connection without sending complete message body"

    def mid_answer(failure) -> bool:
        return failure[2].startswith(cut) and abs(failure[0] - killed_at) < 5

    assert [f for f in reads if not mid_answer(f)] == [], reads[:10]  # nginx asked the other host
    assert len(reads) <= READERS, reads
    # A POST in flight on the killed host: nginx answers 502 and does not send it again (or it was cut).
    # A writer may also send its next POST to the host as it dies: the kernel still completes connections
    # on the listening socket until the last of its processes has exited, nginx sends the request, and the
    # connection is then reset ("recv() failed (104: Connection reset by peer) while reading response
    # header" in nginx's log, ~10 ms after the first 502 on the same client connection, seen under load).
    # A 502 counts towards the host's max_fails (an answer cut mid-body does not), and once they are
    # counted nginx sends the host nothing for fail_timeout: per writer, one cut and MAX_FAILS 502s at most.
    assert len(writes) <= WRITERS * (1 + MAX_FAILS), writes
    assert all((f[2].startswith("502") or mid_answer(f)) and abs(f[0] - killed_at) < 5 for f in writes), writes
    # Writes went on after the kill (to the living host), and reads too.
    assert sum(1 for at, _ in load.created if at > killed_at + 1) >= 10, counted
    log = stack.nginx.access_log()[before:]
    retried = [e for e in log if ", " in e["upstreams"]]
    assert any(e["method"] == "GET" or e["uri"] == "/api/v1/impact" for e in retried), "no read was sent again"
    for entry in log:  # a write that reached the killed host was never sent on to the other
        if entry["method"] == "POST" and entry["uri"] != "/api/v1/impact" and entry["status"] == "502":
            assert ", " not in entry["upstreams"], entry
    # No CI was created twice: every name a writer sent is there at most once, once if answered 201.
    engine = make_engine(stack.primary_url)
    try:
        with engine.connect() as conn:
            ci = ConfigurationItem.__table__
            counts = dict(conn.execute(select(ci.c.name, func.count()).where(ci.c.name.in_(load.attempted))
                                       .group_by(ci.c.name)).all())
    finally:
        engine.dispose()
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}
    assert all(counts.get(name) == 1 for _, name in load.created)
