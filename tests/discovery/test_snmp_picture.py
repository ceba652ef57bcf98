"""The README's picture of a small discovered network with its impact, taken from really discovered data.

The SNMP lab (snmp_lab.py: switches sw1 and sw2 running snmpd and lldpd, h1 on sw1, h2 on sw2, h3 on
sw1 saying nothing, h4 cabled to both) is scanned by nmap and walked by ``karta discover snmp``
against a real ``karta serve`` on SQLite, as test_snmp_end_to_end.py does. No network edge is drawn
by hand. Only a person-made service "shop" that depends_on h1 and h4 is added, so that the picture
shows what a change board asks about: which service the network takes down. Then the real Chromium
opens the blast radius of "sw1 fails", checks what the page and its picture show, and takes the
screenshot ``network-impact`` (docs/screenshots/network-impact.png under KARTA_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Api, fresh_database, tokens_for
from tests.discovery.conftest import REPO, require
from tests.discovery.snmp_lab import COMMUNITY, SnmpLab, missing_requirements
from tests.server import running_server
from tests.web import conftest as web
from tests.web.conftest import Site, accessibility_violations, screenshot, sign_in

pytestmark = [pytest.mark.lab, pytest.mark.browser]

KARTA = Path(sys.executable).with_name("karta")
SVG = "{http://www.w3.org/2000/svg}"
# How graph.export.STATE_STYLE fills a CI of each state in the picture.
FILL = {"failed": "darkred", "down": "red", "degraded": "orange", "at_risk": "yellow"}

# The session's Chromium and a fresh page of it, as the web UI's tests have them (tests/web/conftest.py).
page = web.page


@pytest.fixture(scope="module")
def browser():
    """Closed when this module ends: a browser left open runs Playwright's event loop in the main thread,
    and every later test calling asyncio.run (the SNMP agent's) would fail."""
    yield from web.launched_browser()


class Network:
    """The discovered lab behind a running ``karta serve``: its base URL, tokens and CIs by name."""

    def __init__(self, lab: SnmpLab, base: str, database_url: str, tokens: dict[str, str], ids: dict[str, str]):
        self.lab, self.base, self.database_url, self.tokens, self.ids = lab, base, database_url, tokens, ids

    def blast_radius(self, *names: str) -> dict[str, str]:
        """The API's answer for these CIs failing together: impacted CI name -> state."""
        with httpx.Client(base_url=self.base, trust_env=False, timeout=30) as http:
            answer = Api(http, self.tokens).post("/api/v1/blast-radius",
                                                 json={"failed": [self.ids[name] for name in names]}, as_="read")
        assert answer.status_code == 200, answer.text
        return {item["name"]: item["state"] for item in answer.json()["impacted"]}


def discover(lab: SnmpLab, env: dict[str, str]) -> None:
    """One nmap scan of the hosts' LAN from sw1's namespace (it sees their MACs there; the switches' own
    addresses left out, as test_snmp_end_to_end.py does), then one v2c walk of both switches."""
    scan = lab.switch_run("sw1", [str(KARTA), "discover", "scan", "--subnet", "10.78.0.0/24", "--exclude",
                                  "10.78.0.2,10.78.0.3", "--ports", "22", "--names", "off", "--insecure"],
                          env=env, timeout=120)
    assert scan.returncode == 0, scan.stderr
    walk = subprocess.run([str(KARTA), "discover", "snmp", "--targets", ",".join(lab.targets()), "--timeout", "2",
                           "--insecure"], env={**env, "KARTA_SNMP_COMMUNITY": COMMUNITY},
                          capture_output=True, text=True, timeout=120, check=False)
    assert walk.returncode == 0, walk.stderr
    summary = walk.stderr.strip().splitlines()[-1]
    assert "hosts=2/2 ok" in summary and "ingest_errors" not in summary, summary


@pytest.fixture(scope="module")
def network(request, browser, tmp_path_factory) -> Iterator[Network]:
    """`browser` first: without Chromium the test skips before building the lab. The picture is the one
    the server draws with Graphviz (the README's), so `dot` is required too."""
    require(missing_requirements() + (["nmap"] if not os.path.exists("/usr/bin/nmap") else [])
            + ([] if shutil.which("dot") else ["dot (graphviz)"]))
    assert KARTA.exists(), f"the karta console script is not installed next to {sys.executable}"
    databases = fresh_database(request, "sqlite", tmp_path_factory.mktemp("snmp-picture"))
    database_url = next(databases)
    tokens = tokens_for(database_url)
    with SnmpLab() as lab, running_server(database_url, host=lab.switches["sw1"].agent_side) as base, \
            httpx.Client(base_url=base, trust_env=False, timeout=30) as http:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
               "PYTHONPATH": str(REPO), "KARTA_API_URL": base, "KARTA_TOKEN": tokens["discovery"]}
        discover(lab, env)
        api = Api(http, tokens)
        # The one edge drawn by hand: a service above two of the discovered hosts.
        shop = api.create_ci("service", "shop", owner="team-shop", criticality=1)
        listed = api.get("/api/v1/cis", params={"limit": 1000}, as_="read")
        assert listed.status_code == 200, listed.text
        ids = {ci["name"]: ci["id"] for ci in listed.json()["items"]}
        for host in ("h1", "h4"):
            api.relate(shop["id"], "depends_on", ids[host])
        yield Network(lab, base, database_url, tokens, ids)
    next(databases, None)  # drops the database


def drawn(page, names: dict[str, str]) -> tuple[dict[str, str], set[tuple[str, str, str]]]:
    """What the page's picture draws: each CI's name (its label's first line) -> the fill of its box, and
    the edges (source name, type, target name); `names` maps a CI's id (Graphviz's node name) to its name."""
    root = ET.fromstring(page.locator("figure.picture .picture-canvas svg").evaluate("svg => svg.outerHTML"))
    fills, edges = {}, set()
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "node":
            name = next(group.iter(f"{SVG}text")).text
            fills[name] = next(shape.get("fill") for shape in group.iter()
                               if shape.tag in (f"{SVG}polygon", f"{SVG}path"))
        elif group.get("class") == "edge":
            source, target = group.find(f"{SVG}title").text.split("->")
            edges.add((names[source], next(group.iter(f"{SVG}text")).text, names[target]))
    return fills, edges


def table_states(page, table_id: str) -> dict[str, str]:
    """Name -> the state class of its badge (state-down...), per row of one of the page's tables."""
    return {row.locator("td").first.inner_text().strip():
            row.locator("span.state").get_attribute("class").removeprefix("state state-")
            for row in page.locator(f"#{table_id} tbody tr").all()}


def test_sw1_fails_in_the_picture(network, page):
    """sw1 fails: h1, cabled to it alone, is down and takes the shop down; h4, cabled to both switches,
    is at risk through its degraded attachment group; sw2 and h2 are untouched. h3 says nothing on the
    network (no LLDP): the switches know it by ARP only, Karta guesses no attachment for it, so no
    switch's failure reaches it."""
    lab = network.lab
    sw1_management = lab.switches["sw1"].management
    expected = {"10.78.0.2": "down", sw1_management: "down", "h1": "down", "10.78.0.11": "down",
                "network attachment of h4": "degraded", "h4": "at_risk", "10.78.0.14": "at_risk", "shop": "down"}
    assert network.blast_radius("sw1") == expected
    # sw2 alone is the single point of failure of h2 only: h4 stays reachable through sw1
    assert network.blast_radius("sw2") == {
        "10.78.0.3": "down", lab.switches["sw2"].management: "down", "h2": "down", "10.78.0.12": "down",
        "network attachment of h4": "degraded", "h4": "at_risk", "10.78.0.14": "at_risk", "shop": "at_risk"}
    assert "10.78.0.13" in network.ids  # h3 is a CI (nmap found it), attached to no switch

    site = Site(network.base, network.database_url, network.tokens)
    try:
        page.set_viewport_size({"width": 1280, "height": 900})
        sign_in(page, site, "read", f"/ui/blast-radius?failed={network.ids['sw1']}")
    finally:
        site.engine.dispose()
    canvas = page.locator('figure.picture[data-render="server"] .picture-canvas svg')
    canvas.wait_for()
    assert page.locator(".impact-summary h2").inner_text() == "Risk: critical"
    assert table_states(page, "impacted-services") == {"shop": "down"}
    assert table_states(page, "impacted-cis") == expected
    assert page.locator("#chosen-failed input:checked").evaluate_all("inputs => inputs.map(i => i.value)") == [
        network.ids["sw1"]]
    # the picture: sw1 in bold dark red, what it takes down red, the group orange, what is at risk yellow;
    # nothing else (sw2, h2, h3 and their addresses are not drawn), with the discovered edges between them
    fills, edges = drawn(page, {ci_id: name for name, ci_id in network.ids.items()})
    assert fills == {"sw1": FILL["failed"], **{name: FILL[state] for name, state in expected.items()}}
    assert edges == {
        ("shop", "depends_on", "h1"), ("shop", "depends_on", "h4"),  # drawn by hand
        ("h1", "connects_to", "sw1"), ("h4", "connects_to", "network attachment of h4"),
        ("sw1", "member_of", "network attachment of h4"),
        ("sw1", "contains", "10.78.0.2"), ("sw1", "contains", sw1_management),
        ("h1", "contains", "10.78.0.11"), ("h4", "contains", "10.78.0.14")}
    assert page.locator("figure.picture figcaption").inner_text().split() == [
        "9", "CIs.", "failed", "down", "degraded", "at", "risk"]
    assert accessibility_violations(page) == [] and page.script_errors == []
    # frame the risk, the services and the picture: the screenshot the README shows
    page.evaluate("document.getElementById('summary-title').scrollIntoView(); window.scrollBy(0, -16)")
    box = page.locator("figure.picture").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, box  # drawn whole, legend too
    screenshot(page, "network-impact")
