"""snmpsim, the real SNMP agent simulator, replaying recorded walks on loopback addresses for the SNMP tests.

``SnmpSim`` runs one ``snmpsim-command-responder`` process (the console script of the snmpsim package, the
test extra) with one SNMP engine per device: device i answers on 127.0.0.<i + 2>, all on one free UDP port, so
one ``karta discover snmp --targets ...`` walks them all as it would a network. Each engine has a data
directory of its own holding its device's recording twice: ``<community>.snmprec`` (v2c: snmpsim serves the
file the community names) and ``self.snmprec`` (v3: the file snmpsim serves to the empty context name our
client sends), and one v3 user (SHA, AES). Recordings are copied from where they live (the snmpsim package's
``data/recorded`` for the real ones, tests/discovery/snmprec/ for the composed ones) into a temp directory;
nothing is written next to them, the index cache included.

snmpsim refuses to run as root unless it drops privileges to another user, who here could not even read the
interpreter (a pyenv Python under /root): as root it runs with ``SNMPSIM_ALLOW_ROOT=true`` instead, listening
on loopback only. ``SnmpSim.stop`` ends the process it started (by its pid) and deletes its directory, even
after a failed start.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discovery.snmp.client import SnmpCredentials, SnmpSettings, collect_devices
from tests.server import stop

RESPONDER = Path(sys.executable).with_name("snmpsim-command-responder")
COMPOSED = Path(__file__).parent / "snmprec"
COMMUNITY = "karta-sim-community"
V3_USER = "karta-sim"
V3_AUTH_KEY = "sim-auth-key-1"
V3_PRIV_KEY = "sim-priv-key-1"
V2C = SnmpCredentials("2c", community=COMMUNITY)
V3 = SnmpCredentials("3", user=V3_USER, auth_key=V3_AUTH_KEY, priv_key=V3_PRIV_KEY, auth_protocol="SHA",
                     priv_protocol="AES")
MAX_DEVICES = 200  # 127.0.0.2 .. 127.0.0.201


def missing_requirements() -> list[str]:
    missing = [] if importlib.util.find_spec("snmpsim") else ["snmpsim (pip install '.[test]')"]
    # snmpsim 1.2 imports pysmi without declaring it (its own packaging bug): the responder dies without it
    missing += [] if importlib.util.find_spec("pysmi") else ["pysmi (snmpsim imports it)"]
    missing += [] if RESPONDER.exists() else [f"{RESPONDER.name} next to {sys.executable}"]
    return missing


def shipped_recording(name: str) -> Path:
    """A real recording shipped in the snmpsim package (snmpsim/data/recorded/<name>.snmprec)."""
    spec = importlib.util.find_spec("snmpsim")
    assert spec is not None and spec.origin is not None, "snmpsim is not installed"
    path = Path(spec.origin).parent / "data" / "recorded" / f"{name}.snmprec"
    assert path.is_file(), f"snmpsim no longer ships {path.name}"
    return path


def composed_recording(name: str) -> Path:
    return COMPOSED / f"{name}.snmprec"


def _free_port(addresses: list[str]) -> int:
    """A UDP port free on every address (bounded tries: another program may take one in between)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        sockets = []
        try:
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no UDP port free on every simulated device's address")


class SnmpSim:
    """The simulator serving ``recordings`` (device name -> .snmprec file); ``address(name)`` is where."""

    def __init__(self, recordings: dict[str, Path]) -> None:
        if not 0 < len(recordings) <= MAX_DEVICES:
            raise ValueError(f"1 to {MAX_DEVICES} recordings")
        self.recordings = dict(recordings)
        self.addresses = {name: f"127.0.0.{i + 2}" for i, name in enumerate(self.recordings)}
        self.dir = Path(tempfile.mkdtemp(prefix="karta-snmpsim-"))
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._log = None

    def address(self, name: str) -> str:
        return self.addresses[name]

    def settings(self, credentials: SnmpCredentials = V2C, **overrides) -> SnmpSettings:
        values = {"port": self.port, "timeout": 2.0, "retries": 1, **overrides}
        return SnmpSettings(credentials, **values)

    def command(self) -> list[str]:
        args = [str(RESPONDER), f"--cache-dir={self.dir / 'cache'}"]
        for i, (name, recording) in enumerate(self.recordings.items()):
            data = self.dir / f"device{i}"
            data.mkdir()
            shutil.copyfile(recording, data / f"{COMMUNITY}.snmprec")
            shutil.copyfile(recording, data / "self.snmprec")
            engine_id = "80001f8804" + f"karta-sim-{i}".encode().hex()  # RFC 3411: enterprise, format 4 (text)
            args += [f"--v3-engine-id={engine_id}", f"--data-dir={data}",
                     f"--agent-udpv4-endpoint={self.addresses[name]}:{self.port}",
                     f"--v3-user={V3_USER}", f"--v3-auth-key={V3_AUTH_KEY}", "--v3-auth-proto=SHA",
                     f"--v3-priv-key={V3_PRIV_KEY}", "--v3-priv-proto=AES"]
        return args

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-20_000:]

    def start(self, startup_seconds: float = 60) -> None:
        self.port = _free_port(list(self.addresses.values()))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir)}
        if os.geteuid() == 0:
            env["SNMPSIM_ALLOW_ROOT"] = "true"
        self._log = tempfile.TemporaryFile(mode="a+", dir=self.dir)
        self.process = subprocess.Popen(self.command(), cwd=self.dir, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + startup_seconds
        pending = list(self.addresses.values())
        while pending:  # bounded: each round costs at most one timeout per device, the deadline ends it
            if self.process.poll() is not None:
                raise RuntimeError(f"snmpsim exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"snmpsim did not answer on {', '.join(pending)} in {startup_seconds:g}s:\n"
                                   f"{self.log()}")
            ready = collect_devices(pending, self.settings(timeout=0.5, retries=0, device_seconds=5))
            pending = [r.target for r in ready if r.status != "ok"]
            if pending:
                time.sleep(0.2)

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                stop(self.process)
        finally:
            if self._log is not None:
                self._log.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SnmpSim:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
