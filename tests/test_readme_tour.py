"""The README's tour runs as written: its bash block, against a real `karta serve`, with a real token."""

import re
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.conftest import missing_requirement
from tests.server import karta, running_server

README = Path(__file__).resolve().parent.parent / "README.md"


def tour_script() -> str:
    text = README.read_text()
    section = text[text.index("## A tour with curl"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    # The first line sets K and T by hand; the test sets them from the server it started.
    return "\n".join(line for line in block.splitlines() if not line.startswith("export K="))


def test_the_readme_tour_runs_as_written(database_url):
    for program in ("bash", "curl", "jq"):
        if shutil.which(program) is None:
            missing_requirement(f"the README tour needs {program}")
    made = karta("token", "create", "--name", "me", "--scope", "read", "--scope", "write", "--scope", "admin",
                 database_url=database_url)
    secret = made.stdout.strip().splitlines()[-1]
    with running_server(database_url) as base:
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", tour_script()], capture_output=True, text=True,
                             timeout=120, env={"K": base, "T": secret, "PATH": "/usr/bin:/bin:/usr/local/bin"})
        assert run.returncode == 0, run.stderr + run.stdout
        assert '"status":412' in run.stdout and '"status":409' in run.stdout  # the two refusals it shows
        headers = {"Authorization": f"Bearer {secret}"}
        names = {ci["name"] for ci in httpx.get(f"{base}/api/v1/cis", headers=headers, timeout=10).json()["items"]}
        assert names == {"shop", "shop-web", "web-1"}
