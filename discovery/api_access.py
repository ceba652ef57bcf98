"""How the agent reaches Karta without giving its token away: where it reads the token, where it may send it.

The token (scope ``discovery``) lets whoever holds it write into the CMDB, so:

* It comes from the environment (``KARTA_TOKEN``) or a file (``--token-file``, ``token_file`` in the
  config). ``--token`` still works but is deprecated: a command line is visible to every user of the
  machine (``ps``, ``/proc/<pid>/cmdline``). A token file that others may read (mode & 0o077, as ssh
  judges a private key) is used with a warning, not refused: Kubernetes mounts secrets 0644 unless told
  otherwise, and refusing would stop every such agent at its next run rather than tell its owner.
* It travels over https, or over plain http only to this machine (127.0.0.0/8, ::1, ``localhost``).
  Plain http to any other host would carry it in clear text over the network: refused unless the
  operator says ``--insecure`` (``insecure = true`` in the config) for a network they trust.

Nothing here prints or logs the token; ``Endpoint`` keeps it out of its repr.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MAX_TOKEN_FILE = 4096  # a token is one short line; a bigger file is the wrong file
TOKEN_ON_COMMAND_LINE = ("--token is deprecated: a token on the command line is visible to every user of this "
                         "machine (ps); set KARTA_TOKEN or use --token-file")


class InsecureApiUrl(ValueError):
    """The URL would send the token in clear text."""


@dataclass(frozen=True)
class Endpoint:
    """Karta's base URL, checked, with the token to send it."""

    url: str
    token: str = field(repr=False)
    insecure: bool = False

    def __post_init__(self) -> None:
        check_api_url(self.url, insecure=self.insecure)


def is_loopback(host: str) -> bool:
    """This machine: ``localhost``, 127.0.0.0/8 or ::1 (also as an IPv4-mapped IPv6 address)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # any other name may resolve anywhere
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_api_url(url: str, *, insecure: bool = False) -> str:
    """``url`` if the token may be sent there; ValueError (InsecureApiUrl for clear text) otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the API URL must start with https:// (or http://) and name a host, not {url!r}")
    if parts.scheme == "http" and not insecure and not is_loopback(parts.hostname):
        raise InsecureApiUrl(
            f"refusing plain http:// to {parts.hostname}: the token would travel in clear text. Use https://, "
            "or --insecure (insecure = true in the config) if you trust every network in between")
    return url


def uses_proxy(url: str) -> bool:
    """Whether an HTTP client may go through the environment's proxy (HTTP_PROXY) for `url`: never for
    plain http to this machine, which is allowed only because the token then stays on it."""
    parts = urlsplit(url)
    return not (parts.scheme == "http" and is_loopback(parts.hostname or ""))


def read_token_file(path: Path) -> tuple[str, list[str]]:
    """The token in ``path`` and warnings about the file; OSError or ValueError when it is unusable."""
    # O_NOFOLLOW is not used: Kubernetes mounts secrets as symlinks. The mode is read from the file opened.
    with open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"token file {path} is not a regular file")
        data = handle.read(MAX_TOKEN_FILE + 1)
    if len(data) > MAX_TOKEN_FILE:
        raise ValueError(f"token file {path} is larger than {MAX_TOKEN_FILE} bytes: not a token")
    token = data.decode("utf-8", "replace").strip()
    if not token or "\n" in token:
        raise ValueError(f"token file {path} must hold the token on one line")
    warnings = []
    if mode & 0o077:
        warnings.append(f"token file {path} is accessible by others (mode {stat.S_IMODE(mode):04o}): "
                        f"anyone who can read it can write to the CMDB; chmod 600 {path}")
    return token, warnings


def resolve_token(*, option: str | None, token_file: Path | None, config_token_file: Path | None = None,
                  environ: dict[str, str] | None = None) -> tuple[str | None, list[str]]:
    """The token and warnings: --token (deprecated), else --token-file, else KARTA_TOKEN, else the config's file."""
    environ = os.environ if environ is None else environ
    if option is not None and token_file is not None:
        raise ValueError("give --token-file or --token, not both")
    if option is not None:
        return option, [TOKEN_ON_COMMAND_LINE]
    if token_file is not None:
        return read_token_file(token_file)
    if environ.get("KARTA_TOKEN"):
        return environ["KARTA_TOKEN"], []
    if config_token_file is not None:
        return read_token_file(config_token_file)
    return None, []
