"""Host key policy: known keys pass, changed keys never do, unknown ones only under trust-on-first-use."""

from __future__ import annotations


import paramiko
import pytest

from discovery.knownhosts import HostKeyRejected, HostKeyVerifier
from tests.discovery.conftest import require
from tests.discovery.keys import write_ed25519_key


def ed25519(tmp_path, name: str) -> paramiko.PKey:
    path = tmp_path / name
    write_ed25519_key(path)
    return paramiko.PKey.from_path(str(path))


def test_known_changed_and_unknown_keys(tmp_path):
    web, other = ed25519(tmp_path, "web"), ed25519(tmp_path, "other")
    known = tmp_path / "known_hosts"
    known.write_text(f"10.77.0.11 {web.get_name()} {web.get_base64()}\n"
                     f"[10.77.0.12]:2222 {other.get_name()} {other.get_base64()}\n")
    verifier = HostKeyVerifier(known)
    assert verifier.verify("10.77.0.11", 22, web) == "known"
    assert verifier.verify("10.77.0.12", 2222, other) == "known"
    with pytest.raises(HostKeyRejected) as changed:
        verifier.verify("10.77.0.11", 22, other)
    assert changed.value.status == "host_key_mismatch"
    with pytest.raises(HostKeyRejected) as unknown:
        verifier.verify("10.77.0.12", 22, other)  # same host, other port: another entry
    assert unknown.value.status == "host_key_unknown"
    assert known.read_text().count("\n") == 2


def test_trust_on_first_use_pins_once_and_holds(tmp_path):
    first, later = ed25519(tmp_path, "first"), ed25519(tmp_path, "later")
    known = tmp_path / "state" / "known_hosts"
    verifier = HostKeyVerifier(known, trust_on_first_use=True)
    assert verifier.verify("db-1.lab", 22, first) == "pinned"
    assert verifier.verify("db-1.lab", 22, first) == "known"
    with pytest.raises(HostKeyRejected):
        verifier.verify("db-1.lab", 22, later)
    assert known.read_text() == f"db-1.lab {first.get_name()} {first.get_base64()}\n"
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    assert HostKeyVerifier(known).verify("db-1.lab", 22, first) == "known"  # a later run reads the pin


def test_hashed_entries_and_preferred_algorithms(tmp_path):
    key = ed25519(tmp_path, "k")
    known = tmp_path / "known_hosts"
    entry = paramiko.HostKeys()
    entry.add(paramiko.HostKeys.hash_host("10.77.0.13"), key.get_name(), key)
    entry.save(str(known))
    verifier = HostKeyVerifier(known)
    assert verifier.verify("10.77.0.13", 22, key) == "known"
    offered = ("ecdsa-sha2-nistp256", "ssh-ed25519", "rsa-sha2-512")
    assert verifier.preferred_algorithms("10.77.0.13", 22, offered) == (
        "ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512")
    assert verifier.preferred_algorithms("10.77.0.99", 22, offered) == offered


def test_require_skips_or_fails_by_environment(monkeypatch):
    require([])  # nothing missing: nothing happens
    monkeypatch.delenv("KARTA_REQUIRE_ALL", raising=False)
    with pytest.raises(pytest.skip.Exception, match="discovery lab needs: nmap"):
        require(["nmap"])
    monkeypatch.setenv("KARTA_REQUIRE_ALL", "1")
    with pytest.raises(pytest.fail.Exception, match="KARTA_REQUIRE_ALL=1"):
        require(["nmap"])
