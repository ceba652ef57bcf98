"""SSH host key verification against the agent's own known_hosts file.

* A host whose key matches the file is accepted.
* A host the file lists with a different key (or only with other key types)
  is refused, always: that is what a man in the middle looks like.
* A host the file does not list is refused, unless trust-on-first-use was
  asked for in the configuration; then its key is appended to the file
  (pinned) and every later run holds it to that key.

The file uses OpenSSH's format (hashed entries are understood), so an
operator can prefill it with ``ssh-keyscan`` output they checked by hand.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import paramiko


class HostKeyRejected(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # host_key_unknown or host_key_mismatch


def _entry_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _algorithms(key_type: str) -> list[str]:
    """Host key algorithms that produce a key of this type."""
    if key_type == "ssh-rsa":
        return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    return [key_type]


class HostKeyVerifier:
    """Thread-safe: one verifier serves every connection of a run."""

    def __init__(self, path: Path, *, trust_on_first_use: bool = False) -> None:
        self.path = Path(path)
        self.trust_on_first_use = trust_on_first_use
        self._keys = paramiko.HostKeys()
        self._lock = threading.Lock()
        if self.path.exists():
            self._keys.load(str(self.path))

    def preferred_algorithms(self, host: str, port: int, offered: tuple[str, ...]) -> tuple[str, ...]:
        """Put the algorithms of the key types we hold for this host first, as OpenSSH does."""
        with self._lock:
            entry = self._keys.lookup(_entry_name(host, port))
        known = [alg for key_type in (entry.keys() if entry else []) for alg in _algorithms(key_type)]
        first = [alg for alg in known if alg in offered]
        return tuple(first + [alg for alg in offered if alg not in first])

    def verify(self, host: str, port: int, key: paramiko.PKey) -> str:
        """'known' or 'pinned'; raises HostKeyRejected otherwise."""
        name = _entry_name(host, port)
        with self._lock:
            entry = self._keys.lookup(name)
            if entry:
                held = entry.get(key.get_name())
                if held is not None and held == key:
                    return "known"
                raise HostKeyRejected(
                    "host_key_mismatch",
                    f"host key for {name} does not match {self.path} "
                    f"(offered {key.get_name()} {key.fingerprint})")
            if not self.trust_on_first_use:
                raise HostKeyRejected(
                    "host_key_unknown",
                    f"{name} is not in {self.path} (offered {key.get_name()} {key.fingerprint}); "
                    "add it, or enable trust_on_first_use")
            self._pin(name, key)
            return "pinned"

    def _pin(self, name: str, key: paramiko.PKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as handle:
            handle.write(f"{name} {key.get_name()} {key.get_base64()}\n")
        self._keys.add(name, key.get_name(), key)
