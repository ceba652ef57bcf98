"""Relationship types (data, with the way impact flows) and relationships between CIs."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field as PydanticField, StrictBool
from sqlalchemy import Boolean, CheckConstraint, Column, String, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from app.models.ci_class import CLASS_NAME_PATTERN, StorableObject, Text
from app.models.types import JSONColumn, Timestamp, new_id, utcnow


class ImpactDirection(StrEnum):
    # A depends_on B: B's failure impacts A.
    target_to_source = "target_to_source"
    # A contains B, A member_of cluster: A's failure impacts B.
    source_to_target = "source_to_target"
    none = "none"


class RelationshipType(SQLModel, table=True):
    __tablename__ = "relationship_type"
    __table_args__ = (
        CheckConstraint(
            "impact_direction IN ('target_to_source','source_to_target','none')",
            name="ck_relationship_type_impact",
        ),
    )

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    forward_label: str = Field(sa_column=Column(String(100), nullable=False))
    reverse_label: str = Field(sa_column=Column(String(100), nullable=False))
    impact_direction: str = Field(sa_column=Column(String(20), nullable=False))
    # Membership feeds a redundancy group (a cluster) from its members instead of plain propagation.
    membership: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    description: str = Field(default="", sa_column=Column(String(2000), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))


class RelationshipTypeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PydanticField(pattern=CLASS_NAME_PATTERN)
    forward_label: Text = PydanticField(min_length=1, max_length=100)
    reverse_label: Text = PydanticField(min_length=1, max_length=100)
    impact_direction: ImpactDirection
    membership: StrictBool = False  # true or false, as documented: not "yes" or 1
    description: Text = PydanticField(default="", max_length=2000)


class RelationshipTypePublic(BaseModel):
    name: str
    forward_label: str
    reverse_label: str
    impact_direction: ImpactDirection
    membership: bool
    description: str


class Relationship(SQLModel, table=True):
    __tablename__ = "relationship"
    __table_args__ = (UniqueConstraint("source_id", "target_id", "type", name="uq_relationship_ends_type"),)

    id: uuid.UUID = Field(default_factory=new_id, sa_column=Column(Uuid, primary_key=True))
    # No foreign keys (migration 0006): a relationship is written only with its ends created or locked
    # by the same transaction, and deleting a CI ends its relationships, each recorded in history.
    source_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    target_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, index=True))
    # No foreign key: types are never removed, and every write checks the type first (migration 0004).
    type: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    first_seen: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    last_seen: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))


class EndedRelationship(SQLModel, table=True):
    """The ends of every relationship that ended, so that a CI's history finds the relationships that
    touched it after they are gone (live ones: the relationship table's own indexes). Written by the
    deletion, in its transaction; a first load, which ends nothing, pays nothing for it."""

    __tablename__ = "ended_relationship"

    relationship_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    source_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, index=True))
    target_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, index=True))


class RelationshipCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: uuid.UUID
    target: uuid.UUID
    type: str = PydanticField(pattern=CLASS_NAME_PATTERN, description="A relationship type's name")
    attributes: StorableObject = PydanticField(default_factory=dict)


class RelationshipPublic(BaseModel):
    id: uuid.UUID
    source: uuid.UUID
    target: uuid.UUID
    type: str
    attributes: dict[str, Any]
    first_seen: datetime | None
    last_seen: datetime | None
    created_at: datetime


class RelationshipPage(BaseModel):
    items: list[RelationshipPublic]
    next_cursor: str | None
