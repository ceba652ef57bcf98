"""Runs one scope end to end (collect -> parse -> classify -> build -> push), and ``run``'s lock.

Each ``*_scope`` function returns a ScopeOutcome whatever happens: a host that
is down is a fact of the outcome, a scope that could not run at all (nmap
missing, key unreadable, push refused) is its ``error``. The CLI decides exit
status and output from outcomes; nothing here prints.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from discovery.api_access import Endpoint, uses_proxy
from discovery.batch import build_scan_batch, build_ssh_batch
from discovery.classify import DEFAULT_RULES, ClassificationRule
from discovery.collect import collect_local
from discovery.models import HostResult
from discovery.nmapscan import DEFAULT_PORTS, ScanError, parse_nmap, run_nmap
from discovery.remote import ApiApplicationLookup
from discovery.sanitize import is_decimal
from discovery.sshcollect import PrivateKeyError, SshSettings, collect_hosts

if TYPE_CHECKING:
    from discovery.push import IngestClient, PushReport


@dataclass
class ScopeOutcome:
    name: str
    source: str
    batch: dict | None = None
    results: list[HostResult] = field(default_factory=list)
    report: PushReport | None = None
    error: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # worth saying, not failures (a lookup switched off)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def summary_line(self) -> str:
        parts = [f"scope={self.name}", f"source={self.source}"]
        if self.results:
            statuses = Counter(r.status for r in self.results)
            parts.append(f"hosts={statuses.get('ok', 0)}/{len(self.results)} ok")
            parts += [f"{status}={count}" for status, count in sorted(statuses.items()) if status != "ok"]
        if self.batch is not None:
            classes = Counter(item["class"] for item in self.batch["items"])
            if not self.results:
                parts.append(f"hosts={sum(v for k, v in classes.items() if k != 'ip_address')}")
            parts.append(f"items={len(self.batch['items'])}")
            parts.append(f"relationships={len(self.batch['relationships'])}")
        if self.report is not None:
            parts.append(f"pushed={self.report.requests} request(s)")
            if self.report.errors or self.report.conflicts:
                parts.append(f"ingest_errors={len(self.report.errors)} conflicts={len(self.report.conflicts)}")
        if self.batch is not None:
            parts.append(f"run_id={self.batch['run_id']}")
        parts.append(f"{self.seconds:.1f}s")
        if self.error:
            parts.append(f"FAILED: {self.error}")
        parts += self.notes
        failures = [f"{r.target} {r.status}" for r in self.results if r.status != "ok"]
        if failures:
            parts.append("not ok: " + ", ".join(failures[:5]) + (" ..." if len(failures) > 5 else ""))
        return " ".join(parts)


def new_run_id() -> str:
    return str(uuid.uuid4())


def scan_scope(name: str, subnets: list[str], *, ports: str = DEFAULT_PORTS, service_versions: bool = False,
               exclude: list[str] | None = None, names: str = "system") -> ScopeOutcome:
    started = time.monotonic()
    outcome = ScopeOutcome(name, "nmap")
    try:
        result = run_nmap(subnets, ports=ports, service_versions=service_versions, exclude=exclude, names=names)
        hosts = parse_nmap(result)
        outcome.batch = build_scan_batch(hosts, run_id=new_run_id(), subnets=subnets)
    except (ScanError, ValueError) as exc:
        outcome.error = str(exc)
    outcome.seconds = time.monotonic() - started
    return outcome


def ssh_scope(name: str, targets: list[str], settings: SshSettings, *,
              rules: tuple[ClassificationRule, ...] = DEFAULT_RULES,
              on_result: Callable[[HostResult], None] | None = None,
              remote: Endpoint | None = None) -> ScopeOutcome:
    """``remote``: the service, to place connections to hosts outside the run (remote.py)."""
    started = time.monotonic()
    outcome = ScopeOutcome(name, "ssh")
    try:
        outcome.results = collect_hosts(targets, settings, on_result=on_result)
        if remote is None:
            outcome.batch = build_ssh_batch(outcome.results, run_id=new_run_id(), rules=rules)
        else:
            with api_client(remote) as client:
                lookup = ApiApplicationLookup(client)
                outcome.batch = build_ssh_batch(outcome.results, run_id=new_run_id(), rules=rules,
                                                remote_lookup=lookup)
            if lookup.problem:
                outcome.notes.append(f"remote {lookup.problem}")
    except PrivateKeyError as exc:
        outcome.error = str(exc)
    outcome.seconds = time.monotonic() - started
    return outcome


def api_client(endpoint: Endpoint):
    import httpx  # only runs that look things up pay for it

    return httpx.Client(base_url=endpoint.url.rstrip("/"), timeout=30.0, trust_env=uses_proxy(endpoint.url),
                        headers={"Authorization": f"Bearer {endpoint.token}", "User-Agent": "karta-discovery"})


def local_scope(name: str, *, packages: bool = False,
                rules: tuple[ClassificationRule, ...] = DEFAULT_RULES) -> ScopeOutcome:
    started = time.monotonic()
    outcome = ScopeOutcome(name, "ssh")  # same collector, same facts: the ingest knows "ssh"
    outcome.results = [collect_local(packages=packages)]
    outcome.batch = build_ssh_batch(outcome.results, run_id=new_run_id(), rules=rules)
    outcome.seconds = time.monotonic() - started
    return outcome


def batch_json(batch: dict, *, indent: bool = True) -> bytes:
    return orjson.dumps(batch, option=(orjson.OPT_INDENT_2 if indent else 0) | orjson.OPT_APPEND_NEWLINE)


def write_batch(batch: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(batch_json(batch))
    os.replace(tmp, path)


def ingest_client(endpoint: Endpoint) -> IngestClient:
    # Imported here: httpx costs a tenth of a second at start-up, and dry runs never push.
    from discovery.push import IngestClient

    return IngestClient(endpoint.url, endpoint.token, insecure=endpoint.insecure)


def push_outcome(outcome: ScopeOutcome, client: IngestClient) -> None:
    """Push the outcome's batch; a refusal becomes the outcome's error."""
    from discovery.push import PushError

    if outcome.batch is None or outcome.failed:
        return
    started = time.monotonic()
    try:
        outcome.report = client.push(outcome.batch)
    except PushError as exc:
        outcome.error = str(exc)
    outcome.seconds += time.monotonic() - started


class LockHeld(RuntimeError):
    pass


class LockUnsafe(RuntimeError):
    """The lock path is not a file this user can safely lock and write: someone may have planted it."""


def _open_lock(path: Path) -> int:
    # The default lock lives in /tmp when XDG_RUNTIME_DIR is unset: whoever can write there may plant a
    # symlink (or a hard link) at our path, pointing at a file we would then create or truncate.
    # O_NOFOLLOW refuses a symlink as the last component; the checks on the opened file refuse the rest.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockUnsafe(f"lock file {path} is a symbolic link; refusing to follow it (remove it if "
                             "you did not put it there)") from None
        raise LockUnsafe(f"cannot open lock file {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode)
               else "belongs to another user" if info.st_uid != os.geteuid()
               else "has other hard links" if info.st_nlink != 1 else None)
    if problem:
        os.close(fd)
        raise LockUnsafe(f"lock file {path} {problem}; refusing to use it")
    return fd


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking fcntl lock for the whole run (LockHeld if another run has it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise LockHeld(f"another karta discover run holds {path}"
                           + (f" (pid {holder})" if is_decimal(holder) else "") + "; exiting") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
