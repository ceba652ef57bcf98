"""Tables that discovery ingest keeps beside the CIs: who reported what, runs, precedence rules."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, Index, Integer, String, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from app.models.types import JSONColumn, Timestamp, utcnow

# The source name of everything a person does through the CI and relationship API.
MANUAL_SOURCE = "manual"


class CISource(SQLModel, table=True):
    """One source's sightings of one CI, within one scope: what staleness is computed from."""

    __tablename__ = "ci_source"
    __table_args__ = (Index("ix_ci_source_scope", "source", "scope_key"),
                      Index("ix_ci_source_fingerprint", "source", "fingerprint"))

    # No foreign key: written only with the CI created or locked, deleted with it (migration 0004).
    ci_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    source: str = Field(sa_column=Column(String(64), primary_key=True))
    scope_key: str = Field(sa_column=Column(String(64), nullable=False))
    first_seen: datetime = Field(sa_column=Column(Timestamp, nullable=False))
    last_seen: datetime = Field(sa_column=Column(Timestamp, nullable=False))
    last_run_id: str = Field(sa_column=Column(String(100), nullable=False))
    # Complete runs of this source over this scope that did not report the CI, in a row.
    missed_runs: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # What this source last reported about the CI (the item and the relationships anchored on it,
    # hashed) and the CI's version once that report was applied. While both still hold, the same
    # report again is known to change nothing, and ingest confirms it without re-deriving it.
    fingerprint: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    ci_version: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))


class RelationshipSource(SQLModel, table=True):
    __tablename__ = "relationship_source"
    __table_args__ = (Index("ix_relationship_source_scope", "source", "scope_key"),
                      Index("ix_relationship_source_anchor", "anchor_ci_id", "source"))

    # No foreign key (migration 0006): ending a relationship deletes its sightings with it.
    relationship_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    source: str = Field(sa_column=Column(String(64), primary_key=True))
    scope_key: str = Field(sa_column=Column(String(64), nullable=False))
    last_seen: datetime = Field(sa_column=Column(Timestamp, nullable=False))
    last_run_id: str = Field(sa_column=Column(String(100), nullable=False))
    # The item whose report carried this relationship, and that report's fingerprint: a run that
    # confirms the anchor's fingerprint (ci_source) confirms this relationship without a write.
    anchor_ci_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    anchor_fingerprint: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class DiscoveryRun(SQLModel, table=True):
    __tablename__ = "discovery_run"
    __table_args__ = (Index("ix_discovery_run_started", "started_at"),)

    id: str = Field(sa_column=Column(String(100), primary_key=True))
    source: str = Field(sa_column=Column(String(64), nullable=False))
    actor: str = Field(sa_column=Column(String(200), nullable=False))
    scope: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    scope_key: str = Field(sa_column=Column(String(64), nullable=False))
    started_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    complete: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    batches: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    conflicts: list[Any] = Field(default_factory=list, sa_column=Column(JSONColumn, nullable=False))
    errors: list[Any] = Field(default_factory=list, sa_column=Column(JSONColumn, nullable=False))


class PrecedenceRule(SQLModel, table=True):
    """Which sources may overwrite which, for a class and/or an attribute (null = any)."""

    __tablename__ = "precedence_rule"
    __table_args__ = (UniqueConstraint("ci_class", "attribute", name="uq_precedence_rule_scope"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    ci_class: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    attribute: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    # Highest first: a source earlier in the list overwrites a later one, never the reverse.
    sources: list[str] = Field(default_factory=list, sa_column=Column(JSONColumn, nullable=False))
