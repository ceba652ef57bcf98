"""The command line as cron and people use it: exit codes, output, config, the token, the run lock.

Pushes go to the real service (``karta_url``: ``karta serve`` on the test's database).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from discovery.config import ConfigError, load_config
from tests.discovery.conftest import REPO
from tests.discovery.keys import write_ed25519_key


def cli(*args: str, env: dict | None = None, timeout: float = 120, cwd: Path = REPO,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
                "HOME": os.environ.get("HOME", "/root"), **(env or {})}
    return subprocess.run([*prefix, sys.executable, "-m", "discovery.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


def run_ids(api) -> set[str]:
    return {run["id"] for run in api.get("/api/v1/discovery/runs").json()["items"]}


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "discovery.toml"
    path.write_text(f'lock_file = "{tmp_path / "run.lock"}"\n' + body)
    return path


LOCAL_SCOPE = '[[scope]]\nname = "me"\ntype = "local"\n'


def test_local_dry_run_prints_a_batch_and_a_summary():
    result = cli("local", "--dry-run")
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)
    assert batch["source"] == "ssh" and batch["items"][0]["class"] in ("server", "virtual_machine")
    assert result.stderr.startswith("scope=local source=ssh hosts=1/1 ok ")


def test_local_pushes_to_the_api_with_the_token_from_the_environment(tmp_path, api, karta_url):
    result = cli("local", "--output", str(tmp_path / "b.json"),
                 env={"KARTA_API_URL": karta_url, "KARTA_TOKEN": api.secrets["discovery"]})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "pushed=1 request(s)" in result.stderr and "warning" not in result.stderr
    sent = json.loads((tmp_path / "b.json").read_text())
    assert run_ids(api) == {sent["run_id"]}
    landed = {(ci["class"], ci["name"]) for ci in api.get("/api/v1/cis", params={"limit": 1000}).json()["items"]}
    assert landed == {(item["class"], item["name"]) for item in sent["items"]}


def test_usage_errors_exit_2():
    assert cli("local").returncode == 2  # no api url/token and no --dry-run
    bad_subnet = cli("scan", "--subnet", "10.0.0.0/8;reboot", "--dry-run")
    assert bad_subnet.returncode == 2 and "does not appear to be an IPv4 or IPv6 network" in bad_subnet.stderr
    assert cli("scan", "--subnet", "10.77.0.0/24", "--ports", "22;id", "--dry-run").returncode == 2
    assert cli("ssh", "--targets", "a b", "--user", "root", "--key", "/nonexistent", "--dry-run").returncode == 2
    # looking up other runs' applications needs the API even on a dry run
    assert cli("ssh", "--targets", "127.0.0.1", "--user", "root", "--key", "/nonexistent", "--dry-run",
               "--resolve-remote").returncode == 2


def test_a_refused_push_or_an_unusable_key_fails_the_run(tmp_path, karta_url):
    refused = cli("local", "--api-url", karta_url, env={"KARTA_TOKEN": "karta_wrong"})
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "karta_wrong" not in refused.stderr
    key = tmp_path / "key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n")
    bad_key = cli("ssh", "--targets", "127.0.0.1", "--user", "root", "--key", str(key), "--dry-run")
    assert bad_key.returncode == 1 and f"SSH key {key} could not be loaded" in bad_key.stderr
    assert "not a key" not in bad_key.stderr


def test_hosts_that_are_down_do_not_fail_the_run(tmp_path):
    write_ed25519_key(tmp_path / "k")
    # Loopback port 1: nothing listens, the connection is refused at once.
    result = cli("ssh", "--targets", "127.0.0.1", "--port", "1", "--user", "root", "--key", str(tmp_path / "k"),
                 "--known-hosts", str(tmp_path / "known"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["items"] == []
    assert "hosts=0/1 ok unreachable=1" in result.stderr


def test_run_prints_one_line_per_scope_and_nothing_else_when_not_a_tty(tmp_path, api, karta_url):
    config = write_config(tmp_path, LOCAL_SCOPE + '\n[[scope]]\nname = "me-again"\ntype = "local"\n')
    result = cli("run", "--config", str(config), "--api-url", karta_url,
                 env={"KARTA_TOKEN": api.secrets["discovery"]})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["scope=me", "scope=me-again"]
    assert result.stderr == ""
    assert run_ids(api) == {line.split("run_id=")[1].split()[0] for line in lines}


def test_run_dry_run_writes_json_lines_and_per_scope_files(tmp_path):
    config = write_config(tmp_path, LOCAL_SCOPE)
    result = cli("run", "--config", str(config), "--dry-run", "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((tmp_path / "out" / "me.json").read_text())
    assert result.stderr.startswith("scope=me source=ssh")


def test_an_overlapping_run_exits_at_once_with_a_clear_message(tmp_path):
    config = write_config(tmp_path, LOCAL_SCOPE)
    with open(tmp_path / "run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        started = time.monotonic()
        result = cli("run", "--config", str(config), "--dry-run")
        assert time.monotonic() - started < 10
    assert result.returncode == 75
    assert f"another karta discover run holds {tmp_path / 'run.lock'} (pid 4242); exiting" in result.stderr
    assert result.stdout == ""
    assert cli("run", "--config", str(config), "--dry-run").returncode == 0  # released: runs again


def test_run_shows_progress_on_a_terminal(tmp_path, api, karta_url):
    config = write_config(tmp_path, LOCAL_SCOPE)
    leader, follower = pty.openpty()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "TERM": "xterm",
           "COLUMNS": "120", "KARTA_TOKEN": api.secrets["discovery"]}
    proc = subprocess.Popen([sys.executable, "-m", "discovery.cli", "run", "--config", str(config),
                             "--api-url", karta_url], stdin=follower, stdout=follower, stderr=follower,
                            env=env, cwd=REPO)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(leader)
    assert proc.returncode == 0
    assert b"scope=me source=ssh hosts=1/1 ok" in output and b"pushed=1 request(s)" in output


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    cases = {
        'scope = []\n': "scope",
        '[[scope]]\nname = "x"\ntype = "nmap"\n': "an nmap scope needs subnets",
        '[[scope]]\nname = "x"\ntype = "ssh"\ntargets = ["10.77.0.11"]\n': "no SSH key",
        '[[scope]]\nname = "x"\ntype = "nmap"\nsubnets = ["10.77.0.0/24"]\nportz = "22"\n': "portz",
        '[[scope]]\nname = "x"\ntype = "local"\n[[classification.rules]]\nclass = "router"\nkind = "x"\n'
        'process = ["x"]\n': "class must be one of",
        'concurrency = 0\n[[scope]]\nname = "x"\ntype = "local"\n': "concurrency",
        'this is not toml': "invalid TOML",
    }
    for body, message in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(body)
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def test_config_paths_are_relative_to_the_file_and_rules_extend_the_table(tmp_path):
    (tmp_path / "hosts.txt").write_text("10.77.0.11\n")
    path = tmp_path / "c.toml"
    path.write_text('key = "keys/id"\nknown_hosts = "kh"\ntrust_on_first_use = true\n'
                    '[[scope]]\nname = "s"\ntype = "ssh"\ntargets = ["@hosts.txt", "10.77.0.12,@hosts.txt", "hosts.txt"]\n'
                    'schedule = "hourly"\n'
                    '[[classification.rules]]\nclass = "application"\nkind = "billing"\nprocess = ["billingd"]\n')
    config = load_config(path)
    assert config.key == tmp_path / "keys" / "id" and config.known_hosts == tmp_path / "kh"
    # '@' files are relative to the config; a bare word is a host name, whatever files exist
    assert config.scope[0].targets == [f"@{tmp_path / 'hosts.txt'}", f"10.77.0.12,@{tmp_path / 'hosts.txt'}",
                                       "hosts.txt"]
    assert config.trust_on_first_use is True and config.scope[0].schedule == "hourly"
    rules = [(r.ci_class, r.kind, r.process) for r in config.extra_rules()]
    assert rules == [("application", "billing", ("billingd",))]
