"""Where the agent keeps its own state by default: known_hosts and the run lock.

Root (cron, systemd) uses system paths; anyone else uses XDG paths under $HOME.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/karta")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "karta"


def default_known_hosts() -> Path:
    """The agent's own known_hosts: checked always, appended to only under trust-on-first-use."""
    return default_state_dir() / "known_hosts"


def default_lock_file() -> Path:
    if os.geteuid() == 0 and Path("/run/lock").is_dir():
        return Path("/run/lock/karta-discovery.lock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime or "/tmp") / f"karta-discovery-{os.geteuid()}.lock"
