"""`karta alert` as a notification command runs it: the real command against a real server, each exit code."""

import os
import subprocess

from tests.conftest import tokens_for
from tests.server import KARTA, free_port, running_server


def karta_alert(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KARTA_")}
    return subprocess.run([*KARTA, "alert", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_configuration_errors_exit_3_and_unreachable_exits_5():
    args = ("--host", "db-1", "--service", "PostgreSQL", "--state", "CRITICAL")
    no_url = karta_alert(*args, env={"KARTA_TOKEN": "s3cret-token"})
    assert (no_url.returncode, no_url.stderr.strip()) == (3, "karta alert: set KARTA_URL to Karta's base URL "
                                                                "(https://karta.example.com)")
    no_token = karta_alert(*args, env={"KARTA_URL": "http://127.0.0.1:1"})
    assert no_token.returncode == 3 and "KARTA_TOKEN" in no_token.stderr
    clear_text = karta_alert(*args, env={"KARTA_URL": "http://karta.example.com", "KARTA_TOKEN": "s3cret-token"})
    assert clear_text.returncode == 3 and "clear text" in clear_text.stderr
    down = karta_alert(*args, "--timeout", "1", env={"KARTA_URL": f"http://127.0.0.1:{free_port()}",
                                                     "KARTA_TOKEN": "s3cret-token"})
    assert down.returncode == 5 and "cannot reach Karta" in down.stderr
    bad_label = karta_alert(*args, "--label", "novalue", env={"KARTA_URL": "http://127.0.0.1:1", "KARTA_TOKEN": "t"})
    assert bad_label.returncode == 2
    for result in (no_url, no_token, clear_text, down):
        assert "s3cret-token" not in result.stdout + result.stderr


def test_accepted_exits_0_with_the_incident_and_refused_exits_4(database_url, tmp_path):
    secrets = tokens_for(database_url)
    with running_server(database_url) as base:
        token_file = tmp_path / "token"
        token_file.write_text(secrets["write"] + "\n")
        token_file.chmod(0o600)
        accepted = karta_alert("--host", "10.9.9.9", "--service", "HTTP", "--state", "critical", "--output", "x" * 9000,
                               "--label", "team=web", "--token-file", str(token_file), env={"KARTA_URL": base})
        assert accepted.returncode == 0, accepted.stderr
        assert accepted.stdout.startswith("incident ") and accepted.stdout.rstrip().endswith(
            "open: 1 firing; failed: none; services: none; risk: none"), accepted.stdout
        refused = karta_alert("--host", "10.9.9.9", "--state", "CRITICAL", env={"KARTA_URL": base,
                                                                                "KARTA_TOKEN": secrets["read"]})
        assert refused.returncode == 4 and "refused (403)" in refused.stderr
        invalid = karta_alert("--host", "10.9.9.9", "--state", "BROKEN", env={"KARTA_URL": base,
                                                                              "KARTA_TOKEN": secrets["write"]})
        assert invalid.returncode == 4 and "state" in invalid.stderr
        for result in (accepted, refused, invalid):
            assert secrets["write"] not in result.stdout + result.stderr
            assert secrets["read"] not in result.stdout + result.stderr
