"""Collect step for ``ssh``: one paramiko session per host, one exec of the fixed script.

Per host: TCP connect (connect timeout), SSH handshake, host key check
(``knownhosts``), public-key auth with the one key given (no agent, no
``~/.ssh`` guessing, no passwords), one channel running ``/bin/sh -s`` with
the collector script on stdin, and a capped, deadline-bounded read. Hosts run
in a bounded thread pool; whatever goes wrong on one host becomes that host's
status and the run goes on.

Never logged: the key, its passphrase, command lines read from hosts.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import paramiko

from discovery import hostscript
from discovery.collect import result_from_reply
from discovery.knownhosts import HostKeyRejected, HostKeyVerifier
from discovery.models import HostResult
from discovery.sanitize import clean_text

# paramiko logs handshake details at INFO; keep the agent's output to what matters.
logging.getLogger("paramiko").setLevel(logging.WARNING)
PASSPHRASE_ENV = "KARTA_SSH_KEY_PASSPHRASE"


@dataclass(frozen=True)
class SshSettings:
    user: str
    key_path: Path
    known_hosts: Path
    trust_on_first_use: bool = False
    port: int = 22
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    concurrency: int = 20
    packages: bool = False
    reply_cap: int = hostscript.REPLY_CAP


class PrivateKeyError(Exception):
    """The private key could not be loaded (message never holds key material)."""


def load_private_key(path: Path) -> paramiko.PKey:
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    try:
        return paramiko.PKey.from_path(str(path), passphrase)
    except FileNotFoundError as exc:
        raise PrivateKeyError(f"SSH key not found: {path}") from exc
    except PermissionError as exc:
        raise PrivateKeyError(f"SSH key not readable: {path}") from exc
    except (paramiko.SSHException, ValueError) as exc:
        raise PrivateKeyError(f"SSH key {path} could not be loaded ({type(exc).__name__}; "
                        f"encrypted keys need {PASSPHRASE_ENV})") from exc


def _read_channel(channel: paramiko.Channel, *, cap: int, deadline: float) -> tuple[bytes, bool, bool]:
    """(data, cut, timed_out): stop at EOF, at ``cap`` bytes or at the deadline."""
    data = bytearray()
    channel.settimeout(1.0)
    while True:
        if time.monotonic() >= deadline:
            return bytes(data), False, True
        try:
            chunk = channel.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return bytes(data), False, False
        data += chunk
        if len(data) >= cap:
            return bytes(data[:cap]), True, False


def collect_host(target: str, settings: SshSettings, pkey: paramiko.PKey,
                 verifier: HostKeyVerifier, token: str, script: bytes) -> HostResult:
    """Collect one host; never raises."""
    started = time.monotonic()

    def failed(status: str, message: str) -> HostResult:
        return HostResult(target, status, clean_text(message, 500), None, time.monotonic() - started)

    try:
        sock = socket.create_connection((target, settings.port), timeout=settings.connect_timeout)
    except socket.gaierror as exc:
        return failed("unreachable", f"name not resolved: {exc.strerror or exc}")
    except TimeoutError:
        return failed("unreachable", f"connect timed out after {settings.connect_timeout:g}s")
    except OSError as exc:
        return failed("unreachable", exc.strerror or type(exc).__name__)

    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = settings.connect_timeout
        transport.handshake_timeout = settings.connect_timeout
        transport.auth_timeout = settings.connect_timeout
        options = transport.get_security_options()
        options.key_types = verifier.preferred_algorithms(target, settings.port, options.key_types)
        try:
            transport.start_client(timeout=settings.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            return failed("error", f"SSH handshake failed: {exc or type(exc).__name__}")
        try:
            verifier.verify(target, settings.port, transport.get_remote_server_key())
        except HostKeyRejected as exc:
            return failed(exc.status, str(exc))
        try:
            transport.auth_publickey(settings.user, pkey)
        except paramiko.AuthenticationException:
            return failed("auth_failed", f"public key refused for user {settings.user}")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            return failed("auth_failed", f"authentication failed: {exc or type(exc).__name__}")

        deadline = started + settings.connect_timeout + settings.command_timeout
        try:
            channel = transport.open_session(timeout=settings.connect_timeout)
            channel.set_combine_stderr(True)
            channel.exec_command("/bin/sh -s")
            channel.sendall(script)
            channel.shutdown_write()
            raw, cut, timed_out = _read_channel(channel, cap=settings.reply_cap, deadline=deadline)
            channel.close()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            return failed("error", f"session failed: {exc or type(exc).__name__}")
        return result_from_reply(target, raw, token, cut=cut, timed_out=timed_out, started=started)
    except Exception as exc:  # one host's surprise must not end the run
        return failed("error", f"{type(exc).__name__}: {exc}")
    finally:
        transport.close()
        sock.close()


def collect_hosts(targets: list[str], settings: SshSettings, *,
                  on_result: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    """Collect every target with at most ``settings.concurrency`` sessions at once.

    Raises PrivateKeyError only when the private key itself is unusable (the run cannot start).
    """
    pkey = load_private_key(settings.key_path)
    verifier = HostKeyVerifier(settings.known_hosts, trust_on_first_use=settings.trust_on_first_use)
    token = hostscript.new_token()
    script = hostscript.render(token, packages=settings.packages).encode()
    workers = max(1, min(settings.concurrency, len(targets) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="karta-ssh") as pool:
        futures = [pool.submit(collect_host, t, settings, pkey, verifier, token, script) for t in targets]
        for future in as_completed(futures):
            if on_result is not None:
                on_result(future.result())
        results = [future.result() for future in futures]
    return results
