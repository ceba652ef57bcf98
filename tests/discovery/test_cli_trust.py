"""What the agent does to keep its token to itself and its lock file honest, through the real command line.

Pushes go to the real service (``karta_url``). Where a test names a host other than this machine, the
agent runs in a network namespace of its own (``unshare --net``): if it ever tried to connect, the
attempt could not leave the namespace.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.discovery.test_cli import LOCAL_SCOPE, cli, run_ids, write_config
from tests.discovery.keys import write_ed25519_key

ELSEWHERE = "http://203.0.113.7:8000"  # TEST-NET-3: never reached, see the docstring
DEPRECATED = "warning: --token is deprecated: a token on the command line is visible to every user"


@pytest.fixture
def isolated() -> tuple[str, ...]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to run the agent without a network")
    return ("unshare", "--net", "--")


def token_file(tmp_path: Path, secret: str, mode: int) -> Path:
    path = tmp_path / f"token-{mode:o}"
    path.write_text(secret + "\n")
    path.chmod(mode)
    return path


# ---- the token -------------------------------------------------------------------------------------

def test_token_on_the_command_line_still_works_with_a_deprecation_warning(api, karta_url):
    result = cli("local", "--api-url", karta_url, "--token", api.secrets["discovery"])
    assert result.returncode == 0, result.stderr
    assert DEPRECATED in result.stderr and "pushed=1 request(s)" in result.stderr
    assert api.secrets["discovery"] not in result.stderr
    assert len(run_ids(api)) == 1


def test_token_from_a_private_file_pushes_without_a_word(tmp_path, api, karta_url):
    path = token_file(tmp_path, api.secrets["discovery"], 0o600)
    result = cli("local", "--api-url", karta_url, "--token-file", str(path))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and len(run_ids(api)) == 1


def test_a_token_file_others_can_read_is_used_with_a_warning(tmp_path, api, karta_url):
    path = token_file(tmp_path, api.secrets["discovery"], 0o644)
    result = cli("local", "--api-url", karta_url, "--token-file", str(path))
    assert result.returncode == 0, result.stderr
    assert (f"karta discover: warning: token file {path} is accessible by others (mode 0644): anyone who can "
            f"read it can write to the CMDB; chmod 600 {path}") in result.stderr
    assert api.secrets["discovery"] not in result.stderr and len(run_ids(api)) == 1


def test_run_reads_the_configs_token_file_and_checks_it_too(tmp_path, api, karta_url):
    path = token_file(tmp_path, api.secrets["discovery"], 0o640)
    config = write_config(tmp_path, f'api_url = "{karta_url}"\ntoken_file = "{path.name}"\n' + LOCAL_SCOPE)
    result = cli("run", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scope=me ") and "pushed=1 request(s)" in result.stdout
    assert f"token file {path} is accessible by others (mode 0640)" in result.stderr
    assert len(run_ids(api)) == 1


def test_token_problems_are_usage_errors(tmp_path):
    missing = cli("local", "--api-url", "http://127.0.0.1:9", "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "No such file" in missing.stderr
    both = cli("local", "--api-url", "http://127.0.0.1:9", "--token", "x", "--token-file", str(tmp_path / "nope"))
    assert both.returncode == 2 and "give --token-file or --token, not both" in both.stderr
    empty = token_file(tmp_path, "", 0o600)
    assert "must hold the token on one line" in cli("local", "--api-url", "http://127.0.0.1:9",
                                                     "--token-file", str(empty)).stderr


# ---- where the token may go -------------------------------------------------------------------------

def test_plain_http_to_another_machine_is_refused(isolated, tmp_path):
    result = cli("local", "--api-url", ELSEWHERE, env={"KARTA_TOKEN": "karta_secret"}, prefix=isolated)
    assert result.returncode == 2, result.stderr
    assert ("karta discover: refusing plain http:// to 203.0.113.7: the token would travel in clear text. "
            "Use https://, or --insecure") in result.stderr
    assert "karta_secret" not in result.stderr
    config = write_config(tmp_path, f'api_url = "{ELSEWHERE}"\n' + LOCAL_SCOPE)
    run = cli("run", "--config", str(config), env={"KARTA_TOKEN": "karta_secret"}, prefix=isolated)
    assert run.returncode == 2 and "the token would travel in clear text" in run.stderr and run.stdout == ""


def test_insecure_lets_plain_http_through(isolated, tmp_path):
    # Allowed, the push is tried, and fails only because the namespace has no network.
    result = cli("local", "--api-url", ELSEWHERE, "--insecure", env={"KARTA_TOKEN": "t"}, prefix=isolated)
    assert result.returncode == 1 and f"cannot reach {ELSEWHERE}/api/v1/ingest" in result.stderr
    config = write_config(tmp_path, f'api_url = "{ELSEWHERE}"\ninsecure = true\n' + LOCAL_SCOPE)
    run = cli("run", "--config", str(config), env={"KARTA_TOKEN": "t"}, prefix=isolated)
    assert run.returncode == 1 and f"cannot reach {ELSEWHERE}/api/v1/ingest" in run.stdout


def test_lookups_for_remote_applications_go_only_where_pushes_may(isolated, tmp_path, api, karta_url):
    write_ed25519_key(tmp_path / "k")
    args = ["ssh", "--targets", "127.0.0.1", "--port", "1", "--user", "root", "--key", str(tmp_path / "k"),
            "--known-hosts", str(tmp_path / "known"), "--dry-run", "--resolve-remote"]
    env = {"KARTA_TOKEN": api.secrets["discovery"]}
    refused = cli(*args, "--api-url", ELSEWHERE, env=env, prefix=isolated)
    assert refused.returncode == 2 and "the token would travel in clear text" in refused.stderr
    allowed = cli(*args, "--api-url", karta_url, env=env)
    assert allowed.returncode == 0 and "hosts=0/1 ok unreachable=1" in allowed.stderr, allowed.stderr


# ---- the run lock -----------------------------------------------------------------------------------

def test_a_symlink_planted_at_the_lock_path_is_refused_and_its_target_untouched(tmp_path):
    config = write_config(tmp_path, LOCAL_SCOPE)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "run.lock").symlink_to(victim)
    result = cli("run", "--config", str(config), "--dry-run")
    assert result.returncode == 1 and result.stdout == ""
    assert (f"karta discover: lock file {tmp_path / 'run.lock'} is a symbolic link; refusing to follow it"
            in result.stderr)
    assert victim.read_text() == "precious\n"
    # A dangling one must not make the agent create its target either.
    (tmp_path / "run.lock").unlink()
    (tmp_path / "run.lock").symlink_to(tmp_path / "created-by-the-agent")
    assert cli("run", "--config", str(config), "--dry-run").returncode == 1
    assert not (tmp_path / "created-by-the-agent").exists()


def test_a_hard_link_planted_at_the_lock_path_is_refused(tmp_path):
    config = write_config(tmp_path, LOCAL_SCOPE)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / "run.lock")
    result = cli("run", "--config", str(config), "--dry-run")
    assert result.returncode == 1 and "has other hard links; refusing to use it" in result.stderr
    assert victim.read_text() == "precious\n"
