"""A known estate for the Ansible inventory tests, and the inventory it must give.

    service shop (prod) -> shop-web -> vm-1 -> hv-1 -> switch-1 (a network device: not a host)
                        -> shop-api -> vm-2 -> hv-1
                                    -> shop-db -> db-1
                        -> web-cluster <- member_of vm-3, vm-4
    service shop (staging) -> dup (the first of two servers named dup)
    service reporting (staging) -> shop-db -> db-1
    service idle: depends on nothing

plus a host with a hostile name, owner and tags, and a retired one.
"""

import re

EVIL_NAME = "-oProxyCommand=touch /tmp/x"
EVIL_HOST = "oProxyCommand_touch__tmp_x"
EVIL_OWNER = "{{ lookup('pipe','id') }}"
EVIL_OWNER_GROUP = "owner____lookup__pipe___id_____"

HOSTS = {  # name -> (class, fields)
    "hv-1": ("server", {"environment": "prod", "owner": "infra", "tags": ["hypervisor"],
                        "attributes": {"ip_address": ["10.0.0.1"], "os_name": "debian"}}),
    "vm-1": ("virtual_machine", {"environment": "prod", "owner": "shop-team", "tags": ["web", "pci dss"],
                                 "attributes": {"ip_address": ["fe80::1", "10.0.0.11"], "fqdn": "vm-1.example.com",
                                                "hypervisor": "kvm", "os_name": "debian"}}),
    "vm-2": ("virtual_machine", {"environment": "prod", "owner": "shop-team", "attributes": {"ip_address": "10.0.0.12"}}),
    "db-1": ("server", {"environment": "prod", "owner": "dba", "status": "maintenance",
                        "attributes": {"fqdn": "db-1.example.com"}}),
    "vm-3": ("virtual_machine", {"environment": "prod", "owner": "shop-team", "attributes": {"ip_address": ["10.0.0.13"]}}),
    "vm-4": ("virtual_machine", {"environment": "prod", "owner": "shop-team", "attributes": {"ip_address": ["10.0.0.14"]}}),
    "old-1": ("server", {"environment": "prod", "status": "retired", "attributes": {"ip_address": ["10.0.3.1"]}}),
    EVIL_NAME: ("server", {"environment": "prod-eu", "owner": EVIL_OWNER, "tags": ["a b", "a-b"],
                           "attributes": {"ip_address": ["not an address", "10.0.2.1"],
                                          "fqdn": "-oProxyCommand=x.example.com"}}),
}


def build(api) -> dict[str, str]:
    """Create the estate through the API; CI ids by name (the two `dup` servers as dup#1 and dup#2,
    the services as service:<name>:<environment>)."""
    ids = {name: api.create_ci(ci_class, name, **fields)["id"] for name, (ci_class, fields) in HOSTS.items()}
    ids["dup#1"] = api.create_ci("server", "dup", environment="staging", attributes={"ip_address": ["10.0.1.1"]})["id"]
    ids["dup#2"] = api.create_ci("server", "dup", environment="staging", attributes={"ip_address": ["10.0.1.2"]})["id"]
    ids["switch-1"] = api.create_ci("network_device", "switch-1", environment="prod")["id"]
    for name, ci_class in (("shop-web", "web_server"), ("shop-api", "application"), ("shop-db", "database")):
        ids[name] = api.create_ci(ci_class, name, environment="prod")["id"]
    ids["web-cluster"] = api.create_ci("cluster", "web-cluster", attributes={"min_members": 1})["id"]
    for name, environment in (("shop", "prod"), ("shop", "staging"), ("reporting", "staging"), ("idle", "prod")):
        ids[f"service:{name}:{environment}"] = api.create_ci("service", name, environment=environment)["id"]
    for source, rel_type, target in (
        ("shop-web", "runs_on", "vm-1"), ("shop-api", "runs_on", "vm-2"), ("shop-db", "runs_on", "db-1"),
        ("shop-api", "depends_on", "shop-db"), ("vm-1", "runs_on", "hv-1"), ("vm-2", "runs_on", "hv-1"),
        ("hv-1", "connects_to", "switch-1"), ("vm-3", "member_of", "web-cluster"), ("vm-4", "member_of", "web-cluster"),
        ("service:shop:prod", "depends_on", "shop-web"), ("service:shop:prod", "depends_on", "shop-api"),
        ("service:shop:prod", "depends_on", "web-cluster"), ("service:shop:staging", "depends_on", "dup#1"),
        ("service:reporting:staging", "depends_on", "shop-db"),
    ):
        api.relate(ids[source], rel_type, ids[target])
    return ids


def dup_names(ids: dict[str, str]) -> tuple[str, str]:
    return tuple(f"dup_{ids[key].replace('-', '')[-8:]}" for key in ("dup#1", "dup#2"))


def expected_groups(ids: dict[str, str]) -> dict[str, set[str]]:
    """Group -> its hosts, for the whole estate unfiltered."""
    dup1, dup2 = dup_names(ids)
    vms = {"vm-1", "vm-2", "vm-3", "vm-4"}
    prod = {"hv-1", "db-1", "old-1", *vms}
    return {
        "class_server": {"hv-1", "db-1", "old-1", dup1, dup2, EVIL_HOST},
        "class_virtual_machine": vms,
        "env_prod": prod,
        "env_staging": {dup1, dup2},
        "env_prod_eu": {EVIL_HOST},
        "status_active": {"hv-1", dup1, dup2, EVIL_HOST, *vms},
        "status_maintenance": {"db-1"},
        "status_retired": {"old-1"},
        "owner_infra": {"hv-1"},
        "owner_shop_team": vms,
        "owner_dba": {"db-1"},
        EVIL_OWNER_GROUP: {EVIL_HOST},
        "tag_hypervisor": {"hv-1"},
        "tag_web": {"vm-1"},
        "tag_pci_dss": {"vm-1"},
        "tag_a_b": {EVIL_HOST},
        "service_shop": {"hv-1", "db-1", dup1, *vms},
        "service_reporting": {"db-1"},
        "ungrouped": set(),
    }


def top_groups(groups) -> set[str]:
    """The children of `all`: every group but the class groups under class_server."""
    return set(groups) - {"class_virtual_machine"}


def plain(value):
    """A hostvar with Ansible's unsafe markers taken off (what a play sees)."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


VALID_GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
