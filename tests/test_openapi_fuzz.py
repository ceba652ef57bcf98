"""A short schemathesis run against a real `karta serve`: requests made from /openapi.json get no 5xx,
and every answer has a documented status, media type and shape. Bounded (10 examples per operation,
fixed seed, one worker: about ten seconds) so it stays deterministic enough not to flake."""

import subprocess
import sys
from pathlib import Path

from tests.server import karta, running_server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# A part of the document schemathesis cannot use (an unresolvable $ref, a pattern it cannot read) is a
# part no request tests: fail on it rather than pass without it.
CONFIG = '[warnings]\nfail-on = ["unresolvable_reference", "unsupported_regex"]\n'


def test_generated_requests_get_documented_answers_and_no_server_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'karta.db'}"
    assert karta("db", "upgrade", database_url=url).returncode == 0
    created = karta("token", "create", "--name", "fuzz", "--scope", "admin", database_url=url)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    # No webhook deliveries: the fuzzer subscribes made-up URLs, and nothing may leave this machine.
    with running_server(url, env={"KARTA_WEBHOOKS_DELIVER": "false"}) as base:
        result = subprocess.run(
            [str(SCHEMATHESIS), "--config-file", "schemathesis.toml", "run", f"{base}/openapi.json", "--header", f"Authorization: Bearer {secret}",
             "--checks", CHECKS, "--max-examples", "10", "--seed", "1", "--workers", "1", "--no-shrink",
             "--phases", "examples,coverage,fuzzing", "--request-timeout", "10"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 48" in result.stdout and " passed" in result.stdout, result.stdout[-3000:]
