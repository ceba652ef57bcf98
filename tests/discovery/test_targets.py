"""SSH target specs: file, CIDR, range, list, and what is refused."""

from __future__ import annotations

import pytest

from discovery.targets import MAX_TARGETS, parse_targets


def test_cidr_expands_to_host_addresses():
    assert parse_targets("10.77.0.8/30") == ["10.77.0.9", "10.77.0.10"]
    assert parse_targets("10.77.0.11/32") == ["10.77.0.11"]


def test_ranges_short_and_long():
    assert parse_targets("10.77.0.11-13") == ["10.77.0.11", "10.77.0.12", "10.77.0.13"]
    assert parse_targets("10.77.0.254-10.77.1.1") == ["10.77.0.254", "10.77.0.255", "10.77.1.0", "10.77.1.1"]


def test_lists_mix_forms_and_keep_order_without_duplicates():
    assert parse_targets("web-1.lab, 10.77.0.12,10.77.0.11-12,DB-1.Lab.") == [
        "web-1.lab", "10.77.0.12", "10.77.0.11", "db-1.lab"]
    assert parse_targets(["10.77.0.11", "10.77.0.11/32"]) == ["10.77.0.11"]


def test_a_file_with_comments_and_several_per_line(tmp_path):
    path = tmp_path / "hosts.txt"
    path.write_text("# lab hosts\n10.77.0.11  10.77.0.12 # db\n\nweb-1.lab,10.77.0.20-21\n2001:db8::5\n")
    assert parse_targets(str(path)) == ["10.77.0.11", "10.77.0.12", "web-1.lab", "10.77.0.20", "10.77.0.21",
                                        "2001:db8::5"]


@pytest.mark.parametrize("bad", [
    "10.77.0.20-10", "10.77.0.1-300", "10.77.0.0/33", "10.0.0.0/8", "host;reboot", "$(id)", "-oProxyCommand=x",
    "a b", "", " , ", "999.1.1.1", "10.77.0.1-2001:db8::1",
])
def test_refused(bad):
    with pytest.raises(ValueError):
        parse_targets(bad)


def test_the_cap_stops_a_typo_early():
    assert MAX_TARGETS == 65_536
    assert len(parse_targets("10.0.0.0/16")) == 65_534
    with pytest.raises(ValueError):
        parse_targets("10.0.0.0/16,10.1.0.0/16")
