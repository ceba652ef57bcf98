"""The real Nagios 4 (Debian nagios4-core) checking a lab host and notifying Karta through `karta alert`.

The lab host is a network namespace of its own joined to this machine by a veth pair on a /30 (only
this test's two addresses); a TCP listener inside it plays PostgreSQL. Nagios runs as root here
(nagios_user/nagios_group root: it only warns; it refuses nothing), with every file it writes in a
temporary directory (lock file, check results, status, query socket), checks every second
(interval_length=1) with check_tcp, and its notification commands and contact are the README's, pasted, with
`karta` run as `<python> -m app.cli` (PYTHONPATH at this checkout, so this code runs), the URL in
Nagios's environment and the token in a file, never on the command line. Stopping the listener makes the
check CRITICAL and Karta opens an incident with the expected blast radius; starting it again makes
it OK and the incident resolves.
"""

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import Api, missing_requirement, tokens_for
from tests.integrations.test_alertmanager import stop, wait_for
from tests.integrations.test_incidents import radius_view, readme_block
from tests.server import running_server

NAGIOS = "/usr/sbin/nagios4"
CHECK_TCP = "/usr/lib/nagios/plugins/check_tcp"
WORKTREE = Path(__file__).resolve().parents[2]
PORT = 5432

NAGIOS_CFG = """\
log_file={d}/nagios.log
cfg_file={d}/objects.cfg
object_cache_file={d}/objects.cache
precached_object_file={d}/objects.precache
status_file={d}/status.dat
status_update_interval=1
nagios_user=root
nagios_group=root
check_external_commands=0
command_file={d}/nagios.cmd
query_socket={d}/nagios.qh
lock_file={d}/nagios.lock
temp_file={d}/nagios.tmp
temp_path={d}
check_result_path={d}/checkresults
retain_state_information=0
state_retention_file={d}/retention.dat
interval_length=1
use_syslog=0
enable_notifications=1
check_result_reaper_frequency=1
max_service_check_spread=1
max_host_check_spread=1
service_inter_check_delay_method=n
host_inter_check_delay_method=n
enable_flap_detection=0
log_initial_states=1
illegal_macro_output_chars=`~$&|'"<>
"""

# The lab's host and service; the notification commands and contact are the README's.
OBJECTS_CFG = """\
define timeperiod {{
  timeperiod_name 24x7
  alias always
  sunday 00:00-24:00
  monday 00:00-24:00
  tuesday 00:00-24:00
  wednesday 00:00-24:00
  thursday 00:00-24:00
  friday 00:00-24:00
  saturday 00:00-24:00
}}
define command {{
  command_name host-up
  command_line /usr/lib/nagios/plugins/check_dummy 0 up
}}
define command {{
  command_name check-tcp
  command_line {check_tcp} -H $HOSTADDRESS$ -p $ARG1$ -t 2
}}
define host {{
  host_name lab-db
  address {address}
  check_command host-up
  max_check_attempts 1
  check_interval 60
  check_period 24x7
  contacts karta
  notification_period 24x7
  notification_interval 0
}}
define service {{
  host_name lab-db
  service_description PostgreSQL
  check_command check-tcp!{port}
  max_check_attempts 1
  check_interval 1
  retry_interval 1
  check_period 24x7
  contacts karta
  notification_period 24x7
  notification_interval 0
  notification_options w,u,c,r
}}
"""

LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])), reuse_port=False)
while True:
    connection, _ = server.accept()
    connection.close()
"""


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@contextmanager
def lab_host():
    """A network namespace with one address reachable from here; yields (namespace, its address)."""
    tag = os.getpid() % 100_000
    namespace, veth = f"karta-nagios{os.getpid()}", f"kn{tag}"
    subnet = f"10.79.{tag % 250}"
    run("ip", "netns", "add", namespace)
    try:
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        run("ip", "addr", "add", f"{subnet}.1/30", "dev", veth)
        run("ip", "link", "set", veth, "up")
        run("ip", "-n", namespace, "addr", "add", f"{subnet}.2/30", "dev", "eth0")
        run("ip", "-n", namespace, "link", "set", "eth0", "up")
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        yield namespace, f"{subnet}.2"
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


@contextmanager
def listening(namespace: str, address: str, port: int):
    process = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", LISTENER, address, str(port)])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run([CHECK_TCP, "-H", address, "-p", str(port), "-t", "1"], capture_output=True).returncode:
            assert process.poll() is None and time.monotonic() < deadline, "the lab listener did not start"
            time.sleep(0.1)
        yield
    finally:
        stop(process)


@contextmanager
def running_nagios(directory: Path, address: str, env: dict[str, str], token_file: Path):
    (directory / "checkresults").mkdir()
    karta = f"{sys.executable} -m app.cli"
    (directory / "nagios.cfg").write_text(NAGIOS_CFG.format(d=directory))
    pasted = readme_block("", "notify-karta-service").replace("/usr/local/bin/karta", karta).replace(
        "/etc/nagios4/karta-token", str(token_file))
    (directory / "objects.cfg").write_text(OBJECTS_CFG.format(check_tcp=CHECK_TCP, address=address, port=PORT) + pasted)
    check = subprocess.run([NAGIOS, "-v", str(directory / "nagios.cfg")], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout[-3000:]
    out = (directory / "nagios.out").open("w")
    process = subprocess.Popen([NAGIOS, str(directory / "nagios.cfg")], cwd=WORKTREE, env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    try:
        yield directory / "nagios.log"
    except BaseException:
        print("nagios.log:\n" + (directory / "nagios.log").read_text()[-5000:])
        raise
    finally:
        stop(process)
        out.close()


@pytest.mark.tools
def test_nagios_notifies_karta_through_karta_alert(database_url, tmp_path):
    if not shutil.which(NAGIOS) or not os.path.exists(CHECK_TCP):
        missing_requirement("Nagios 4 and its plugins are not installed (Debian: nagios4-core monitoring-plugins-basic)")
    if os.geteuid() != 0 or not shutil.which("ip"):
        missing_requirement("the lab host needs root and iproute2 (a network namespace)")
    secrets = tokens_for(database_url)
    import httpx

    with lab_host() as (namespace, address), running_server(database_url) as karta, \
            httpx.Client(base_url=karta, trust_env=False, timeout=30) as client:
        api = Api(client, secrets)
        lab_db = api.create_ci("server", "lab-db", owner="infra", attributes={"ip_address": address})["id"]
        pg = api.create_ci("database", "lab-pg", owner="dba")["id"]
        billing = api.create_ci("service", "billing", owner="billing-team", criticality=2)["id"]
        api.relate(pg, "runs_on", lab_db)
        api.relate(billing, "depends_on", pg)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(WORKTREE), "KARTA_URL": karta}
        token_file = tmp_path / "karta-token"
        token_file.write_text(secrets["write"])
        token_file.chmod(0o600)

        def incident() -> dict | None:
            items = api.get("/api/v1/incidents", as_="read").json()["items"]
            return api.get(f"/api/v1/incidents/{items[0]['id']}", as_="read").json() if items else None

        listener = listening(namespace, address, PORT)
        listener.__enter__()  # up before Nagios's first check
        with running_nagios(tmp_path, address, env, token_file) as log:
            try:
                wait_for(lambda: log.read_text() if log.exists() else "",
                         lambda text: "INITIAL SERVICE STATE: lab-db;PostgreSQL;OK" in text, "Nagios started")
                time.sleep(3)  # three checks, all OK: nothing to notify
                assert "SERVICE ALERT" not in log.read_text() and incident() is None
            finally:
                listener.__exit__(None, None, None)
            # The listener is gone: CRITICAL, a notification, `karta alert`, an incident.
            opened = wait_for(incident, lambda found: found is not None and found["status"] == "open",
                              "the incident Nagios's CRITICAL opens")
            assert (opened["source"], opened["group_key"]) == ("alerts", f"host:{address}")
            assert radius_view(opened) == {
                "failed": {"lab-db"}, "impacted": {("lab-pg", "down", 1), ("billing", "down", 2)},
                "services": [("billing", 2, "billing-team", "down")], "risk": "high",
                "owners": ["billing-team", "infra"]}
            [alert] = opened["alerts"]
            assert (alert["labels"]["service"], alert["labels"]["state"], alert["ci"]["name"], alert["bound_by"]) == \
                ("PostgreSQL", "CRITICAL", "lab-db", "instance:host")
            assert alert["annotations"]["output"].startswith(f"connect to address {address} and port {PORT}")
            with listening(namespace, address, PORT):
                resolved = wait_for(incident, lambda found: found["status"] == "resolved",
                                    "the incident Nagios's recovery (OK) resolves")
            assert resolved["id"] == opened["id"] and resolved["counts"] == {"firing": 0, "resolved": 1, "unbound": 0}
            assert resolved["alerts"][0]["labels"]["state"] == "OK" and resolved["failed"] == []
            notified = [line for line in log.read_text().splitlines() if "SERVICE NOTIFICATION" in line]
            assert [line.split(";")[3] for line in notified] == ["CRITICAL", "OK"], notified
