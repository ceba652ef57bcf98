"""The pure rules of a service's map (graph/service_map.py): entry points parsed strictly, listening
sockets matched, the map below the entry applications walked and layered over an ImpactGraph."""

import re

import pytest

from graph import STANDARD_SEMANTICS, ImpactGraph
from graph.service_map import (
    MAX_ENTRY_POINTS,
    EntryPoint,
    entry_point_errors,
    listens_on,
    membership_changes,
    parse_entry_point,
    service_map,
)


@pytest.mark.parametrize(("text", "host", "port"), [
    ("10.0.0.5:443", "10.0.0.5", 443),
    (" web-1:80 ", "web-1", 80),
    ("https://Shop.Example.com/", "shop.example.com", 443),
    ("http://shop.example.com./cart?x=1", "shop.example.com", 80),
    ("http://[2001:DB8::5]:8080/", "2001:db8::5", 8080),
    ("[2001:db8::5]:443", "2001:db8::5", 443),
    ("tcp://db.example.com:5432", "db.example.com", 5432),
])
def test_entry_points_that_parse(text, host, port):
    entry = parse_entry_point(text)
    assert (entry.host, entry.port) == (host, port)


@pytest.mark.parametrize(("text", "reason"), [
    ("web-1", "is not host:port"),
    ("2001:db8::5:443", "is not host:port"),
    ("[2001:db8::5]443", "is not [address]:port"),
    ("web-1:0", "1 to 65535"),
    ("web-1:+80", "1 to 65535"),
    ("web-1:٨٠", "1 to 65535"),  # Arabic-Indic digits are digits to str.isdigit, not to a port
    ("http://web-1:70000/", "1 to 65535"),
    ("ftp://files.example.com/", "names no port"),
    ("https://user:secret@shop.example.com/", "credentials"),
    ("https:///", "names no host"),
    ("bad_host!:80", "neither an IP address nor a DNS name"),
    ("web-1:80\n", "control"),
    ("we b:80", "space"),
    ("\u202eweb-1:80", "formatting character"),
    ("https://shop.example.com/\u2066", "formatting character"),
    ("a" * 2049, "longer than 2048"),
    (None, "not a string"),
])
def test_entry_points_that_do_not(text, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_entry_point(text)


def test_errors_of_an_entry_points_attribute_name_each_bad_one():
    assert [path for path, _ in entry_point_errors(["10.0.0.5:80", "nope", 7])] == ["1", "2"]
    assert entry_point_errors("10.0.0.5:80") == [("", "must be a list of 'host:port' or URLs")]
    assert entry_point_errors(["h:1"] * (MAX_ENTRY_POINTS + 1))[0][0] == ""
    assert entry_point_errors([]) == []


@pytest.mark.parametrize(("attributes", "port", "address", "serves"), [
    ({"listen": ["0.0.0.0:80"]}, 80, "10.0.0.5", True),
    ({"listen": ["[::]:80"]}, 80, None, True),
    ({"listen": ["10.0.0.5:80"]}, 80, "10.0.0.5", True),
    ({"listen": ["10.0.0.6:80"]}, 80, "10.0.0.5", False),  # another address of the host
    ({"listen": ["10.0.0.6:80"]}, 80, None, True),  # named by host name: any address it has
    ({"listen": ["127.0.0.1:5432"]}, 5432, None, False),  # loopback only: no entry from outside
    ({"listen": ["127.0.0.1:5432"]}, 5432, "127.0.0.1", True),
    ({"listen": ["[fe80::1%eth0]:22"]}, 22, "fe80::1", True),
    ({"listen": ["0.0.0.0:8080"]}, 80, "10.0.0.5", False),
    ({"listen": ["0.0.0.0:80"], "port": 443}, 443, None, False),  # listen decides when present
    ({"port": 443}, 443, None, True),  # a person's CI: port
    ({"ports": [80, 443]}, 443, None, True),
    ({"listen": "0.0.0.0:80"}, 80, None, False),  # not a list: nothing
    ({"listen": [None, 5, "garbage"]}, 80, None, False),
])
def test_listening(attributes, port, address, serves):
    assert listens_on(attributes, port, address) is serves


LAYER = {"application": "applications", "web_server": "applications", "database": "data_stores",
         "server": "hosts", "network_device": "infrastructure", "service": "infrastructure"}


def _graph() -> ImpactGraph:
    graph = ImpactGraph(STANDARD_SEMANTICS)
    graph.bulk_load(
        [("svc", "service", None), ("web", "web_server", None), ("app", "application", None),
         ("db", "database", None), ("h1", "server", None), ("h2", "server", None), ("sw", "network_device", None),
         ("ip", "ip_address", None), ("client", "application", None), ("loner", "application", None)],
        [("svc", "web", "depends_on"), ("web", "app", "depends_on"), ("app", "db", "depends_on"),
         ("web", "h1", "runs_on"), ("app", "h1", "runs_on"), ("db", "h2", "runs_on"), ("h2", "sw", "connects_to"),
         ("h1", "ip", "contains"),  # the host's failure impacts its address, not the other way
         ("client", "web", "depends_on"),  # depends on the entry: not below it
         ("db", "web", "connects_to")],  # a cycle back to the entry
    )
    return graph


def test_the_map_is_what_the_entry_depends_on_by_layer():
    members = service_map(_graph(), ["web"], LAYER.get, exclude=["svc"])
    assert members == {"web": "entry", "app": "applications", "db": "data_stores", "h1": "hosts", "h2": "hosts",
                       "sw": "infrastructure"}


def test_an_entry_the_graph_does_not_hold_is_left_out_and_the_service_never_joins():
    graph = _graph()
    assert service_map(graph, ["gone"], LAYER.get) == {}
    assert "svc" not in service_map(graph, ["web", "svc"], LAYER.get, exclude=["svc"])


def test_an_unknown_layer_is_infrastructure():
    assert service_map(_graph(), ["db"], lambda ci_class: "nonsense")["h2"] == "infrastructure"


def test_membership_changes():
    assert membership_changes({"a": "entry", "b": "hosts", "c": "hosts"}, {"a": "entry", "b": "infrastructure", "d": "hosts"}) == (
        {"d": "hosts"}, {"c": "hosts"}, {"b": ("hosts", "infrastructure")})


def test_an_entry_point_knows_its_address():
    assert EntryPoint("x", "10.0.0.5", 80).address == "10.0.0.5"
    assert EntryPoint("x", "web-1", 80).address is None
