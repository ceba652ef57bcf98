"""One SNMP scope end to end: expand targets -> walk the devices -> build the batch (runner.ScopeOutcome)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from discovery.remote import ApiHostLookup
from discovery.api_access import Endpoint
from discovery.runner import ScopeOutcome, api_client, new_run_id
from discovery.snmp.batch import build_snmp_batch
from discovery.snmp.client import SnmpSettings, collect_devices
from discovery.snmp.models import DeviceResult

MAX_SUBNET_ADDRESSES = 65_536  # a /16 at most per run: SNMP has no ping sweep, each address costs a timeout


def subnet_targets(subnets: list[str]) -> list[str]:
    """The host addresses of the subnets (network and broadcast left out), in order, bounded."""
    targets: list[str] = []
    for subnet in subnets:
        network = ipaddress.ip_network(subnet, strict=False)
        if len(targets) + network.num_addresses > MAX_SUBNET_ADDRESSES:
            raise ValueError(f"at most {MAX_SUBNET_ADDRESSES} addresses per SNMP run; split {subnet}")
        targets += [str(a) for a in (network.hosts() if network.num_addresses > 2 else network)]
    return list(dict.fromkeys(targets))


def run_is_complete(results: list[DeviceResult], notes: list[str]) -> bool:
    """A device that broke off mid-walk sent only part of its tables: a complete run would end every cable
    and attachment it did not get to, and the next run would draw them again. Such a run confirms what it
    saw and ends nothing; so does one whose tables a bound cut short. A device that did not answer at all
    is simply missed, as a host that is down."""
    partial = [r.target for r in results if r.status == "partial" or (r.facts is not None and r.facts.truncated)]
    if partial:
        notes.append(f"incomplete run (partial walks: {', '.join(partial[:5])}{' ...' if len(partial) > 5 else ''})")
    return not partial


def snmp_scope(name: str, targets: list[str], settings: SnmpSettings, *, subnets: list[str] | None = None,
               on_result: Callable[[DeviceResult], None] | None = None,
               remote: Endpoint | None = None) -> ScopeOutcome:
    """Devices in ``targets`` (already expanded); ``subnets``, when given, is the run's scope instead of
    the target list, so a device that moves inside the subnets is still in scope. ``remote``: the
    service, asked which host holds a MAC that a port's forwarding entry learned alone
    (remote.ApiHostLookup); without it (a dry run) only hosts LLDP names are attached."""
    started = time.monotonic()
    outcome = ScopeOutcome(name, "snmp")
    outcome.results = collect_devices(targets, settings, on_result=on_result)
    # An address that does not answer SNMP is not a device (no SNMP agent there): with --subnet most
    # addresses are silent, and listing them as failures would bury the real ones.
    if subnets:
        outcome.results = [r for r in outcome.results if r.status != "timeout"]
    complete = run_is_complete(outcome.results, outcome.notes)
    if remote is None:
        outcome.batch, notes = build_snmp_batch(outcome.results, run_id=new_run_id(), subnets=subnets,
                                                complete=complete)
    else:
        with api_client(remote) as client:
            lookup = ApiHostLookup(client)
            outcome.batch, notes = build_snmp_batch(outcome.results, run_id=new_run_id(), subnets=subnets,
                                                    complete=complete, known_hosts=lookup)
        if lookup.problem:
            notes.append(f"host {lookup.problem}")
        if lookup.capped:
            notes.append(f"host lookup capped at {lookup.max_macs} MACs: forwarding entries past it attach no host")
    outcome.notes += notes
    outcome.seconds = time.monotonic() - started
    return outcome
