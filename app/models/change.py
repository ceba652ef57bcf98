"""Append-only change records: every create, update and delete of a CI or relationship.

The sequence number is global and increases in commit order (see app.services.history), so a tool
that tails `GET /api/v1/changes?since=N` never misses a record that commits late. It is not dense: on
PostgreSQL a transaction that took numbers and did not commit leaves a gap, never a missing record.

Object types: ci, relationship, class, relationship_type, precedence, token, webhook, incident,
service_map (a service's map: CIs that joined or left it, its status; app.services.service_map).
"""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field as PydanticField
from sqlalchemy import Column, Index, String, Uuid
from sqlmodel import Field, SQLModel

from app.models.types import JSONColumn, SequenceNumber, Timestamp, utcnow


class ChangeRecord(SQLModel, table=True):
    __tablename__ = "change_record"
    __table_args__ = (Index("ix_change_record_object", "object_id", "seq"),)

    seq: int | None = Field(default=None, sa_column=Column(SequenceNumber, primary_key=True, autoincrement=True))
    at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    actor: str = Field(sa_column=Column(String(200), nullable=False))
    object_type: str = Field(sa_column=Column(String(32), nullable=False))
    object_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    action: str = Field(sa_column=Column(String(16), nullable=False))
    # Field-level diff {field: [old, new]}; a create has old = null, a delete new = null.
    diff: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))


class ChangeRecordPublic(BaseModel):
    seq: int
    at: datetime
    actor: str
    object_type: str
    object_id: uuid.UUID
    action: str
    diff: dict[str, Any]


class ChangePage(BaseModel):
    items: list[ChangeRecordPublic]
    last_seq: int = PydanticField(description="Send as `since` next time")
    head_seq: int = PydanticField(description="The newest record's sequence number when this page was read")


class HistoryPage(BaseModel):
    items: list[ChangeRecordPublic]
    next_cursor: str | None
