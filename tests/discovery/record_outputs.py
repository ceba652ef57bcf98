"""Re-record the command outputs under tests/discovery/data/ from a fresh lab.

    sudo .venv/bin/python -m tests.discovery.record_outputs

Writes reply_<host>.txt (the collector script's raw reply from inside each
lab host, marker token RECORDED_TOKEN) and nmap_lab.xml (nmap with the
agent's own arguments on the lab subnet). The unit tests read these files;
after re-recording, update the expected values in test_parsers.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from discovery import hostscript
from discovery.nmapscan import DEFAULT_PORTS, scan_arguments
from tests.discovery.lab import SUBNET, Lab
from tests.discovery.lab_services import standard_hosts, start_services

DATA = Path(__file__).parent / "data"
RECORDED_TOKEN = "0123456789abcdef"


def _standard_mounts_only(reply: bytes) -> bytes:
    """Keep only the usual mounts in the df section, so recordings don't describe the recording machine."""
    out, in_df = [], False
    for line in reply.split(b"\n"):
        if line.startswith(f"@@KARTA-{RECORDED_TOKEN} ".encode()):
            in_df = line.endswith(b" filesystems")
        elif in_df and line.split() and line.split()[-1] not in (b"/", b"/dev", b"/dev/shm", b"on"):
            continue
        out.append(line)
    return b"\n".join(out)


def main() -> int:
    DATA.mkdir(exist_ok=True)
    with Lab(standard_hosts(), setup=start_services) as lab:
        for name, packages in (("web-1", False), ("db-1", True), ("app-1", False)):
            script = hostscript.render(RECORDED_TOKEN, packages=packages)
            reply = subprocess.run(lab.host_command(name, ["/bin/sh", "-s"]), input=script.encode(),
                                   capture_output=True, timeout=60).stdout
            (DATA / f"reply_{name}.txt").write_bytes(_standard_mounts_only(reply))
        arguments = scan_arguments(service_versions=False, privileged=True).split()
        xml = lab.run(["nmap", "-oX", "-", "-p", DEFAULT_PORTS, *arguments, SUBNET], timeout=300).stdout
        (DATA / "nmap_lab.xml").write_text(xml)
        for name in ("web-1", "db-1", "app-1"):
            print(name, lab.machine_id(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
