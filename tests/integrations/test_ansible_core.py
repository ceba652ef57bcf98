"""The real ansible-core reads Karta's inventory through the README's wrapper (`exec karta inventory
"$@"`) from a real `karta serve`: `ansible-inventory --list` and `--graph` give the known estate's
groups, and a hostile value stays text in a play. The cache is the user's alone and is reused."""

import json
import os
import stat
import subprocess
import time

import pytest

from tests.integrations.ansible_estate import (
    EVIL_HOST,
    EVIL_OWNER,
    build,
    expected_groups,
    plain,
    top_groups,
)
from tests.integrations.ansible_tools import (
    ansible_env,
    ansible_program,
    make_wrapper,
    parse_graph,
    run,
)
from tests.server import running_server

pytestmark = pytest.mark.tools


@pytest.fixture
def served(api, database_url, tmp_path):
    """(estate ids, environment for ansible, wrapper path) against a real karta serve."""
    ids = build(api)
    wrapper = make_wrapper(tmp_path)
    with running_server(database_url) as base:
        yield ids, ansible_env(tmp_path, base, api.secrets["read"]), wrapper


def test_ansible_inventory_list_and_graph_give_the_estates_groups(served):
    ids, env, wrapper = served
    expected = {name: hosts for name, hosts in expected_groups(ids).items() if name != "ungrouped"}
    listed = json.loads(run([ansible_program("ansible-inventory"), "-i", str(wrapper), "--list"], env).stdout)
    assert {name: set(group.get("hosts", [])) for name, group in listed.items()
            if name not in ("_meta", "all", "ungrouped")} == expected
    assert set(listed["all"]["children"]) == top_groups(expected) | {"ungrouped"}
    assert listed["class_server"]["children"] == ["class_virtual_machine"]
    hostvars = listed["_meta"]["hostvars"]
    assert plain(hostvars["vm-1"]["ansible_host"]) == "10.0.0.11"
    assert plain(hostvars[EVIL_HOST]["karta_owner"]) == EVIL_OWNER

    graph = parse_graph(run([ansible_program("ansible-inventory"), "-i", str(wrapper), "--graph"], env).stdout)
    assert graph["all"] == {"@" + name for name in top_groups(expected)} | {"@ungrouped"}
    assert graph["class_server"] == expected["class_server"] | {"@class_virtual_machine"}
    assert {name: members for name, members in graph.items() if name not in ("all", "class_server", "ungrouped")} == {
        name: hosts for name, hosts in expected.items() if name != "class_server"}


def test_a_hostile_value_stays_text_in_a_play(served):
    """`{{ lookup('pipe','id') }}` as an owner would run `id` on the controller if Ansible templated it."""
    _, env, wrapper = served
    result = run([ansible_program("ansible"), "-i", str(wrapper), EVIL_HOST, "-m", "debug", "-a",
                  "msg={{ karta_owner }}|{{ karta_name }}"], env)
    assert f'"msg": "{EVIL_OWNER}|-oProxyCommand=touch /tmp/x"' in result.stdout.replace('\\"', '"'), result.stdout
    assert "uid=" not in result.stdout


def test_the_host_form_and_the_cache(served, api, tmp_path):
    ids, env, wrapper = served
    env = {**env, "KARTA_INVENTORY_CACHE_SECONDS": "300"}
    first = run([str(wrapper), "--list"], env).stdout
    (cached,) = (tmp_path / "home" / ".cache" / "karta").glob("inventory-*.json")
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o700
    # A change in Karta is not seen while the cache is fresh, and is once it is not.
    api.create_ci("server", "late-1", environment="prod")
    assert run([str(wrapper), "--list"], env).stdout == first
    assert json.loads(run([str(wrapper), "--host", "vm-1"], env).stdout)["karta_id"] == ids["vm-1"]
    assert json.loads(run([str(wrapper), "--host", "nobody"], env).stdout) == {}
    old = time.time() - 301
    os.utime(cached, (old, old))
    assert "late-1" in json.loads(run([str(wrapper), "--list"], env).stdout)["_meta"]["hostvars"]
    # A cache file others could read is not trusted: asked again.
    api.create_ci("server", "late-2", environment="prod")
    cached.chmod(0o644)
    assert "late-2" in json.loads(run([str(wrapper), "--list"], env).stdout)["_meta"]["hostvars"]


def test_filters_from_the_environment_and_errors_without_the_token(served):
    _, env, wrapper = served
    narrowed = {**env, "KARTA_INVENTORY_QUERY": "environment=prod&status=active", "KARTA_INVENTORY_CACHE_SECONDS": "0"}
    listed = json.loads(run([str(wrapper), "--list"], narrowed).stdout)
    assert set(listed["_meta"]["hostvars"]) == {"hv-1", "vm-1", "vm-2", "vm-3", "vm-4"}
    for broken, message in (({"KARTA_TOKEN": ""}, "set KARTA_URL"), ({"KARTA_TOKEN": "wrong"}, "Karta answered 401"),
                            ({"KARTA_URL": "http://192.0.2.1:1"}, "refusing plain http://")):
        result = subprocess.run([str(wrapper), "--list"], env={**narrowed, **broken}, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 1 and message in result.stderr and result.stdout == "", result.stderr
        assert "wrong" not in result.stderr
