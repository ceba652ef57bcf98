"""``karta discover snmp`` and the ``[snmp]`` config: credentials never from argv, bounds, scopes in ``run``."""

from __future__ import annotations

import json
import socket

import pytest

from discovery.config import ConfigError, load_config
from discovery.snmp.scope import MAX_SUBNET_ADDRESSES, subnet_targets
from discovery.snmp.settings import resolve_settings
from tests.discovery.test_cli import cli, write_config


@pytest.mark.parametrize("option", ["--community", "--auth-key", "--priv-key"])
def test_credentials_on_the_command_line_are_refused(option):
    result = cli("snmp", "--targets", "192.0.2.1", option, "s3cret-value", "--dry-run")
    assert result.returncode == 2
    assert "never taken from the command line" in result.stderr and "KARTA_SNMP_COMMUNITY" in result.stderr
    assert "s3cret-value" not in result.stderr + result.stdout


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--targets", "192.0.2.1", "--subnet", "192.0.2.0/30"], {"KARTA_SNMP_COMMUNITY": "c"}, "one of them"),
    ([], {"KARTA_SNMP_COMMUNITY": "c"}, "one of them"),
    (["--targets", "192.0.2.1"], {}, "v2c needs a community"),
    (["--targets", "192.0.2.1", "--snmp-version", "3"], {}, "v3 needs a user"),
    (["--targets", "192.0.2.1", "--snmp-version", "1"], {"KARTA_SNMP_COMMUNITY": "c"}, "2c or 3"),
    (["--targets", "192.0.2.1"], {"KARTA_SNMP_USER": "u", "KARTA_SNMP_AUTH_KEY": "short"}, "at least 8"),
    (["--targets", "192.0.2.1"], {"KARTA_SNMP_USER": "u", "KARTA_SNMP_PRIV_KEY": "privpriv1"}, "needs authentication"),
    (["--subnet", "10.0.0.0/8"], {"KARTA_SNMP_COMMUNITY": "c"}, f"at most {MAX_SUBNET_ADDRESSES}"),
])
def test_bad_arguments_exit_2(args, env, message):
    result = cli("snmp", *args, "--dry-run", env=env)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_silent_target_is_a_run_that_did_its_job():
    """Nothing answers SNMP on the port: one timed-out device, an empty batch, exit 0, within the bounds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound and never read: requests go unanswered
        result = cli("snmp", "--targets", "127.0.0.1", "--port", str(port), "--timeout", "0.3", "--retries", "0",
                     "--dry-run", env={"KARTA_SNMP_COMMUNITY": "public"}, timeout=30)
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)
    assert (batch["source"], batch["scope"], batch["items"], batch["relationships"], batch["complete"]) == (
        "snmp", {"subnets": [], "hosts": ["127.0.0.1"]}, [], [], True)
    assert "hosts=0/1 ok timeout=1" in result.stderr and "not ok: 127.0.0.1 timeout" in result.stderr


def test_config_snmp_table_and_scope(tmp_path):
    (tmp_path / "auth.key").write_text("auth-key-from-file\n")
    (tmp_path / "auth.key").chmod(0o600)
    (tmp_path / "priv.key").write_text("priv-key-from-file\n")
    (tmp_path / "priv.key").chmod(0o644)
    path = write_config(tmp_path, """
[snmp]
version = "3"
user = "karta"
auth_key_file = "auth.key"
priv_key_file = "priv.key"
auth_protocol = "SHA256"
timeout = 1.5

[[scope]]
name = "switches"
type = "snmp"
targets = ["10.0.0.2-3"]
""")
    config = load_config(path)
    assert config.snmp.auth_key_file == tmp_path / "auth.key"  # relative to the config file
    assert [(s.name, s.type, s.targets) for s in config.scope] == [("switches", "snmp", ["10.0.0.2-3"])]
    settings, warnings = resolve_settings(config.snmp, environ={})
    credentials = settings.credentials
    assert (credentials.version, credentials.user, credentials.auth_key, credentials.priv_key,
            credentials.auth_protocol, credentials.priv_protocol, settings.timeout, settings.retries) == (
        "3", "karta", "auth-key-from-file", "priv-key-from-file", "SHA256", "AES", 1.5, 1)
    assert warnings == [(f"SNMP secret file {tmp_path / 'priv.key'} is accessible by others (mode 0644): anyone who "
                        f"can read it can read your network; chmod 600 {tmp_path / 'priv.key'}")]
    assert "auth-key-from-file" not in repr(settings)
    # the environment wins over the files, as KARTA_TOKEN does over token_file
    settings, _ = resolve_settings(config.snmp, environ={"KARTA_SNMP_AUTH_KEY": "from-the-environment",
                                                         "KARTA_SNMP_PRIV_PROTOCOL": "aes256"})
    assert (settings.credentials.auth_key, settings.credentials.priv_protocol) == ("from-the-environment", "AES256")


@pytest.mark.parametrize(("body", "message"), [
    ('[[scope]]\nname = "s"\ntype = "snmp"\n', "needs targets or subnets"),
    ('[[scope]]\nname = "s"\ntype = "snmp"\ntargets = ["a"]\nsubnets = ["10.0.0.0/24"]\n', "needs targets or subnets"),
    ('[snmp]\ncommunity = "public"\n[[scope]]\nname = "s"\ntype = "snmp"\ntargets = ["a"]\n', "community"),
    ('[snmp]\nauth_protocol = "SHA1024"\n[[scope]]\nname = "s"\ntype = "snmp"\ntargets = ["a"]\n', "auth_protocol"),
])
def test_config_refuses(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, body))


def test_subnet_targets():
    assert subnet_targets(["192.0.2.0/30", "192.0.2.1/32", "198.51.100.7/32"]) == [
        "192.0.2.1", "192.0.2.2", "198.51.100.7"]


def test_the_readme_config_loads(tmp_path):
    """The README's [snmp] example is a config the agent accepts, as written."""
    from tests.discovery.conftest import REPO

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Network discovery (SNMP, LLDP)"):]
    block = section[section.index("```toml\n") + 8:section.index("```", section.index("```toml\n") + 8)]
    config = load_config(write_config(tmp_path, block))
    assert (config.snmp.version, config.snmp.user, [s.type for s in config.scope]) == ("3", "karta", ["snmp"])


def test_run_walks_snmp_scopes(tmp_path):
    """``karta discover run`` runs an snmp scope like the others: its batch, its summary line."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        (tmp_path / "community").write_text("public\n")
        (tmp_path / "community").chmod(0o600)
        path = write_config(tmp_path, f"""
[snmp]
community_file = "community"
port = {sock.getsockname()[1]}
timeout = 0.3
retries = 0

[[scope]]
name = "switches"
type = "snmp"
targets = ["127.0.0.1"]
""")
        result = cli("run", "--config", str(path), "--dry-run", timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["scope"] == {"subnets": [], "hosts": ["127.0.0.1"]}
    assert "scope=switches source=snmp hosts=0/1 ok timeout=1" in result.stderr


def test_a_partial_walk_makes_the_run_incomplete():
    from discovery.snmp.models import DeviceFacts, DeviceResult
    from discovery.snmp.scope import run_is_complete

    notes: list[str] = []
    assert run_is_complete([DeviceResult("a", "ok", DeviceFacts("a")), DeviceResult("b", "timeout")], notes)
    assert notes == []
    assert not run_is_complete([DeviceResult("a", "ok"), DeviceResult("c", "partial", DeviceFacts("c"))], notes)
    assert notes == ["incomplete run (partial walks: c)"]
