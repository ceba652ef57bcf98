"""Configuration items: the table and the shapes the API accepts and returns."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
    func,
    literal_column,
)
from sqlmodel import Field, SQLModel

from app.models.ci_class import ABSENT, CLASS_NAME_PATTERN, Name, StorableObject, Text
from app.models.types import JSONColumn, Timestamp, UtcDatetime, new_id, utcnow


class CIStatus(StrEnum):
    planned = "planned"
    active = "active"
    maintenance = "maintenance"
    stale = "stale"
    retired = "retired"


# What GET /api/v1/search reads on PostgreSQL (migration 0009 makes them, app/services/search.py queries
# the same expressions). SQLite's are an expression index, which reflection cannot compare, and FTS5
# tables kept by triggers: the migration alone declares those.
# pg_trgm makes trigrams of words, and a word is letters and digits only: "6.1.0-18-amd64" would be
# the trigrams of "6", "1", "0", "18" and "amd64", found in most CIs. Punctuation and spaces become
# upper-case letters (never in the lower-cased text) so that the whole value is one word, and its
# trigrams select the CIs that hold it. Search translates the query the same way.
TRIGRAM_PUNCTUATION, TRIGRAM_LETTERS = ".-:/_@ ", "DHCSUAW"
_TRANSLATE = f"'{TRIGRAM_PUNCTUATION}'::text, '{TRIGRAM_LETTERS}'::text"
# Written as PostgreSQL prints them back (as Alembic normalizes them): comparing the models with the
# database then finds them equal.
NAME_TRIGRAMS_SQL = f"translate(lower(name::text), {_TRANSLATE})"
VALUE_TRIGRAMS_SQL = ("translate(lower(jsonb_path_query_array(attributes, 'strict $.**?(@.type() == \"string\" "
                      f"|| @.type() == \"number\")'::jsonpath)::text), {_TRANSLATE})")


# The reverse-DNS name nmap reports for an address (discovery.batch: the attribute `dns_name` of the
# ip_address CI, never an identifier), lower-cased, for finding hosts by the name monitoring calls them
# (app.services.alert_binding). Indexed only where present; text_pattern_ops makes a prefix (`web-1.`) a
# range whatever the collation. Migration 0017 makes it, and SQLite's twin (DNS_NAME_SQLITE), which as an
# expression index reflection cannot compare, is declared there alone.
# Only names a DNS name can be (253 characters at most): a longer value written by hand would not fit a
# btree entry (2,704 bytes on PostgreSQL) and fail the CI's write. Queries repeat the condition.
DNS_NAME_PG = "lower(attributes ->> 'dns_name'::text)"
DNS_NAME_PG_WHERE = "length(attributes ->> 'dns_name'::text) <= 253"
DNS_NAME_SQLITE = "lower(json_extract(attributes, '$.dns_name'))"
DNS_NAME_SQLITE_WHERE = "length(json_extract(attributes, '$.dns_name')) <= 253"


def search_indexes() -> list[Index]:
    name = literal_column("name")
    return [
        # text_pattern_ops: compares by bytes whatever the database's collation, so LIKE 'abc%' is a range
        # of it, read in order with ORDER BY lower(name) USING ~<~.
        Index("ix_ci_name_search", func.lower(name).label("name_lower"), "id",
              postgresql_ops={"name_lower": "text_pattern_ops"}).ddl_if(dialect="postgresql"),
        Index("ix_ci_name_trgm", literal_column(NAME_TRIGRAMS_SQL).label("name_trigrams"), postgresql_using="gin",
              postgresql_ops={"name_trigrams": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
        Index("ix_ci_attribute_values_trgm", literal_column(VALUE_TRIGRAMS_SQL).label("value_trigrams"),
              postgresql_using="gin", postgresql_ops={"value_trigrams": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
        Index("ix_ci_dns_name", literal_column(DNS_NAME_PG).label("dns_name_lower"),
              postgresql_ops={"dns_name_lower": "text_pattern_ops"},
              postgresql_where=literal_column(DNS_NAME_PG_WHERE)).ddl_if(dialect="postgresql"),
    ]


class ConfigurationItem(SQLModel, table=True):
    __tablename__ = "ci"
    __table_args__ = (
        CheckConstraint("criticality BETWEEN 1 AND 4", name="ck_ci_criticality"),
        CheckConstraint(
            "status IN ('planned','active','maintenance','stale','retired')", name="ck_ci_status"
        ),
        Index("ix_ci_class_id", "ci_class", "id"),
        # The CI list's keyset sorts (migration 0010).
        Index("ix_ci_status_id", "status", "id"),
        Index("ix_ci_updated_at_id", "updated_at", "id"),
        *search_indexes(),
    )

    id: uuid.UUID = Field(default_factory=new_id, sa_column=Column(Uuid, primary_key=True))
    ci_class: str = Field(sa_column=Column(String(64), ForeignKey("ci_class.name"), nullable=False))
    name: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    status: str = Field(default=CIStatus.active, sa_column=Column(String(16), nullable=False, index=True))
    environment: str | None = Field(default=None, sa_column=Column(String(64), nullable=True, index=True))
    criticality: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    owner: str | None = Field(default=None, sa_column=Column(String(200), nullable=True, index=True))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSONColumn, nullable=False))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    first_seen: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    last_seen: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    # Who set each attribute (and the name) and when: {"cpu_count": {"source": "ssh", "at": "..."}}.
    provenance: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))


class _CIFields(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name = PydanticField(min_length=1, max_length=255)
    status: CIStatus = CIStatus.active
    environment: Text | None = PydanticField(default=None, max_length=64)
    criticality: int | None = PydanticField(default=None, ge=1, le=4, description="1 = most critical .. 4")
    owner: Text | None = PydanticField(default=None, max_length=200, description="Team or person")
    tags: list[Text] = PydanticField(default_factory=list, max_length=100)
    attributes: StorableObject = PydanticField(default_factory=dict)


class CICreate(_CIFields):
    ci_class: str = PydanticField(alias="class", pattern=CLASS_NAME_PATTERN)
    first_seen: UtcDatetime | None = None
    last_seen: UtcDatetime | None = None


class CIUpdate(BaseModel):
    """A PATCH: only the fields present change. `attributes` is merged key by key; a key set to null is removed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # class, name, status, tags and attributes cannot be null; environment, criticality, owner and
    # last_seen can (null clears them).
    ci_class: str = PydanticField(**ABSENT, alias="class", pattern=CLASS_NAME_PATTERN)
    name: Name = PydanticField(**ABSENT, min_length=1, max_length=255)
    status: CIStatus = PydanticField(**ABSENT)
    environment: Text | None = PydanticField(default=None, max_length=64)
    criticality: int | None = PydanticField(default=None, ge=1, le=4)
    owner: Text | None = PydanticField(default=None, max_length=200)
    tags: list[Text] = PydanticField(**ABSENT, max_length=100)
    attributes: StorableObject = PydanticField(**ABSENT, description="Merged key by key; a key set to null is removed")
    last_seen: UtcDatetime | None = None


class RelationshipView(BaseModel):
    """A relationship as seen from one CI: the type's label reads from this CI's side."""

    id: uuid.UUID
    type: str
    label: str
    direction: str = PydanticField(description="outgoing (this CI is the source) or incoming")
    ci: uuid.UUID = PydanticField(description="the CI at the other end")
    ci_name: str
    ci_class: str
    attributes: dict[str, Any]


class CIPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    ci_class: str = PydanticField(alias="class")
    name: str
    status: CIStatus
    environment: str | None
    criticality: int | None
    owner: str | None
    tags: list[str]
    attributes: dict[str, Any]
    first_seen: datetime | None
    last_seen: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int


class CIDetail(CIPublic):
    provenance: dict[str, Any]
    relationships: list[RelationshipView]


class CIPage(BaseModel):
    items: list[CIPublic]
    next_cursor: str | None
