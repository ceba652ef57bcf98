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
    together; the last are random), or `<name>_<all 32>` if that is taken too. A name depends on the
    other hosts of the answer: filter a namesake out and the plain name comes back.
Group names
    `<kind>_<value>` with every character outside [A-Za-z0-9_] replaced by `_` (Ansible's valid
    group names; the prefix means one never starts with a digit): class_<class> (holding the hosts
    of that class, with its subclasses' groups as children), env_<environment>, status_<status>,
    owner_<owner>, tag_<tag> (one per tag of the CI's `tags`), service_<service name>. Values that
    meet after sanitizing (`env_prod-eu` and `env_prod_eu`) are merged into one group, and so are
    two services of one name. A group with no host is left out. A group lists its hosts in the order
    of their CI ids (deterministic, and cheaper than sorting 100,000 names).
Host variables
    ansible_host (the first usable address of the `ip_address` attribute, or of the `fqdn`
    attribute when asked (`?ansible_host=fqdn`), falling back to the other; absent when the host
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
import threading
from collections import OrderedDict
from typing import Any, Literal

import orjson

from app.services.identifiers import normalize_address, normalize_fqdn
from app.services.inventory import Inventory, InventoryHost

HostAddress = Literal["ip", "fqdn"]
UNSAFE = "__ansible_unsafe"
_GROUP_INVALID = re.compile(r"[^A-Za-z0-9_]")
_HOST_INVALID = re.compile(r"[^A-Za-z0-9._-]")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\."
                   r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)", re.ASCII)
_DNS_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9_][a-z0-9_-]{0,62}(\.[a-z0-9_][a-z0-9_-]{0,62})*")
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


def host_names(hosts: list[InventoryHost], bases: list[str] | None = None) -> dict[str, str]:
    """CI id -> inventory host name, unique (the rules in the module docstring); `bases`, when given,
    holds each host's name sanitized (`_host_base`), in the hosts' order."""
    if bases is None:
        bases = [_host_base(host.name) for host in hosts]
    base_of = dict(zip([host.id for host in hosts], bases, strict=True))
    if len(set(bases)) == len(base_of):  # no namesakes, the usual case: 0.15 s less per 100,000
        return base_of
    holders: dict[str, list[str]] = {}
    for ci_id, base in base_of.items():
        holders.setdefault(base, []).append(ci_id)
    names = {ci_id: base for base, ids in holders.items() if len(ids) == 1 for ci_id in ids}
    taken = set(names.values())
    shared = sorted(ci_id for base, ids in holders.items() if len(ids) > 1 for ci_id in ids)
    short = {ci_id: f"{base_of[ci_id]}_{ci_id.replace('-', '')[-SHORT_ID:]}" for ci_id in shared}
    short_count: dict[str, int] = {}
    for name in short.values():
        short_count[name] = short_count.get(name, 0) + 1
    for ci_id in shared:
        name = short[ci_id]
        if short_count[name] > 1 or name in taken:
            name = f"{base_of[ci_id]}_{ci_id.replace('-', '')}"
        names[ci_id] = name
        taken.add(name)
    return names


def _first(value: Any, normalize) -> str | None:
    if type(value) is str:
        return normalize(value)
    if type(value) is list:
        for item in value:
            if type(item) is str and (usable := normalize(item)) is not None:
                return usable
    return None


def _address(value: str) -> str | None:
    """normalize_address, without parsing the usual case: a dotted quad written canonically, outside
    the ranges it refuses (0/8, loopback, link-local, multicast, reserved), is its own normal form.
    100,000 hosts cost 0.6 s through ipaddress."""
    match = _IPV4.fullmatch(value)
    if match is not None:
        first = int(match[1])
        if 0 < first < 224 and first != 127 and not (first == 169 and match[2] == "254"):
            return value
    return normalize_address(value)


def _fqdn(value: str) -> str | None:
    name = normalize_fqdn(value)
    return name if name is not None and _DNS_NAME.fullmatch(name) else None


def ansible_host(host: InventoryHost, prefer: HostAddress = "ip") -> str | None:
    """The address Ansible connects to: the first usable ip_address, or the fqdn (as preferred),
    falling back to the other."""
    if prefer == "ip":
        return _first(host.ip_address, _address) or _first(host.fqdn, _fqdn)
    return _first(host.fqdn, _fqdn) or _first(host.ip_address, _address)


class _Groups(dict):
    """Raw value -> the host list of its group of one kind (`env`: "prod-eu" -> env_prod_eu's list),
    each value sanitized once. Lists live in `members` (group name -> host names): values that meet
    after sanitizing share one. Hosts are appended in the order they come (by id: deterministic
    without sorting 100,000 names)."""

    def __init__(self, kind: str, members: dict[str, list[str]]) -> None:
        super().__init__()
        self.kind, self.members = kind, members

    def __missing__(self, value: Any) -> list[str]:
        name = group_name(self.kind, value if isinstance(value, str) else str(value))
        found = self[value] = self.members.setdefault(name, [])
        return found


class _Wrapped(dict):
    """unsafe(value) for the values 100,000 hosts repeat (a class, a status, an environment, an
    owner), made once each: orjson writes a shared object wherever it is referenced."""

    def __missing__(self, value: Any) -> Any:
        wrapped = self[value] = unsafe(value)
        return wrapped


def _host_vars(host: InventoryHost, prefer: HostAddress, wrapped: _Wrapped, tag_lists: dict) -> dict[str, Any]:
    tags = host.tags
    if not tags:
        tag_list = []
    elif all(isinstance(tag, str) for tag in tags):
        key = tuple(tags)
        tag_list = tag_lists.get(key)
        if tag_list is None:
            tag_list = tag_lists[key] = unsafe(tags)
    else:  # a hand edit left lists or objects in the tags
        tag_list = unsafe(tags)
    address = ansible_host(host, prefer)
    # One literal: 100,000 of them are built per answer.
    variables = {"ansible_host": {UNSAFE: address}, "karta_id": host.id, "karta_name": {UNSAFE: host.name},
                 "karta_class": wrapped[host.ci_class], "karta_status": wrapped[host.status],
                 "karta_environment": wrapped[host.environment], "karta_owner": wrapped[host.owner],
                 "karta_tags": tag_list}
    if address is None:
        del variables["ansible_host"]
    if host.attributes is not None:
        variables["karta_attributes"] = unsafe(host.attributes)
    return variables


class RenderedHosts:
    """Each host's variables as JSON, ready to be embedded in an answer (orjson.Fragment), and its name
    sanitized (`_host_base`), by CI id and address preference, with the host they were made from: served again while the host read is equal
    to it (the variables are a function of the host and the preference alone), so an answer after one
    write renders one host, not 100,000. A host's inventory name is not kept: it depends on the other
    hosts of the answer (namesakes). Per worker, bounded by bytes (roughly), the least recently used
    leaving first."""

    ENTRY_BYTES = 300  # the Fragment, its bytes object's header, the key tuple, the entry and the dict slot

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._made: OrderedDict[tuple[str, str], tuple[InventoryHost, orjson.Fragment, str, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.made = 0  # how many hosts' variables were rendered (for tests and benchmarks)

    def __len__(self) -> int:
        return len(self._made)

    def variables(self, hosts: list[InventoryHost], prefer: HostAddress) -> tuple[list[orjson.Fragment], list[str]]:
        """The variables of each of `hosts` (as `_host_vars` makes them) and its sanitized name, in their order."""
        found: list[orjson.Fragment | None] = []
        bases: list[str | None] = []
        fresh = []
        with self._lock:
            made, move = self._made, self._made.move_to_end
            for host in hosts:
                key = (host.id, prefer)
                kept = made.get(key)
                # The same tuple (HostRows hands an unchanged host's on), or an equal one read again;
                # repr tells 1, 1.0 and True apart, which == does not and JSON does.
                if kept is not None and (kept[0] is host or (kept[0] == host and repr(kept[0]) == repr(host))):
                    found.append(kept[1])
                    bases.append(kept[2])
                    move(key)
                else:
                    fresh.append(len(found))
                    found.append(None)
                    bases.append(None)
            self.made += len(fresh)
        wrapped, tag_lists, dumps, made_now = _Wrapped(), {}, orjson.dumps, []
        for index in fresh:
            host = hosts[index]
            # A copy of its exact size: orjson's bytes keeps the 4 KB it was written into (measured:
            # 440 MB for 100,000 hosts' variables, against 70 MB copied).
            data = bytes(memoryview(dumps(_host_vars(host, prefer, wrapped, tag_lists))))
            found[index] = fragment = orjson.Fragment(data)
            bases[index] = base = _host_base(host.name)
            made_now.append((host, fragment, base, self.ENTRY_BYTES + len(data) + len(base)))
        self._keep(made_now, prefer)
        return found, bases

    def _keep(self, made_now: list[tuple[InventoryHost, orjson.Fragment, str, int]], prefer: HostAddress) -> None:
        if self.max_bytes <= 0 or not made_now:
            return
        with self._lock:
            made = self._made
            for entry in made_now:
                key = (entry[0].id, prefer)
                old = made.pop(key, None)
                if old is not None:
                    self._bytes -= old[3]
                made[key] = entry
                self._bytes += entry[3]
            while self._bytes > self.max_bytes and made:
                self._bytes -= made.popitem(last=False)[1][3]


def to_inventory(inventory: Inventory, class_parents: dict[str, str | None], *,
                 host_address: HostAddress = "ip", rendered: RenderedHosts | None = None) -> dict[str, Any]:
    """Ansible's `--list` JSON (as a dict, to give orjson) for the inventory; `class_parents` maps each
    class to its parent (None at a root), for the class groups' children. With `rendered`, the hosts'
    variables are taken from it (orjson.Fragment), made only for hosts it does not hold as they are."""
    hosts = inventory.hosts
    if rendered is not None:
        variables, bases = rendered.variables(hosts, host_address)
    else:
        wrapped, tag_lists = _Wrapped(), {}
        variables, bases = [_host_vars(host, host_address, wrapped, tag_lists) for host in hosts], None
    names = host_names(hosts, bases)
    members: dict[str, list[str]] = {}
    classes, statuses, environments, owners, tags_of = (_Groups(kind, members)
                                                        for kind in ("class", "status", "env", "owner", "tag"))
    hostvars = {}
    # The host's fields unpacked, not read by name: a NamedTuple's attribute is a call, 100,000 times over.
    for (ci_id, ci_class, _, status, environment, owner, tags, *_), host_vars in zip(hosts, variables, strict=True):
        name = names[ci_id]
        hostvars[name] = host_vars
        classes[ci_class].append(name)
        statuses[status].append(name)
        if environment is not None:
            environments[environment].append(name)
        if owner is not None:
            owners[owner].append(name)
        for tag in tags:
            listed = tags_of[tag] if isinstance(tag, str) else tags_of[str(tag)]
            if not listed or listed[-1] is not name:  # `a b` and `a-b` are one group
                listed.append(name)
    services: dict[str, set[str]] = {}  # two service names may meet after sanitizing
    for service, ids in inventory.services.items():
        if ids:
            services.setdefault(group_name("service", service), set()).update(ids)
    for group, ids in services.items():
        members[group] = [names[ci_id] for ci_id in sorted(ids)]
    children: dict[str, set[str]] = {}
    for ci_class in {host.ci_class for host in hosts}:
        # class_<c> holds the hosts of class c; the group of each ancestor class lists it as a child.
        child = ci_class
        while (parent := class_parents.get(child)) is not None:
            members.setdefault(group_name("class", parent), [])
            children.setdefault(group_name("class", parent), set()).add(group_name("class", child))
            child = parent
    answer: dict[str, Any] = {"_meta": {"hostvars": hostvars}}
    for group in sorted(members):
        answer[group] = {"hosts": members[group]}
        if group in children:
            answer[group]["children"] = sorted(children[group])
    nested = set().union(*children.values()) if children else set()
    # Every host is in its class group, so `ungrouped` stays empty; `all` lists the top groups.
    answer["all"] = {"children": sorted(set(members) - nested) + ["ungrouped"]}
    answer["ungrouped"] = {"hosts": []}
    return answer
