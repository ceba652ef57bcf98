"""`karta graph snapshot`: the real command, on a real database (SQLite and PostgreSQL), writes the snapshot a
worker then starts from; without a usable directory it says why and fails, writing nothing.
"""

import os
import subprocess

from app.services.live_graph import SNAPSHOT_FILE
from tests.server import KARTA, free_port
from tests.test_graph_snapshot_service import content, estate, from_the_database, worker
from tests.test_live_graph import impacted_names, last_seq


def karta_graph_snapshot(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "KARTA_GRAPH_SNAPSHOT_DIR"}
    return subprocess.run([*KARTA, "graph", "snapshot", *args], env={**environment, **env,
                          "KARTA_DATABASE_URL": database_url}, capture_output=True, text=True, timeout=120)


def test_the_command_writes_the_snapshot_a_worker_then_starts_from(database_url, tmp_path):
    directory = tmp_path / "graph"
    with worker(database_url, None) as (_, api):  # no snapshots: the file is the command's alone
        ids = estate(api)
        seq = last_seq(api)
    done = karta_graph_snapshot(database_url, "--directory", str(directory))
    assert done.returncode == 0, done.stderr
    path = directory / SNAPSHOT_FILE
    assert done.stdout.startswith(f"{path}: applied_seq {seq}, 5 CIs, {path.stat().st_size} bytes"), done.stdout
    assert path.stat().st_mode & 0o777 == 0o600 and directory.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in directory.iterdir()) == [SNAPSHOT_FILE, f"{SNAPSHOT_FILE}.lock"]

    with worker(database_url, directory, api.secrets) as (live, api):
        assert impacted_names(api, ids["db"]) == ({"web1", "web2", "pool", "lb"}, seq)
        assert live.built_from_snapshot == seq and live.builds == 1
        with live.reading() as graph:
            assert content(graph) == from_the_database(live)
        api.relate(ids["lb"], "depends_on", ids["db"])  # the command's file is older now: run it again
        seq = last_seq(api)
    done = karta_graph_snapshot(database_url, KARTA_GRAPH_SNAPSHOT_DIR=str(directory))  # the setting, no option
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{path}: applied_seq {seq}, 5 CIs"), done.stdout
    with worker(database_url, directory, api.secrets) as (live, api):
        assert impacted_names(api, ids["web1"])[0] == {"pool", "lb"}
        assert live.built_from_snapshot == seq


def test_without_a_usable_directory_it_fails_and_says_why(database_url, tmp_path):
    with worker(database_url, None) as (_, api):
        estate(api)
    done = karta_graph_snapshot(database_url)
    assert done.returncode != 0 and "pass --directory or set KARTA_GRAPH_SNAPSHOT_DIR" in done.stderr
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # others may write it: they would decide every worker's answers
    done = karta_graph_snapshot(database_url, "--directory", str(shared))
    assert done.returncode != 0, done.stdout
    assert f"No snapshot written: {shared} must belong to this service's user and be writable by it alone" \
        in done.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    done = karta_graph_snapshot(database_url, KARTA_GRAPH_SNAPSHOT_DIR=str(a_file))
    assert done.returncode != 0 and f"No snapshot written: {a_file}" in done.stderr
    assert list(shared.iterdir()) == [] and a_file.read_text() == ""


def test_a_database_with_no_change_recorded_gets_no_snapshot(database_url, tmp_path):
    """Nothing would tie the file to this database (the lineage a worker checks is a change record)."""
    done = karta_graph_snapshot(database_url, "--directory", str(tmp_path / "graph"))
    assert done.returncode != 0 and "no change record at seq 0" in done.stderr, done.stderr
    assert not (tmp_path / "graph" / SNAPSHOT_FILE).exists()


def test_an_unreachable_database_fails_in_one_line_and_writes_nothing(tmp_path):
    """A database error (here PostgreSQL on a port nothing listens on) says so in a line, no traceback."""
    port = free_port()  # a loopback port just free: a connection there is refused at once
    done = karta_graph_snapshot(f"postgresql+psycopg://karta@127.0.0.1:{port}/nothing", "--directory",
                                str(tmp_path / "graph"))
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("No snapshot written: OperationalError: ") and "Traceback" not in done.stderr, \
        done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "graph" / SNAPSHOT_FILE).exists()


def test_the_command_names_whose_directory_it_wrote(database_url, tmp_path):
    """Workers read only a directory of their own user's: the line says whose it is."""
    import pwd

    with worker(database_url, None) as (_, api):
        estate(api)
    done = karta_graph_snapshot(database_url, "--directory", str(tmp_path / "graph"))
    assert done.returncode == 0, done.stderr
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert done.stdout.rstrip().endswith(f"The directory is {me}'s: only workers running as {me} read it."), \
        done.stdout
