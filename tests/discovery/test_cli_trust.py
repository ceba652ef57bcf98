"""What the agent does to keep its lock file honest, through the real command line."""

from __future__ import annotations

import os

from tests.discovery.test_cli import LOCAL_SCOPE, cli, write_config


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
