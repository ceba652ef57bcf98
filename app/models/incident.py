"""Incidents raised by monitoring (Alertmanager, Nagios, Zabbix) and the alerts they hold.

One incident per alert group: Alertmanager's `groupKey`, or the group a generic alert names. The key
can be as long as the labels it is made of, so it is stored whole and found through its SHA-256
(`group_key_hash`, unique). An alert is identified within its incident by its fingerprint
(Alertmanager's, or one Karta derives for a generic alert). The computed part (failed CIs, blast
radius, root-cause candidates, owners) is stored as `summary` with the change sequence it reflects.

Nothing here points at a CI through a foreign key: an alert's CI may be deleted while the alert is
kept (it then shows its CI id and no name), as the change feed keeps ids of deleted CIs.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, String, Text, Uuid
from sqlmodel import Field, SQLModel

from app.models.types import JSONColumn, Timestamp, new_id, utcnow

INCIDENT_STATUSES = ("open", "resolved")
# absent: firing, then missing from a complete notification of its group (silenced, inhibited, or gone);
# expired: firing when its group fell silent past the incident's expires_at. Both end the alert as
# `resolved` does for the incident's status (app.services.incidents says why).
ALERT_STATUSES = ("firing", "resolved", "absent", "expired")


class Incident(SQLModel, table=True):
    __tablename__ = "incident"
    __table_args__ = (
        CheckConstraint("status IN ('open','resolved')", name="ck_incident_status"),
        Index("ix_incident_group_key_hash", "group_key_hash", unique=True),
        Index("ix_incident_status_id", "status", "id"),
        Index("ix_incident_expires_at", "expires_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, sa_column=Column(Uuid, primary_key=True))
    group_key: str = Field(sa_column=Column(Text, nullable=False))
    group_key_hash: str = Field(sa_column=Column(String(64), nullable=False))
    source: str = Field(sa_column=Column(String(32), nullable=False))
    receiver: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    group_labels: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    as_of_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    opened_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    resolved_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    # An open incident whose source repeats its firing groups (Alertmanager): when its firing alerts are
    # taken as gone if no notification of the group came meanwhile (migration 0014). None otherwise.
    expires_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))


class IncidentAlert(SQLModel, table=True):
    __tablename__ = "incident_alert"
    __table_args__ = (
        CheckConstraint("status IN ('firing','resolved','absent','expired')", name="ck_incident_alert_status"),
        Index("ix_incident_alert_ci_id", "ci_id"),
    )

    # No foreign key to incident: written only with the incident locked (app.services.incidents).
    incident_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    fingerprint: str = Field(sa_column=Column(String(128), primary_key=True))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    labels: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    annotations: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    starts_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    ends_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    generator_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The CI the alert is bound to, the binding rule that bound it ("instance:host") and the value it read.
    ci_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    bound_by: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
