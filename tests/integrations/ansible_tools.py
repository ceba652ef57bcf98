"""The real ansible-core against a real `karta serve`, through the README's two-line wrapper.

`karta` on the wrapper's PATH is a shim running this checkout's `python -m app.cli` (the installed
console script may belong to another checkout); the wrapper itself is the README's, byte for byte.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import missing_requirement

REPO = Path(__file__).resolve().parents[2]
WRAPPER = '#!/bin/sh\nexec karta inventory "$@"\n'  # as README.md shows it


def ansible_program(name: str) -> str:
    """The ansible-core program next to this Python (pip installs it there), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        missing_requirement(f"{name} (pip install ansible-core) is not installed")
    return found


def make_wrapper(directory: Path) -> Path:
    """The README's wrapper, and a `karta` shim beside it running this checkout."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "karta"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m app.cli "$@"\n')
    shim.chmod(0o755)
    wrapper = directory / "karta-inventory"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    return wrapper


def ansible_env(directory: Path, base_url: str, token: str, **extra: str) -> dict[str, str]:
    """What an operator's shell would hold: Karta's URL and token, and a home of its own."""
    home = directory / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": f"{directory / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home),
            "KARTA_URL": base_url, "KARTA_TOKEN": token, "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "LC_ALL": "C.UTF-8", **extra}


def run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["HOME"])
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def parse_graph(text: str) -> dict[str, set[str]]:
    """`ansible-inventory --graph` -> group -> its direct members (hosts, and child groups as @name).
    Lines look like `  |  |--@group:` or `  |  |  |--host`: three characters a level."""
    lines = text.splitlines()
    assert lines[0] == "@all:", text
    members: dict[str, set[str]] = {"all": set()}
    stack = ["all"]
    for line in lines[1:]:
        at = line.index("|--")
        depth, entry = (at - 2) // 3, line[at + 3:]
        del stack[depth + 1:]
        if entry.startswith("@"):
            name = entry[1:].removesuffix(":")
            members[stack[-1]].add("@" + name)
            members.setdefault(name, set())
            stack.append(name)
        else:
            members[stack[-1]].add(entry)
    return members
