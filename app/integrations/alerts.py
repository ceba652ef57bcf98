"""The generic alert form, for Nagios, Zabbix and anything that can run a command or post JSON.

`POST /api/v1/integrations/alerts` (and `karta alert`, app/integrations/alert_cli.py) take one check's
state in Nagios terms. A sample:

    {"host": "db-1.example.com", "service": "PostgreSQL", "state": "CRITICAL",
     "output": "connect to address 10.0.0.21 and port 5432: Connection refused",
     "labels": {"team": "dba"}, "group": "db-1"}

- `host`: the host as the monitoring tool names it (address, fqdn or hostname): bound like
  Alertmanager's `instance` label, through host identifiers.
- `service`: the check (service description); absent for a host check. Bound like a `service` label:
  a Karta service CI of that name, when the host did not bind.
- `state`: CRITICAL, WARNING, UNKNOWN (fire) or OK (resolves) for a service check; DOWN,
  UNREACHABLE (fire) or UP (resolves) for a host check.
- `output`: the plugin's output line, kept as the alert's `output` annotation.
- `labels`: more labels (a `cmdb_ci` label binds exactly); `host`, `instance`, `service`,
  `alertname` and `state` are Karta's and cannot be overridden.
- `group`: the incident's group key; by default one incident per host (`host:<host>`), as
  Alertmanager groups by instance.

The alert's identity (fingerprint) is derived from host and service, so OK resolves the alert that
CRITICAL raised. Times are the time Karta received the state.
"""

import hashlib
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.services.incidents import AlertGroup, AlertIn

SOURCE = "alerts"
MAX_LABELS = 64
Label = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LabelValue = Annotated[str, StringConstraints(max_length=2000)]


class State(StrEnum):
    CRITICAL = "CRITICAL"
    WARNING = "WARNING"
    UNKNOWN = "UNKNOWN"
    OK = "OK"
    DOWN = "DOWN"
    UNREACHABLE = "UNREACHABLE"
    UP = "UP"


RESOLVED_STATES = frozenset({State.OK, State.UP})


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=255, description="Address, fqdn or hostname of the host checked")
    service: str | None = Field(default=None, min_length=1, max_length=255,
                                description="The service check's name; absent for a host check")
    state: State = Field(description="CRITICAL, WARNING, UNKNOWN, OK (services); DOWN, UNREACHABLE, UP (hosts)")
    output: str | None = Field(default=None, max_length=8192, description="The check's output")
    labels: dict[Label, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)
    group: str | None = Field(default=None, min_length=1, max_length=1024,
                              description="The incident's group key; default one incident per host")


def fingerprint(host: str, service: str | None) -> str:
    return hashlib.sha256(f"{host}\x1f{service or ''}".encode()).hexdigest()[:16]


def to_group(alert: GenericAlert) -> AlertGroup:
    own = {"alertname": alert.service or "host", "host": alert.host, "instance": alert.host, "state": alert.state.value}
    if alert.service:
        own["service"] = alert.service
    labels = {**alert.labels, **own}
    annotations = {"output": alert.output} if alert.output else {}
    group_key = alert.group or f"host:{alert.host}"
    return AlertGroup(
        source=SOURCE, group_key=group_key, group_labels={"group": group_key},
        alerts=[AlertIn(fingerprint=fingerprint(alert.host, alert.service),
                        status="resolved" if alert.state in RESOLVED_STATES else "firing",
                        labels=labels, annotations=annotations)])
