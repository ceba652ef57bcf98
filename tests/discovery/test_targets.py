"""SSH target specs: @file, CIDR, range, list, and what is refused."""

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
    assert parse_targets(f"@{path}") == ["10.77.0.11", "10.77.0.12", "web-1.lab", "10.77.0.20", "10.77.0.21",
                                         "2001:db8::5"]
    assert parse_targets(f"10.77.0.9,@{path}")[:2] == ["10.77.0.9", "10.77.0.11"]


def test_a_bare_word_is_a_host_even_when_a_file_has_its_name(tmp_path, monkeypatch):
    # A host whose name is also a file in the working directory was read as that file.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "web-1").write_text("10.77.0.99\n")
    notes: list[str] = []
    assert parse_targets(["web-1", "10.77.0.11"], notes) == ["web-1", "10.77.0.11"]
    assert notes == ["target 'web-1' is taken as a host name; to read the file by that name, write @web-1"]
    assert parse_targets("@web-1") == ["10.77.0.99"]


def test_a_file_named_without_at_is_refused_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hosts_list").mkdir()
    (tmp_path / "hosts_list" / "dc1").write_text("10.77.0.11\n")
    with pytest.raises(ValueError, match="a file by that name exists: write @hosts_list/dc1 to read targets from it"):
        parse_targets("hosts_list/dc1")
    with pytest.raises(ValueError, match="not a CIDR network: 'elsewhere/dc1'$"):
        parse_targets("elsewhere/dc1")  # no such file: no hint
    with pytest.raises(ValueError, match="'@' needs a file name"):
        parse_targets("@")
    with pytest.raises(OSError):
        parse_targets("@missing.txt")
    (tmp_path / "nested").write_text("@hosts_list/dc1\n")
    with pytest.raises(ValueError, match="not a CIDR network: '@hosts_list/dc1'"):
        parse_targets("@nested")  # no files inside files


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
