"""`karta inventory --list | --host NAME`: an executable Ansible inventory that asks Karta over HTTP.

Ansible runs an inventory script with `--list` (every group and, in `_meta.hostvars`, every host's
variables) and, only when `_meta` is missing, `--host NAME`. Both print JSON on stdout
(app/integrations/ansible.py describes it).

Settings come from the environment, as a cron job or an ansible.cfg would set them:
  KARTA_URL                       Karta's base URL (https://, or http:// to this machine only:
                                  discovery.api_access's rule, the token must not travel in clear)
  KARTA_TOKEN                     a token with the `read` scope; never on the command line, never printed
  KARTA_INVENTORY_CACHE_SECONDS   how long an answer is reused from disk (default 60; 0: always ask)
  KARTA_INVENTORY_QUERY           filters, as the API's query string (environment=prod&status=active)
  KARTA_INVENTORY_CACHE_DIR       where the cache lives (default $XDG_CACHE_HOME/karta or ~/.cache/karta)

The cache file is the user's alone (0600 in a 0700 directory), named after a hash of the URL, query
and token (another token or server never reads this one's answer), and written atomically (a
temporary file renamed over it): a reader sees the old answer or the new one, never half of one. Two
runs racing to refresh both ask Karta and the last rename wins, which costs a request, not
correctness, so there is no lock.

Starts fast: imports httpx only when it must ask Karta, never the service (SQLAlchemy, FastAPI).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CACHE_SECONDS = 60.0
MAX_CACHE_SECONDS = 7 * 24 * 3600
TIMEOUT_SECONDS = 120.0  # 100,000 hosts are ~50 MB and take seconds to build
MAX_ANSWER_BYTES = 1024 * 1024 * 1024
PATH = "/api/v1/integrations/ansible/inventory"


class InventoryError(RuntimeError):
    """Something the operator must fix; the message says what (never the token)."""


def _cache_seconds(environ: dict[str, str]) -> float:
    raw = environ.get("KARTA_INVENTORY_CACHE_SECONDS", "")
    if not raw:
        return DEFAULT_CACHE_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        raise InventoryError(f"KARTA_INVENTORY_CACHE_SECONDS must be a number of seconds, not {raw[:40]!r}") from None
    if not 0 <= seconds <= MAX_CACHE_SECONDS:
        raise InventoryError(f"KARTA_INVENTORY_CACHE_SECONDS must be between 0 and {MAX_CACHE_SECONDS}")
    return seconds


def cache_dir(environ: dict[str, str]) -> Path:
    if environ.get("KARTA_INVENTORY_CACHE_DIR"):
        return Path(environ["KARTA_INVENTORY_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "karta"


def cache_path(environ: dict[str, str], url: str, token: str) -> Path:
    key = hashlib.sha256("\0".join((url, token)).encode()).hexdigest()[:32]
    return cache_dir(environ) / f"inventory-{key}.json"


def _read_cache(path: Path, max_age: float) -> bytes | None:
    if max_age <= 0:
        return None
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            # Only a file of ours that nobody else could have written or read.
            if info.st_uid != os.getuid() or info.st_mode & 0o077 or time.time() - info.st_mtime > max_age:
                return None
            return handle.read()
    except OSError:
        return None


def _write_cache(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".inventory-", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def fetch(url: str, token: str) -> bytes:
    """The inventory JSON from Karta, as it answered."""
    import httpx  # only when Karta must be asked: a cached answer needs no HTTP client

    from discovery.api_access import uses_proxy

    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, trust_env=uses_proxy(url)) as client, \
                client.stream("GET", url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/json"}) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise InventoryError(f"Karta's answer is larger than {MAX_ANSWER_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise InventoryError(f"cannot reach Karta at {url.split('?')[0]}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        try:
            problem = json.loads(body)
            detail = f"{problem.get('title')}: {problem.get('detail')}"
        except (ValueError, AttributeError):
            detail = bytes(body[:200]).decode("utf-8", "replace")
        raise InventoryError(f"Karta answered {response.status_code}: {detail}")
    return bytes(body)


def inventory_json(environ: dict[str, str]) -> bytes:
    """The `--list` answer: from the cache when fresh, else from Karta (and then cached)."""
    from discovery.api_access import check_api_url

    base, token = environ.get("KARTA_URL", "").rstrip("/"), environ.get("KARTA_TOKEN", "")
    if not base or not token:
        raise InventoryError("set KARTA_URL (Karta's base URL) and KARTA_TOKEN (a token with the read scope)")
    query = environ.get("KARTA_INVENTORY_QUERY", "").lstrip("?")
    url = f"{base}{PATH}" + (f"?{query}" if query else "")
    try:
        check_api_url(url)
    except ValueError as exc:
        raise InventoryError(str(exc)) from None
    path = cache_path(environ, url, token)
    max_age = _cache_seconds(environ)
    cached = _read_cache(path, max_age)
    if cached is not None:
        return cached
    data = fetch(url, token)
    if max_age > 0:
        try:
            _write_cache(path, data)
        except OSError as exc:  # a read-only home still gets its inventory, uncached
            print(f"karta inventory: not cached ({exc.strerror}: {path.parent})", file=sys.stderr)
    return data


def run(list_all: bool, host: str | None, environ: dict[str, str] | None = None) -> int:
    """Print the answer for --list or --host; the exit status (2: bad use, 1: Karta or settings)."""
    environ = dict(os.environ) if environ is None else environ
    if list_all == (host is not None):
        print("karta inventory: give --list or --host NAME", file=sys.stderr)
        return 2
    try:
        data = inventory_json(environ)
    except InventoryError as exc:
        print(f"karta inventory: {exc}", file=sys.stderr)
        return 1
    if host is not None:
        try:
            answer = json.loads(data)["_meta"]["hostvars"].get(host, {})
        except (ValueError, KeyError, TypeError, AttributeError):
            print("karta inventory: the answer is not an inventory", file=sys.stderr)
            return 1
        data = json.dumps(answer).encode()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.flush()
    return 0

