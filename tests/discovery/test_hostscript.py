"""The collector script: fixed text, read-only, and a section format hosts cannot forge."""

from __future__ import annotations

import re
import subprocess

import pytest

from discovery import hostscript
from discovery.hostscript import SECTIONS, new_token, render, split_reply

TOKEN = "0123456789abcdef"
M = f"@@KARTA-{TOKEN}"


def test_the_script_is_fixed_text_but_for_the_token_and_the_package_switch():
    a, b = render(TOKEN), render("fedcba9876543210")
    assert a.replace(TOKEN, "fedcba9876543210") == b
    assert render(TOKEN, packages=True).replace("P=1", "P=0") == a


@pytest.mark.parametrize("bad", ["", "0123", "0123456789ABCDEF", "0123456789abcdeg", "$(reboot)aaaaaaaaaa"])
def test_render_refuses_a_token_that_is_not_16_hex_digits(bad):
    with pytest.raises(ValueError):
        render(bad)


def test_new_tokens_are_fresh():
    assert len({new_token() for _ in range(50)}) == 50


def test_the_script_only_reads():
    script = render(TOKEN, packages=True)
    commands = re.findall(r"^\s*sec \w+ (?:-t )?(?:-c )?(\S+)", script, re.M)
    assert set(commands) == {"uname", "hostname", "head", "grep", "systemd-detect-virt", "nproc", "lsblk",
                             "df", "ip", "ss", "ps", "systemctl", "dpkg-query", "rpm", "apk"}
    assert not re.search(r"(^|[^2])>\s*[^&/]", script.replace(">/dev/null", ""))  # no redirection into files
    assert re.findall(r"^sec (\w+)", script, re.M) == [s for s in SECTIONS if s != "packages"]


def test_the_script_runs_under_sh_and_every_section_arrives():
    out = subprocess.run(["/bin/sh", "-s"], input=render(TOKEN).encode(), capture_output=True, timeout=120)
    reply = split_reply(out.stdout.decode("utf-8", "replace"), TOKEN)
    assert reply.finished
    assert set(reply.sections) == set(SECTIONS) - {"packages"}
    assert reply.sections["kernel"].ok and reply.sections["kernel"].text.startswith("Linux ")


def test_split_reply_reads_sections_rc_and_missing_commands():
    text = (f"\n{M} hostname\nweb-1\n\n{M} rc 0\n\n{M} listening\n{M} missing ss\n\n"
            f"{M} services\nx\n\n{M} rc 1\n\n{M} end\n")
    reply = split_reply(text, TOKEN)
    assert reply.finished
    assert (reply.sections["hostname"].text, reply.sections["hostname"].rc) == ("web-1", 0)
    assert reply.sections["listening"].missing == "ss"
    assert reply.warnings() == ["listening: command not found: ss", "services: exit status 1"]


def test_forged_and_repeated_markers_are_content_not_structure():
    text = (f"\n{M} hostname\nevil\n@@KARTA-0000000000000000 machine_id\n{M} hostname\n{M} bogus\n"
            f"{M} machine_id extra\n\n{M} rc 0\n\n{M} machine_id\nreal\n\n{M} rc 0\n\n{M} end\n")
    reply = split_reply(text, TOKEN)
    assert reply.sections["hostname"].text == (
        f"evil\n@@KARTA-0000000000000000 machine_id\n{M} hostname\n{M} bogus\n{M} machine_id extra")
    assert reply.sections["machine_id"].text == "real"


def test_a_reply_cut_short_is_flagged():
    reply = split_reply(f"\n{M} hostname\nweb-1\n\n{M} rc 0\n\n{M} processes\n  1 init\n  2 bash", TOKEN)
    assert not reply.finished
    assert reply.sections["processes"].rc is None
    assert reply.warnings() == ["processes: output cut off", "reply incomplete"]


def test_text_without_any_marker_has_no_sections():
    reply = split_reply("Welcome to evil shell\n" * 1000, TOKEN)
    assert reply.sections == {} and not reply.finished


def test_caps_are_what_the_docs_say():
    assert hostscript.SECTION_CAP == 1_048_576
    assert hostscript.REPLY_CAP == 8 * 1_048_576
    assert f"head -c {hostscript.SECTION_CAP}" in render(TOKEN)
