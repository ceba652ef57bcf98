"""Hosts are one identity domain: the identifiers of network devices move into the servers' namespace.

Until now identifiers were unique per class family, and `server` and `network_device` were two: a
switch that nmap found (a `server`, by its MAC and address) and that SNMP found (a `network_device`, by
its chassis MAC) were two CIs. From now on the network_device family is identified in the server
family's namespace (app.services.registry.IDENTITY_DOMAINS), so its rows of ci_identifier move to
family `server`.

Where a value is already held by a server-family CI (today's duplicates) no CIs are merged here: a
migration cannot show anyone what it merged, nor undo it. One of the two CIs gives up the values they
share, so that the next sightings find the other:

* the server CI gives them up when every strong identifier it has (all but the held ones, a host's
  addresses) is one of the device's: nmap's sighting of the switch, known by nothing the device is not.
  The device CI is the one SNMP's cables, attachments and impact hang on and the class that wins
  (network_device over server), and the one people have curated since; nmap's next sighting finds it
  by the MAC, takes its address along (held identifiers move to the newest report), and the server CI,
  no longer sighted, ages out by the normal staleness rules;
* otherwise (the server CI has a serial number, machine-id, fqdn or MAC the device lacks: an SSH
  agent's or nmap's knowledge the device never had) the device CI gives them up: SNMP's next sighting
  finds the server CI by its MAC and makes it a network_device, and the device CI ages out instead.

A device's "values" include the MACs of its interfaces that SNMP discovery now sends as identifiers too
(discovery/snmp/batch.py: burned-in unicast MACs on one interface only, no virtual router MAC): a server CI
nmap made from one of them would otherwise meet the device's chassis MAC in SNMP's next report as a
conflict. Which CI lost what is not recorded anywhere but here: the identifier index is no history.

The downgrade moves the rows of CIs whose class is of the network_device family back to family
`network_device`; the values given up stay given up (the next sightings claim them again).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

import re
from collections import defaultdict

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
DEVICES, HOSTS = "network_device", "server"  # the family that joins, and the namespace it joins
CHUNK = 500

IDENT = sa.table("ci_identifier", sa.column("family"), sa.column("key"), sa.column("value"),
                 sa.column("ci_id", sa.Uuid))
CI = sa.table("ci", sa.column("id", sa.Uuid), sa.column("ci_class"), sa.column("attributes", JSON))
CLASS = sa.table("ci_class", sa.column("name"), sa.column("parent"), sa.column("held_identifiers", JSON))

# A copy of what the code of 0016 sends (app.services.identifiers.normalize_mac, discovery/snmp/batch.py):
# a migration must keep doing what it did when later code changes.
_SHARED_MAC_PREFIXES = ("00005e0001", "00005e0002", "00000c07ac", "00000c9ff")


def _mac(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    digits = re.sub(r"[^0-9a-fA-F]", "", value).lower()
    if (len(digits) != 12 or digits in ("000000000000", "ffffffffffff") or digits.startswith(_SHARED_MAC_PREFIXES)
            or int(digits[:2], 16) & 1):
        return None
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def _interface_macs(attributes: object) -> set[str]:
    """The device's own burned-in MACs that are on one interface only: those of them on an interface
    holding an address are what discovery/snmp/batch.py now sends (which interface holds an address is
    not stored; a MAC nmap saw was on one)."""
    interfaces = attributes.get("interfaces") if isinstance(attributes, dict) else None
    counts: dict[str, int] = defaultdict(int)
    for interface in interfaces if isinstance(interfaces, list) else ():
        found = _mac(interface.get("mac_address")) if isinstance(interface, dict) else None
        if found and not int(found[:2], 16) & 2:  # a locally administered MAC repeats across boxes
            counts[found] += 1
    return {mac for mac, count in counts.items() if count == 1}


def _family_classes(bind, family: str) -> list[str]:
    parents = dict(bind.execute(sa.select(CLASS.c.name, CLASS.c.parent)).all())

    def root(name: str) -> str:
        for _ in range(len(parents) + 1):
            if parents.get(name) is None:
                return name
            name = parents[name]
        return name

    return sorted(name for name in parents if root(name) == family)


def _chunks(values: list, size: int = CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def upgrade() -> None:
    bind = op.get_bind()
    held_keys = {key for (keys,) in bind.execute(sa.select(CLASS.c.held_identifiers)) for key in keys or ()}
    # Each device CI's values: its rows, and the MACs of its interfaces it will now be sent with.
    values: dict = defaultdict(set)
    for key, value, ci_id in bind.execute(sa.select(IDENT.c.key, IDENT.c.value, IDENT.c.ci_id)
                                          .where(IDENT.c.family == DEVICES)):
        values[ci_id].add((key, value))
    devices = _family_classes(bind, DEVICES)
    for chunk in _chunks(devices):
        for ci_id, attributes in bind.execute(sa.select(CI.c.id, CI.c.attributes).where(CI.c.ci_class.in_(chunk))):
            values[ci_id] |= {("mac_address", mac) for mac in _interface_macs(attributes)}
    device_of = defaultdict(set)  # (key, value) -> the device CIs with it (one, but for interface MACs)
    for ci_id, pairs in values.items():
        for pair in pairs:
            device_of[pair].add(ci_id)
    # The server-family CIs holding one of those values, and every row of theirs.
    holders: dict = defaultdict(set)  # server CI -> its values the devices have
    by_key = defaultdict(list)
    for key, value in device_of:
        by_key[key].append(value)
    for key, wanted in by_key.items():
        for chunk in _chunks(sorted(wanted)):
            for value, ci_id in bind.execute(sa.select(IDENT.c.value, IDENT.c.ci_id).where(
                    IDENT.c.family == HOSTS, IDENT.c.key == key, IDENT.c.value.in_(chunk))):
                holders[ci_id].add((key, value))
    strong_of: dict = defaultdict(set)
    for chunk in _chunks(sorted(holders, key=str)):
        for key, value, ci_id in bind.execute(sa.select(IDENT.c.key, IDENT.c.value, IDENT.c.ci_id).where(
                IDENT.c.family == HOSTS, IDENT.c.ci_id.in_(chunk))):
            if key not in held_keys:
                strong_of[ci_id].add((key, value))
    server_gives_up, device_gives_up = [], []
    for server, shared in holders.items():
        for device in sorted({d for pair in shared for d in device_of[pair]}, key=str):
            pairs = {pair for pair in shared if device in device_of[pair]}
            if device != server and strong_of[server] <= values[device]:
                server_gives_up += [(key, value, server) for key, value in pairs]
            else:
                device_gives_up += [(key, value, device) for key, value in pairs]
    for family, rows in ((HOSTS, server_gives_up), (DEVICES, device_gives_up)):
        for key, value, ci_id in rows:
            bind.execute(IDENT.delete().where(IDENT.c.family == family, IDENT.c.key == key, IDENT.c.value == value,
                                              IDENT.c.ci_id == ci_id))
    # What is left of a device's rows cannot meet a server's (each shared value was given up above).
    bind.execute(IDENT.update().where(IDENT.c.family == DEVICES).values(family=HOSTS))


def downgrade() -> None:
    bind = op.get_bind()
    devices = _family_classes(bind, DEVICES)
    for chunk in _chunks(devices):
        bind.execute(IDENT.update().where(IDENT.c.family == HOSTS, IDENT.c.ci_id.in_(
            sa.select(CI.c.id).where(CI.c.ci_class.in_(chunk)))).values(family=DEVICES))
