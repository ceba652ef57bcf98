"""The maps of business services (app.services.service_map): which CIs each service's map holds, in
which layer, how its entry points resolved, the host names its entry points name, and how far the
keeper has read the change feed.

No foreign keys, like the graph's tables (migration 0006): a map is derived data, brought current
by the keeper after the writes that touch it (a CI deleted leaves the map of every service holding
it at the keeper's next pass, with its change record)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, String, Uuid
from sqlmodel import Field, SQLModel

from app.models.types import JSONColumn, SequenceNumber, Timestamp, utcnow

# The source of the service depends_on relationships Karta owns, and the actor of every map change:
# reserved, so that no token is named so nor reports as it (app.services.tokens).
MAPPING_SOURCE = "service_mapping"


class ServiceMapMember(SQLModel, table=True):
    """One CI of one service's map. Indexed by CI: which services does a change to this CI touch?"""

    __tablename__ = "service_map_member"
    __table_args__ = (Index("ix_service_map_member_ci", "ci_id"),)

    service_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    ci_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    layer: str = Field(sa_column=Column(String(16), nullable=False))


class ServiceMapState(SQLModel, table=True):
    """How a service's map stands: its status (mapped, partial, stale, unresolved, no_entry_points),
    each entry point with how it resolved (or why not), and the change sequence the map reflects."""

    __tablename__ = "service_map_state"

    service_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    entry_points: list[Any] = Field(default_factory=list, sa_column=Column(JSONColumn, nullable=False))
    as_of_seq: int = Field(default=0, sa_column=Column(SequenceNumber, nullable=False))
    refreshed_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))


class ServiceEntryKey(SQLModel, table=True):
    """A host an entry point names (canonical address, fqdn or hostname, lower case): a host CI that
    gains or loses that identifier, or an application that starts listening on it, touches the service."""

    __tablename__ = "service_entry_key"
    __table_args__ = (Index("ix_service_entry_key_key", "key"),)

    service_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    key: str = Field(sa_column=Column(String(512), primary_key=True))


class ServiceMapCursor(SQLModel, table=True):
    """The last change sequence whose records the keeper has looked at (one row, name 'keeper')."""

    __tablename__ = "service_map_cursor"

    name: str = Field(sa_column=Column(String(32), primary_key=True))
    seq: int = Field(default=0, sa_column=Column(SequenceNumber, nullable=False))
