"""Collect step for ``local``: run the collector script on this machine, read a capped reply.

The same script the SSH collector sends runs here under ``/bin/sh -s``; the
reply is read with a byte cap and a deadline, so a wedged command or an
enormous output cannot hold the agent. ``result_from_reply`` turns any raw
reply (local or SSH) into a HostResult and is shared by both collectors.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time

from discovery import hostscript
from discovery.facts import facts_from_output
from discovery.models import HostResult
from discovery.sanitize import clean_text


def result_from_reply(target: str, raw: bytes, token: str, *, cut: bool, timed_out: bool,
                      started: float) -> HostResult:
    """Parse a reply; its status says how much of it we can stand behind."""
    facts, reply = facts_from_output(target, raw, token)
    seconds = time.monotonic() - started
    if not reply.sections:
        why = "timed out" if timed_out else f"reply cut at {len(raw)} bytes" if cut else "no collector output"
        return HostResult(target, "timeout" if timed_out else "error",
                          f"reply held no collector sections ({why})", None, seconds)
    if cut:
        facts.warnings.append(f"reply cut at {len(raw)} bytes")
    if timed_out:
        facts.warnings.append("timed out before the reply ended")
    if timed_out:
        return HostResult(target, "timeout", "timed out; partial facts kept", facts, seconds)
    if cut or not reply.finished:
        return HostResult(target, "partial", "reply incomplete; partial facts kept", facts, seconds)
    return HostResult(target, "ok", "", facts, seconds)


def read_process(proc: subprocess.Popen, *, cap: int, deadline: float) -> tuple[bytes, bool, bool]:
    """Read a child's stdout until EOF, ``cap`` bytes or the deadline: (data, cut, timed_out)."""
    data = bytearray()
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(data), False, True
            if not selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return bytes(data), False, False
            data += chunk
            if len(data) >= cap:
                return bytes(data[:cap]), True, False
    finally:
        selector.close()


def local_target() -> str:
    return clean_text(socket.gethostname(), 255) or "localhost"


def collect_local(*, packages: bool = False, timeout: float = 120,
                  cap: int = hostscript.REPLY_CAP) -> HostResult:
    """Run the collector script on this machine."""
    token = hostscript.new_token()
    script = hostscript.render(token, packages=packages).encode()
    started = time.monotonic()
    target = local_target()
    try:
        proc = subprocess.Popen(["/bin/sh", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return HostResult(target, "error", f"cannot start /bin/sh: {exc.strerror}", None, 0.0)
    try:
        proc.stdin.write(script)
        proc.stdin.close()
        raw, cut, timed_out = read_process(proc, cap=cap, deadline=started + timeout)
    finally:
        if proc.poll() is None:
            try:  # the shell and whatever command it is still waiting on
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)
        proc.stdout.close()
    return result_from_reply(target, raw, token, cut=cut, timed_out=timed_out, started=started)
