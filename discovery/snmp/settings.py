"""Where the SNMP credentials come from: the environment, else files the config names; never argv.

v2c: ``KARTA_SNMP_COMMUNITY``, else the config's ``community_file``. v3: ``KARTA_SNMP_USER`` (else the
config's ``user``), ``KARTA_SNMP_AUTH_KEY`` / ``KARTA_SNMP_PRIV_KEY`` (else ``auth_key_file`` /
``priv_key_file``), ``KARTA_SNMP_AUTH_PROTOCOL`` / ``KARTA_SNMP_PRIV_PROTOCOL`` (else the config's
protocols; SHA and AES by default). The version is ``--snmp-version`` or the config's ``version``, else
3 when a v3 user is set and 2c otherwise. Secret files are read like the token file (api_access.py):
one line, a regular file, a warning when others may read it.

A community or a key on the command line would be visible to every user of the machine (ps): cli.py
refuses ``--community``, ``--auth-key`` and ``--priv-key`` with a pointer here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from discovery.api_access import read_token_file
from discovery.snmp.client import SnmpCredentials, SnmpSettings

if TYPE_CHECKING:
    from discovery.config import SnmpConfig

SECRET_ON_COMMAND_LINE = ("SNMP credentials are never taken from the command line (visible in ps): set "
                          "KARTA_SNMP_COMMUNITY, or KARTA_SNMP_USER, KARTA_SNMP_AUTH_KEY and KARTA_SNMP_PRIV_KEY, "
                          "or name files in the config's [snmp] table")


def _secret(env_name: str, path: Path | None, environ: dict[str, str], warnings: list[str]) -> str | None:
    if environ.get(env_name):
        return environ[env_name]
    if path is None:
        return None
    try:
        value, found = read_token_file(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"SNMP secret file {path}: {exc}") from None
    warnings += [w.replace("token file", "SNMP secret file").replace("write to the CMDB", "read your network")
                 for w in found]
    return value


def resolve_settings(config: SnmpConfig | None, *, version: str | None = None,
                     environ: dict[str, str] | None = None, **overrides) -> tuple[SnmpSettings, list[str]]:
    """The settings of one run and warnings; ValueError when the credentials are missing or invalid.
    ``overrides``: port, timeout, retries, concurrency given on the command line (None: the config's)."""
    from discovery.config import SnmpConfig

    environ = os.environ if environ is None else environ
    config = config or SnmpConfig()
    warnings: list[str] = []
    user = environ.get("KARTA_SNMP_USER") or config.user
    version = version or config.version or ("3" if user else "2c")
    if version == "2c":
        credentials = SnmpCredentials("2c", community=_secret("KARTA_SNMP_COMMUNITY", config.community_file,
                                                              environ, warnings))
    else:
        credentials = SnmpCredentials(
            "3", user=user,
            auth_key=_secret("KARTA_SNMP_AUTH_KEY", config.auth_key_file, environ, warnings),
            priv_key=_secret("KARTA_SNMP_PRIV_KEY", config.priv_key_file, environ, warnings),
            auth_protocol=(environ.get("KARTA_SNMP_AUTH_PROTOCOL") or config.auth_protocol).upper(),
            priv_protocol=(environ.get("KARTA_SNMP_PRIV_PROTOCOL") or config.priv_protocol).upper())
    values = {"port": config.port, "timeout": config.timeout, "retries": config.retries,
              "concurrency": config.concurrency, "device_seconds": config.device_seconds}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SnmpSettings(credentials=credentials, **values), warnings
