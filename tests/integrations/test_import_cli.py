"""`karta import` against a real `karta serve` (uvicorn, both databases): the per-row report printed,
the exit status, the token from the environment only, and the client checks it shares with discovery."""

import os
import subprocess

from app.core.config import Settings
from app.main import create_app
from tests.conftest import create_tokens
from tests.server import KARTA, running_server

SHEET = ("name,identifier.fqdn,owner,criticality\n"
         "web-1,web-1.example.com,web-team,2\n"
         "db-1,db-1.example.com,\x1b[31mdba,\n")
BROKEN = SHEET + "bad,bad.example.com,,7\n"


def karta_import(*args: str, url: str | None, token: str | None, cwd) -> subprocess.CompletedProcess:
    """`karta import` with the files of `cwd`, run from here (so that `python -m app.cli` is this checkout's)."""
    args = tuple(str(cwd / arg) if arg.endswith(".csv") else arg for arg in args)
    env = {k: v for k, v in os.environ.items() if k not in ("KARTA_URL", "KARTA_TOKEN")}
    if url:
        env["KARTA_URL"] = url
    if token:
        env["KARTA_TOKEN"] = token
    return subprocess.run([*KARTA, "import", *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_karta_import_against_a_real_server(database_url, tmp_path):
    app = create_app(Settings(database_url=database_url))
    token = create_tokens(app.state.engine)["write"]
    app.state.engine.dispose()
    (tmp_path / "hosts.csv").write_text(SHEET)
    (tmp_path / "broken.csv").write_text(BROKEN)
    (tmp_path / "links.csv").write_text("source,type,target\nfqdn=web-1.example.com,depends_on,name=db-1\n")
    with running_server(database_url) as base:
        dry = karta_import("hosts.csv", "--class", "server", "--dry-run", url=base, token=token, cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        lines = dry.stdout.splitlines()
        assert [line.split(" ")[:3] for line in lines if line.startswith("row")] == [
            ["row", "2:", "create"], ["row", "3:", "create"]]
        assert "    owner: None -> dba" in lines  # the terminal escape sequence is gone
        assert lines[-1] == "CIs: 2 created, 0 updated, 0 unchanged would be; 0 with errors"

        broken = karta_import("broken.csv", "--class", "server", url=base, token=token, cwd=tmp_path)
        assert broken.returncode == 1
        assert "row 4: error" in broken.stdout and "    criticality: 7 is not from 1 (most critical) to 4" in broken.stdout
        assert broken.stdout.splitlines()[-1] == "nothing was imported: fix the rows above (or send all_or_nothing=false)"

        applied = karta_import("hosts.csv", "--class", "server", url=base, token=token, cwd=tmp_path)
        assert applied.returncode == 0 and applied.stdout.splitlines()[-1] == (
            "CIs: 2 created, 0 updated, 0 unchanged were; 0 with errors"), applied.stdout + applied.stderr
        links = karta_import("links.csv", "--relationships", url=base, token=token, cwd=tmp_path)
        assert links.returncode == 0 and links.stdout.splitlines()[-1] == (
            "relationships: 1 created, 0 updated, 0 unchanged were; 0 with errors")
        again = karta_import("hosts.csv", "--class", "server", url=base, token=token, cwd=tmp_path)
        assert again.stdout.splitlines() == ["CIs: 0 created, 0 updated, 2 unchanged were; 0 with errors"]

        no_token = karta_import("hosts.csv", url=base, token=None, cwd=tmp_path)
        assert no_token.returncode == 2 and "set KARTA_TOKEN" in no_token.stderr
        refused = karta_import("hosts.csv", "--class", "server", url=base, token="not-a-token", cwd=tmp_path)
        assert refused.returncode == 2 and "HTTP 401" in refused.stderr
        remote = karta_import("hosts.csv", url="http://karta.example.org", token=token, cwd=tmp_path)
        assert remote.returncode == 2 and "refusing plain http:// to karta.example.org" in remote.stderr
        assert token not in dry.stdout + dry.stderr + refused.stderr
