"""A seeded synthetic enterprise CMDB for the graph benchmark: about 3 relationships per CI.

Shape, per datacenter (one per 250,000 CIs), in impact order:
  core routers (an HA pair, k=1) -> distribution switch pairs -> top-of-rack switch pairs (one per
  rack) -> physical servers (a rack contains them; each connects to its rack's ToR pair) ->
  hypervisor clusters (16 hosts, N+2) -> VMs (run on a cluster, depend on a datastore on a storage
  array pair) -> applications (redundancy groups of their VMs or bare-metal servers, majority
  quorum; three tiers, data <- middleware <- frontend, with skewed popularity, a few back edges that
  make cycles, and every application depends on its datacenter's DNS) -> business services
  (depend on 1-6 applications, some on another service). Backup servers `backs_up` a third of
  the VMs: a relationship with no impact.

Deterministic for a given (n_cis, seed). Used by bench/graph_bench.py only.
"""

from __future__ import annotations

import random
import uuid

from graph import RelationshipSemantics
from graph.semantics import STANDARD_SEMANTICS

SEMANTICS = dict(STANDARD_SEMANTICS, backs_up=RelationshipSemantics(impact="none"))

CIS_PER_DATACENTER = 250_000


class Inventory:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.cis: list[tuple] = []  # (id, class, min_members)
        self.relationships: list[tuple] = []  # (source, target, type) as recorded
        self.services: list[str] = []

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ci(self, ci_class: str, min_members: int | None = None) -> str:
        ci_id = self.new_id()
        self.cis.append((ci_id, ci_class, min_members))
        return ci_id

    def rel(self, source: str, target: str, type_name: str) -> None:
        self.relationships.append((source, target, type_name))

    def pick(self, items: list, skew: float = 1.0):
        """One item, lower indexes more popular as skew grows."""
        return items[int(len(items) * self.rng.random() ** skew)]


def generate(n_cis: int, seed: int = 20240601) -> Inventory:
    inv = Inventory(seed)
    n_dc = max(1, round(n_cis / CIS_PER_DATACENTER))
    for dc in range(n_dc):
        share = n_cis // n_dc + (1 if dc < n_cis % n_dc else 0)
        _datacenter(inv, share)
    # Random picks can repeat a pair; the database keeps one row per (source, target, type).
    inv.relationships = list(dict.fromkeys(inv.relationships))
    return inv


def _ha_pair(inv: Inventory, member_class: str) -> tuple[str, list[str]]:
    group = inv.ci("network_ha_group", 1)
    members = [inv.ci(member_class) for _ in range(2)]
    for m in members:
        inv.rel(m, group, "member_of")
    return group, members


def _datacenter(inv: Inventory, budget: int) -> None:
    rng = inv.rng
    start = len(inv.cis)
    n_services, n_apps = max(2, budget // 50), max(6, budget // 10)
    n_hv, n_bare = max(2, budget * 6 // 100), max(1, budget * 14 // 100)
    n_racks = max(1, (n_hv + n_bare) // 40)
    n_datastores = max(1, budget // 100)

    core, routers = _ha_pair(inv, "router")
    dist_groups = []
    for _ in range(max(1, n_racks // 40)):
        group, switches = _ha_pair(inv, "switch")
        for s in switches:
            inv.rel(s, core, "connects_to")
        dist_groups.append(group)
    racks = []
    for _ in range(n_racks):
        rack = inv.ci("rack")
        tor, switches = _ha_pair(inv, "switch")
        for s in switches:
            inv.rel(s, rng.choice(dist_groups), "connects_to")
        racks.append((rack, tor))

    def server(ci_class: str) -> str:
        host = inv.ci(ci_class)
        rack, tor = rng.choice(racks)
        inv.rel(rack, host, "contains")
        inv.rel(host, tor, "connects_to")
        return host

    clusters = []
    hosts = [server("hypervisor") for _ in range(n_hv)]
    for i in range(0, len(hosts), 16):
        members = hosts[i : i + 16]
        cluster = inv.ci("hypervisor_cluster", max(1, len(members) - 2))
        for h in members:
            inv.rel(h, cluster, "member_of")
        clusters.append(cluster)
    arrays = []
    for _ in range(max(1, n_datastores // 20)):
        array, controllers = _ha_pair(inv, "storage_controller")
        for c in controllers:
            inv.rel(c, rng.choice(racks)[1], "connects_to")
        arrays.append(array)
    datastores = []
    for _ in range(n_datastores):
        ds = inv.ci("datastore")
        inv.rel(ds, rng.choice(arrays), "depends_on")
        datastores.append(ds)
    backups = [server("backup_server") for _ in range(max(1, budget // 500))]

    # Applications: ids first, instances next, then the CI rows with a majority quorum.
    dns = inv.new_id()
    apps = [inv.new_id() for _ in range(n_apps)]
    tiers = (apps[: n_apps // 5], apps[n_apps // 5 : n_apps // 2], apps[n_apps // 2 :])
    instances = dict.fromkeys(apps, 0)
    instances[dns] = 4
    for _ in range(4):
        vm = _vm(inv, clusters, datastores, backups)
        inv.rel(vm, dns, "member_of")
    for _ in range(n_bare):
        app = inv.pick(apps, 1.5)
        instances[app] += 1
        inv.rel(server("server"), app, "member_of")
    n_vms = budget - (len(inv.cis) - start) - n_apps - 1 - n_services
    for _ in range(max(0, n_vms)):
        app = inv.pick(apps, 1.5)
        instances[app] += 1
        inv.rel(_vm(inv, clusters, datastores, backups), app, "member_of")
    inv.cis.append((dns, "application", 1))
    for app in apps:
        inv.cis.append((app, "application", max(1, (instances[app] + 1) // 2)))
        inv.rel(app, dns, "depends_on")

    data, middleware, frontend = tiers
    for app in frontend:
        for _ in range(rng.randint(1, 3)):
            inv.rel(app, inv.pick(middleware, 2.0), "depends_on")
    for i, app in enumerate(middleware):
        for _ in range(rng.randint(1, 2)):
            inv.rel(app, inv.pick(data, 2.0), "depends_on")
        if i and rng.random() < 0.1:
            inv.rel(app, inv.pick(middleware[:i], 2.0), "depends_on")
    for app in data:
        if rng.random() < 0.002:  # a data app calling back into middleware: a cycle
            inv.rel(app, rng.choice(middleware), "depends_on")
    for _ in range(n_services):
        service = inv.ci("business_service")
        for _ in range(rng.randint(1, 6)):
            inv.rel(service, inv.pick(frontend if rng.random() < 0.7 else middleware, 1.5), "depends_on")
        if inv.services and rng.random() < 0.1:
            inv.rel(service, rng.choice(inv.services), "depends_on")
        inv.services.append(service)


def _vm(inv: Inventory, clusters: list, datastores: list, backups: list) -> str:
    vm = inv.ci("vm")
    inv.rel(vm, inv.rng.choice(clusters), "runs_on")
    inv.rel(vm, inv.rng.choice(datastores), "depends_on")
    if inv.rng.random() < 0.33:
        inv.rel(inv.rng.choice(backups), vm, "backs_up")
    return vm
