"""Cross-run lookups through the API: which application CI the CMDB already holds at address:port
(ApiApplicationLookup, for the SSH agent's dependency mapper), and which host CI holds a MAC address
(ApiHostLookup, for the SNMP agent's forwarding entries).

Used by the dependency mapper for connections to hosts outside the current
run (see dependencies.py, rule 3). Through the API, for an address A and a
port P:

1. ``GET /api/v1/cis?class=ip_address&attr.address=A``: the ip_address CI;
2. ``GET /api/v1/relationships?type=contains&target=<ip>``: the host(s) holding it;
3. ``GET /api/v1/relationships?type=runs_on&target=<host>``, then each
   application: the one whose ``ports`` (as this agent reports them) hold P.

Answers are cached per address, and at most ``max_addresses`` addresses are
looked up in a run. The discovery token may read (the service implies
``read`` for ``discovery``). The first refusal or network error switches the
lookup off for the rest of the run and says why in ``problem``: an edge the
agent cannot place is then kept as an outbound fact on the host, as without
a lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from discovery.dependencies import RemoteApplication
from discovery.sanitize import clean_text

if TYPE_CHECKING:
    import httpx

APPLICATION_CLASSES = frozenset({"application", "database", "web_server", "load_balancer"})


class ApiApplicationLookup:
    def __init__(self, client: httpx.Client, *, max_addresses: int = 256) -> None:
        self.client = client  # base_url and Authorization already set
        self.max_addresses = max_addresses
        self.problem: str | None = None
        self._by_address: dict[str, dict[int, RemoteApplication]] = {}

    def __call__(self, address: str, port: int) -> RemoteApplication | None:
        if self.problem is not None:
            return None
        if address not in self._by_address:
            if len(self._by_address) >= self.max_addresses:
                return None
            try:
                self._by_address[address] = self._applications_at(address)
            except _Stop as stop:
                self.problem = str(stop)
                return None
        return self._by_address[address].get(port)

    def _related(self, rel_type: str, target: str) -> list[str]:
        page = _api_get(self.client, "/api/v1/relationships", {"type": rel_type, "target": target, "limit": 1000})
        return [str(rel["source"]) for rel in page.get("items", [])]

    def _applications_at(self, address: str) -> dict[int, RemoteApplication]:
        page = _api_get(self.client, "/api/v1/cis", {"class": "ip_address", "attr.address": address, "limit": 2})
        ips = page.get("items", [])
        if len(ips) != 1:
            return {}
        found: dict[int, RemoteApplication] = {}
        hosts = self._related("contains", str(ips[0]["id"]))
        if len(hosts) != 1:  # an address two hosts claim (a VIP) names no single application
            return {}
        for app_id in self._related("runs_on", hosts[0]):
            ci = _api_get(self.client, f"/api/v1/cis/{app_id}")
            if ci.get("class") not in APPLICATION_CLASSES:
                continue
            attributes = ci.get("attributes") or {}
            ports = attributes.get("ports") or ([attributes["port"]] if attributes.get("port") else [])
            for port in ports:
                if isinstance(port, int):
                    found.setdefault(port, RemoteApplication(str(ci["id"]), clean_text(ci.get("name", ""), 255)))
        return found


class ApiHostLookup:
    """The host CI the CMDB holds with a MAC address: ``(CI id, name)`` when exactly one CI of the
    server family (virtual machines included) holds it as an identifier, else None.

    A switch's forwarding table names the host on an access port by its MAC alone. Most servers run no
    LLDP agent, so this is how the SNMP agent attaches the hosts SSH and nmap found
    (discovery/snmp/batch.py); a MAC Karta does not know (a phone, a printer, a visitor's laptop) makes
    nothing. ``GET /api/v1/search?q=<mac>&class=server&identifiers_only=true``: the search's
    exact-identifier tier alone, one probe of the identifier index (a MAC nobody holds costs no name or
    value search). At most ``max_macs`` MACs are asked in a run, each once; the first
    refusal or network error switches the lookup off for the rest of the run and says why in
    ``problem`` (the attachments it could not place are then left out, as before the lookup)."""

    def __init__(self, client: httpx.Client, *, max_macs: int = 2048) -> None:
        self.client = client  # base_url and Authorization already set
        self.max_macs = max_macs
        self.problem: str | None = None
        self.capped = False  # more MACs than max_macs were asked: the rest were not looked up
        self._by_mac: dict[str, tuple[str, str] | None] = {}

    def __call__(self, mac: str) -> tuple[str, str] | None:
        if mac in self._by_mac:
            return self._by_mac[mac]
        if self.problem is not None:
            return None
        if len(self._by_mac) >= self.max_macs:
            self.capped = True
            return None
        try:
            page = _api_get(self.client, "/api/v1/search",
                            {"q": mac, "class": "server", "limit": 2, "identifiers_only": "true"})
        except _Stop as stop:
            self.problem = str(stop)
            return None
        found = [hit for hit in page.get("results", [])
                 if (hit.get("matched") or {}).get("field") == "identifier.mac_address"]
        self._by_mac[mac] = ((str(found[0]["id"]), clean_text(found[0].get("name", ""), 255) or mac)
                             if len(found) == 1 else None)
        return self._by_mac[mac]


class _Stop(Exception):
    pass


def _api_get(client: httpx.Client, path: str, params: dict | None = None) -> dict:
    """One GET's JSON; _Stop (the lookup ends for the run) on a network error, a refusal or any other
    status."""
    import httpx

    try:
        response = client.get(path, params=params)
    except httpx.TransportError as exc:
        raise _Stop(f"lookup stopped: cannot reach the API ({type(exc).__name__})") from exc
    if response.status_code in (401, 403):
        raise _Stop(f"lookup stopped: HTTP {response.status_code} (the token may not read CIs)")
    if response.status_code != 200:
        raise _Stop(f"lookup stopped: HTTP {response.status_code} on {path}")
    return response.json()
