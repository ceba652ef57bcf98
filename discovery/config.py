"""The agent's TOML configuration for ``run`` (cron): scopes, SSH settings, extra rules.

Example::

    api_url = "https://karta.example.org"      # or KARTA_API_URL / --api-url
    token_file = "/etc/karta/discovery.token"  # mode 0600; or KARTA_TOKEN / --token-file
    insecure = false                           # true allows http:// to another machine (clear text)
    user = "karta"
    key = "/etc/karta/id_ed25519"
    known_hosts = "/var/lib/karta/known_hosts"
    trust_on_first_use = false
    concurrency = 20

    [[scope]]
    name = "dc1-scan"
    type = "nmap"
    subnets = ["10.77.0.0/24"]
    schedule = "hourly"        # a hint for whoever writes the cron line

    [[scope]]
    name = "dc1-hosts"
    type = "ssh"
    targets = ["@/etc/karta/hosts.txt", "10.77.0.10-20"]   # @: a file of targets

    [snmp]                                     # see discovery/snmp/settings.py
    version = "3"
    user = "karta"
    auth_key_file = "/etc/karta/snmp-auth.key" # mode 0600; or KARTA_SNMP_AUTH_KEY
    priv_key_file = "/etc/karta/snmp-priv.key" # or KARTA_SNMP_PRIV_KEY

    [[scope]]
    name = "dc1-switches"
    type = "snmp"
    targets = ["10.77.0.2-3"]                  # or subnets = [...]

    [[classification.rules]]
    class = "application"
    kind = "billing"
    process = ["billingd"]

Unknown keys are errors, so a typo does not silently fall back to a default.
The token itself is never written in this file; ``token_file`` points at it
(read and checked by api_access.py, which also explains ``insecure``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from discovery.classify import ClassificationRule, rules_from_config
from discovery.nmapscan import DEFAULT_PORTS, validate_ports, validate_subnets
from discovery.paths import default_known_hosts, default_lock_file


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RuleConfig(_Strict):
    ci_class: str = Field(alias="class")
    kind: str
    process: list[str] = []
    ports: list[int] = []


class ClassificationConfig(_Strict):
    rules: list[RuleConfig] = []


class ScopeConfig(_Strict):
    name: str = Field(min_length=1, max_length=100)
    type: Literal["nmap", "ssh", "local", "snmp"]
    schedule: str | None = None  # a hint only; cron or the timer decides
    # nmap
    subnets: list[str] = []
    ports: str = DEFAULT_PORTS
    service_versions: bool = False
    exclude: list[str] = []
    names: Literal["system", "nmap", "off"] = "system"  # reverse DNS for found addresses
    # ssh
    targets: list[str] = []
    user: str | None = None
    key: Path | None = None
    port: int = Field(22, ge=1, le=65535)
    # ssh and local
    packages: bool = False

    @field_validator("subnets")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        return validate_subnets(value)

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        return validate_ports(value)

    @model_validator(mode="after")
    def _needs(self) -> ScopeConfig:
        if self.type == "nmap" and not self.subnets:
            raise ValueError(f"scope {self.name!r}: an nmap scope needs subnets")
        if self.type == "ssh" and not self.targets:
            raise ValueError(f"scope {self.name!r}: an ssh scope needs targets")
        if self.type == "snmp" and bool(self.targets) == bool(self.subnets):
            raise ValueError(f"scope {self.name!r}: an snmp scope needs targets or subnets (one of them)")
        return self


class SnmpConfig(_Strict):
    """The ``[snmp]`` table: settings and where the secrets are (never the secrets themselves)."""

    version: Literal["2c", "3"] | None = None
    community_file: Path | None = None
    user: str | None = Field(None, min_length=1, max_length=64)
    auth_key_file: Path | None = None
    priv_key_file: Path | None = None
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] = "SHA"
    priv_protocol: Literal["DES", "AES", "AES192", "AES256"] = "AES"
    port: int = Field(161, ge=1, le=65535)
    timeout: float = Field(2.0, gt=0, le=60)
    retries: int = Field(1, ge=0, le=5)
    concurrency: int = Field(20, ge=1, le=256)
    device_seconds: float = Field(60.0, gt=0, le=3600)


class AgentConfig(_Strict):
    api_url: str | None = None
    token_file: Path | None = None
    insecure: bool = False  # plain http:// to another machine (api_access.py)
    user: str = "root"
    key: Path | None = None
    known_hosts: Path = Field(default_factory=default_known_hosts)
    trust_on_first_use: bool = False
    resolve_remote: bool = False  # place connections to hosts outside a run through the API (remote.py)
    concurrency: int = Field(20, ge=1, le=256)
    connect_timeout: float = Field(10.0, gt=0, le=300)
    command_timeout: float = Field(120.0, gt=0, le=3600)
    lock_file: Path = Field(default_factory=default_lock_file)
    scope: list[ScopeConfig] = Field(min_length=1)
    classification: ClassificationConfig = ClassificationConfig()
    snmp: SnmpConfig = SnmpConfig()

    @model_validator(mode="after")
    def _ssh_key(self) -> AgentConfig:
        names = [s.name for s in self.scope]
        if len(names) != len(set(names)):
            raise ValueError("scope names must be unique")
        for scope in self.scope:
            if scope.type == "ssh" and not (scope.key or self.key):
                raise ValueError(f"scope {scope.name!r}: no SSH key (set key at the top or in the scope)")
        return self

    def extra_rules(self) -> list[ClassificationRule]:
        return rules_from_config([r.model_dump(by_alias=True) for r in self.classification.rules])


def load_config(path: Path) -> AgentConfig:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        config = AgentConfig.model_validate(data)
        config.extra_rules()  # a bad rule fails here, not in the middle of a run
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return _relative_to(config, Path(path).resolve().parent)


def _relative_to(config: AgentConfig, base: Path) -> AgentConfig:
    """Relative paths in the file mean relative to the file, not to cron's working directory."""
    def fix(value: Path | None) -> Path | None:
        return value if value is None or value.is_absolute() else base / value

    config.token_file = fix(config.token_file)
    config.key = fix(config.key)
    config.known_hosts = fix(config.known_hosts)
    config.lock_file = fix(config.lock_file)
    config.snmp.community_file = fix(config.snmp.community_file)
    config.snmp.auth_key_file = fix(config.snmp.auth_key_file)
    config.snmp.priv_key_file = fix(config.snmp.priv_key_file)
    for scope in config.scope:
        scope.key = fix(scope.key)
        # Only '@file' targets are files (targets.py); a bare word is a host whatever files exist.
        scope.targets = [",".join(f"@{fix(Path(word[1:]))}" if word.startswith("@") and word[1:] else word
                                  for word in (w.strip() for w in entry.split(",")))
                         for entry in scope.targets]
    return config
