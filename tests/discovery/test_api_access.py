"""Where the agent may send its token, and where it reads it from (api_access.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from discovery.api_access import (TOKEN_ON_COMMAND_LINE, Endpoint, InsecureApiUrl, check_api_url, read_token_file,
                                  resolve_token)
from discovery.push import IngestClient


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000", "http://127.9.8.7", "http://[::1]:8000/", "http://localhost:8000",
    "http://LOCALHOST.:8000", "http://[::ffff:127.0.0.1]:8000", "https://karta.example.org",
    "https://10.0.0.5:8443", "https://[2001:db8::5]",
])
def test_https_anywhere_and_plain_http_to_this_machine_are_fine(url):
    assert check_api_url(url) == url


@pytest.mark.parametrize("url", [
    "http://karta.example.org", "http://10.0.0.5:8000", "http://[2001:db8::5]:8000", "http://128.0.0.1",
    "http://localhost.example.org", "http://127.0.0.1.nip.io", "http://0.0.0.0:8000",
])
def test_plain_http_to_another_machine_is_refused_unless_insecure(url):
    with pytest.raises(InsecureApiUrl, match="the token would travel in clear text"):
        check_api_url(url)
    with pytest.raises(InsecureApiUrl):
        IngestClient(url, "t")  # the push client checks for itself, whoever built it
    with pytest.raises(InsecureApiUrl):
        Endpoint(url, "t")
    assert check_api_url(url, insecure=True) == url
    IngestClient(url, "t", insecure=True).close()


@pytest.mark.parametrize("url", ["ftp://karta", "karta.example.org", "http://", "https:///api"])
def test_what_is_no_http_url_is_refused(url):
    with pytest.raises(ValueError, match="must start with https://"):
        check_api_url(url, insecure=True)


def test_the_endpoint_keeps_the_token_out_of_its_repr():
    assert "s3cret" not in repr(Endpoint("https://karta.example.org", "s3cret"))


def test_token_sources_in_order(tmp_path):
    private = tmp_path / "token"
    private.write_text("  from-file \n")
    private.chmod(0o600)
    config = tmp_path / "config-token"
    config.write_text("from-config\n")
    config.chmod(0o400)
    env = {"KARTA_TOKEN": "from-env"}
    assert resolve_token(option="typed", token_file=None, environ=env) == ("typed", [TOKEN_ON_COMMAND_LINE])
    assert resolve_token(option=None, token_file=private, config_token_file=config, environ=env) == ("from-file", [])
    assert resolve_token(option=None, token_file=None, config_token_file=config, environ=env) == ("from-env", [])
    assert resolve_token(option=None, token_file=None, config_token_file=config, environ={}) == ("from-config", [])
    assert resolve_token(option=None, token_file=None, environ={}) == (None, [])


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o660, 0o644])
def test_a_token_file_others_may_use_is_read_with_a_warning(tmp_path, mode):
    path = tmp_path / "token"
    path.write_text("t\n")
    path.chmod(mode)
    token, warnings = read_token_file(path)
    assert token == "t" and warnings == [
        f"token file {path} is accessible by others (mode {mode:04o}): anyone who can read it can write to the "
        f"CMDB; chmod 600 {path}"]


def test_a_token_file_must_hold_one_token(tmp_path):
    path = tmp_path / "token"
    for content in ("", "\n\n", "one\ntwo\n", "x" * 5000):
        path.write_text(content)
        path.chmod(0o600)
        with pytest.raises(ValueError, match="token file"):
            read_token_file(path)
    with pytest.raises(ValueError, match="is not a regular file"):
        read_token_file(Path("/dev/null"))


def test_plain_http_to_this_machine_never_goes_through_a_proxy():
    from discovery.api_access import uses_proxy

    assert not uses_proxy("http://localhost:8000") and not uses_proxy("http://127.0.0.1:8000")
    assert not uses_proxy("http://[::1]:8000")
    assert uses_proxy("https://karta.example.org") and uses_proxy("https://localhost:8443")
