"""Alertmanager's webhook, payload version 4, translated into an alert group for app.services.incidents.

Format: https://prometheus.io/docs/alerting/latest/configuration/#webhook_config (Alertmanager 0.25
sends this; `version` has been "4" since 0.8). A sample, as Alertmanager posts it:

    {"version": "4", "groupKey": "{}:{alertname=\\"HostDown\\"}", "truncatedAlerts": 0,
     "status": "firing", "receiver": "karta",
     "groupLabels": {"alertname": "HostDown"},
     "commonLabels": {"alertname": "HostDown", "severity": "critical"},
     "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
     "alerts": [{"status": "firing",
                 "labels": {"alertname": "HostDown", "instance": "10.0.0.21:9100", "severity": "critical"},
                 "annotations": {"summary": "db-1 is down"},
                 "startsAt": "2026-12-02T15:46:09.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
                 "fingerprint": "5b3c8ad3e1a6b2f4"}]}

`endsAt` of a firing alert is Go's zero time (year 1), or the time Alertmanager will consider it
resolved when Prometheus stops re-sending it: it is the alert's `valid_until`, which can only put off
its incident's expiry (app.services.incidents, "expired": Prometheus renews it without a notification,
so it has usually passed long before the group's next one); `ends_at` is kept for resolved alerts.
Every notification lists the group's current alerts: one with none truncated is `complete`, and a
firing alert it leaves out (silenced, inhibited) is no longer firing. `truncatedAlerts` counts alerts
Alertmanager left out (its `max_alerts`); then the ones sent are merged and the others keep their last
known state. A firing group is sent again every repeat_interval (`renotified`): one that falls silent
longer than that (KARTA_ALERT_EXPIRY_SECONDS) has stopped firing, all of it silenced for instance.

Validated strictly where Karta reads a field (types, version "4", statuses), and lenient elsewhere:
fields a later Alertmanager adds are ignored, so a valid payload never gets a 4xx (Alertmanager does
not retry a 4xx: the group's notification would be lost). Label values are kept as sent; escaping
them is the job of every output that shows them.
"""

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.services.incidents import AlertGroup, AlertIn

SOURCE = "alertmanager"
# Alertmanager's fingerprints are 16 hex digits; anything longer is not one.
MAX_FINGERPRINT = 128
_GO_ZERO_YEAR = 1


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class AlertmanagerAlert(_Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=MAX_FINGERPRINT)


class AlertmanagerPayload(_Lenient):
    """Alertmanager webhook payload, version 4."""

    version: Literal["4"]
    group_key: str = Field(min_length=1, alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert]


def _time(value: datetime | None) -> datetime | None:
    if value is None or value.year <= _GO_ZERO_YEAR:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:  # the last hours of year 9999 in a time zone west of UTC: no time we can hold
        return None


def to_group(payload: AlertmanagerPayload) -> AlertGroup:
    return AlertGroup(
        source=SOURCE, group_key=payload.group_key, receiver=payload.receiver or None,
        group_labels=payload.group_labels, complete=payload.truncated_alerts == 0, renotified=True,
        alerts=[AlertIn(fingerprint=alert.fingerprint, status=alert.status, labels=alert.labels,
                        annotations=alert.annotations, starts_at=_time(alert.starts_at),
                        ends_at=_time(alert.ends_at) if alert.status == "resolved" else None,
                        generator_url=alert.generator_url or None,
                        valid_until=_time(alert.ends_at) if alert.status == "firing" else None)
                for alert in payload.alerts])
