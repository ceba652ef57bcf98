"""Ansible's dynamic inventory: Karta's hosts and groups in the JSON `ansible-inventory --list` reads.

The format (https://docs.ansible.com/ansible/latest/dev_guide/developing_inventory.html#inventory-script-conventions):
a JSON object of groups, each with `hosts` (inventory host names) and `children` (group names), and
`_meta.hostvars` (host name -> variables). With `_meta` present Ansible never calls `--host` per host.

    {
      "_meta": {"hostvars": {"web-1": {"ansible_host": {"__ansible_unsafe": "10.0.0.5"},
                                       "karta_id": "0192...", "karta_class": {"__ansible_unsafe": "server"}, ...}}},
      "all": {"children": ["class_server", "env_prod", "service_shop", "ungrouped"]},
      "class_server": {"hosts": ["db-1"], "children": ["class_virtual_machine"]},
      "class_virtual_machine": {"hosts": ["web-1"]},
      "env_prod": {"hosts": ["db-1", "web-1"]},
      "service_shop": {"hosts": ["db-1", "web-1"]},
      "ungrouped": {"hosts": []}
    }

The rules, in the order the code applies them:

Host names
    The CI's name, with every character outside [A-Za-z0-9._-] replaced by `_` and leading `-` and
    `.` dropped (an empty result is `host`): a name from discovery can then never be read as an
    ssh option, a host pattern (`web[1]`, `a:b`, `!x`) or a path. A name two hosts share after that
    (two CIs named `web-1`, or `web 1` and `web_1`) is given to neither: each is `<name>_<last 8 hex
    digits of its id>` (ids are UUIDv7: the first digits are the creation time, shared by CIs made
    together; the last are random), or `<name>_<all 32>` if that is taken too. Which name a host gets does
    not depend on the filters (it depends on the other hosts of the answer, though: filter the
    duplicate out and the plain name comes back).
Group names
    `<kind>_<value>` with every character outside [A-Za-z0-9_] replaced by `_` (Ansible's valid
    group names; the prefix means one never starts with a digit): class_<class> (holding the hosts
    of that class, with its subclasses' groups as children), env_<environment>, status_<status>,
    owner_<owner>, tag_<tag> (one per tag of the CI's `tags`), service_<service name>. Values that
    meet after sanitizing (`env_prod-eu` and `env_prod_eu`) are merged into one group, and so are
    two services of one name. A group with no host is left out.
Host variables
    ansible_host (the first usable address of the `ip_address` attribute, or of the `fqdn`
    attribute when asked with host_address="fqdn", falling back to the other; absent when the host
    has neither, and Ansible then connects to the host name), karta_id, karta_name, karta_class,
    karta_status, karta_environment, karta_owner, karta_tags, and karta_attributes when asked.
    Ansible templates inventory variables: a hostname of `{{ lookup('pipe', 'id') }}` would run on
    the controller. So every string from the CMDB goes out as `{"__ansible_unsafe": "..."}`,
    which Ansible reads as text never to template (ansible.parsing.ajson; ansible-core >= 2.19 data
    tagging keeps it).

This module is a pure translation: it never reads the database or the graph (app.services.inventory
does) and never calls Karta's HTTP API.
"""

import re
from typing import Any, Literal

from app.services.identifiers import normalize_address, normalize_fqdn
from app.services.inventory import Inventory, InventoryHost

HostAddress = Literal["ip", "fqdn"]
UNSAFE = "__ansible_unsafe"
_GROUP_INVALID = re.compile(r"[^A-Za-z0-9_]")
_HOST_INVALID = re.compile(r"[^A-Za-z0-9._-]")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
SHORT_ID = 8


def unsafe(value: Any) -> Any:
    """`value` with every string in it marked not to be templated by Ansible (dict keys stay plain:
    Ansible does not template keys)."""
    if isinstance(value, str):
        return {UNSAFE: value}
    if isinstance(value, dict):
        return {str(key): unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unsafe(item) for item in value]
    return value


def group_name(kind: str, value: str) -> str:
    return f"{kind}_{_GROUP_INVALID.sub('_', value)}"


def _host_base(name: str) -> str:
    return _HOST_INVALID.sub("_", name).lstrip("-.") or "host"


def host_names(hosts: list[InventoryHost]) -> dict[str, str]:
    """CI id -> inventory host name, unique (the rules in the module docstring)."""
    bases = {host.id: _host_base(host.name) for host in hosts}
    holders: dict[str, list[str]] = {}
    for ci_id, base in bases.items():
        holders.setdefault(base, []).append(ci_id)
    names = {ci_id: base for base, ids in holders.items() if len(ids) == 1 for ci_id in ids}
    taken = set(names.values())
    shared = sorted(ci_id for base, ids in holders.items() if len(ids) > 1 for ci_id in ids)
    short = {ci_id: f"{bases[ci_id]}_{ci_id.replace('-', '')[-SHORT_ID:]}" for ci_id in shared}
    short_count: dict[str, int] = {}
    for name in short.values():
        short_count[name] = short_count.get(name, 0) + 1
    for ci_id in shared:
        name = short[ci_id]
        if short_count[name] > 1 or name in taken:
            name = f"{bases[ci_id]}_{ci_id.replace('-', '')}"
        names[ci_id] = name
        taken.add(name)
    return names


def _first(value: Any, normalize) -> str | None:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and (usable := normalize(item)) is not None:
            return usable
    return None


def _fqdn(value: str) -> str | None:
    name = normalize_fqdn(value)
    return name if name is not None and _DNS_NAME.match(name) else None


def ansible_host(host: InventoryHost, prefer: HostAddress = "ip") -> str | None:
    """The address Ansible connects to: the first usable ip_address, or the fqdn (as preferred),
    falling back to the other."""
    address, fqdn = _first(host.ip_address, normalize_address), _first(host.fqdn, _fqdn)
    return (address or fqdn) if prefer == "ip" else (fqdn or address)


def host_vars(host: InventoryHost, prefer: HostAddress) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    address = ansible_host(host, prefer)
    if address is not None:
        variables["ansible_host"] = unsafe(address)
    variables.update({
        "karta_id": host.id,
        "karta_name": unsafe(host.name),
        "karta_class": unsafe(host.ci_class),
        "karta_status": unsafe(host.status),
        "karta_environment": unsafe(host.environment),
        "karta_owner": unsafe(host.owner),
        "karta_tags": unsafe(list(host.tags)),
    })
    if host.attributes is not None:
        variables["karta_attributes"] = unsafe(host.attributes)
    return variables


def _class_groups(hosts: list[InventoryHost], names: dict[str, str], parents: dict[str, str | None],
                  groups: dict[str, dict[str, Any]]) -> None:
    """class_<c> holds the hosts of class c; the group of each ancestor class lists it as a child."""
    for host in hosts:
        groups.setdefault(group_name("class", host.ci_class), {"hosts": set()})["hosts"].add(names[host.id])
    for ci_class in {host.ci_class for host in hosts}:
        child = ci_class
        while (parent := parents.get(child)) is not None:
            entry = groups.setdefault(group_name("class", parent), {"hosts": set()})
            entry.setdefault("children", set()).add(group_name("class", child))
            child = parent


def to_inventory(inventory: Inventory, class_parents: dict[str, str | None], *,
                 host_address: HostAddress = "ip") -> dict[str, Any]:
    """Ansible's `--list` JSON (as a dict) for the inventory; `class_parents` maps each class to its
    parent (None at a root), for the class groups' children."""
    hosts = inventory.hosts
    names = host_names(hosts)
    groups: dict[str, dict[str, Any]] = {}

    def add(kind: str, value: str | None, host_name: str) -> None:
        if value is not None:
            groups.setdefault(group_name(kind, value), {"hosts": set()})["hosts"].add(host_name)

    _class_groups(hosts, names, class_parents, groups)
    for host in hosts:
        name = names[host.id]
        add("env", host.environment, name)
        add("status", host.status, name)
        add("owner", host.owner, name)
        for tag in host.tags:
            add("tag", tag if isinstance(tag, str) else str(tag), name)
    for service, ids in inventory.services.items():
        for ci_id in ids:
            add("service", service, names[ci_id])
    answer: dict[str, Any] = {"_meta": {"hostvars": {names[host.id]: host_vars(host, host_address) for host in hosts}}}
    for group in sorted(groups):
        entry = groups[group]
        answer[group] = {"hosts": sorted(entry["hosts"])}
        if entry.get("children"):
            answer[group]["children"] = sorted(entry["children"])
    children = {child for entry in groups.values() for child in entry.get("children", ())}
    # Every host is in its class group, so `ungrouped` stays empty; `all` lists the top groups.
    answer["all"] = {"children": sorted(set(groups) - children) + ["ungrouped"]}
    answer["ungrouped"] = {"hosts": []}
    return answer

