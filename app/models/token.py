"""API tokens: stored only as hashes, with scopes, an optional expiry and the time of last use."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field as PydanticField
from sqlalchemy import Column, String, Uuid
from sqlmodel import Field, SQLModel

from app.models.ci_class import Name
from app.models.ingest import SOURCE_PATTERN
from app.core.scopes import Scope  # noqa: F401 - re-exported: the models name it
from app.models.types import JSONColumn, Timestamp, UtcDatetime, utcnow


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    secret_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONColumn, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    # The sources a token may report as on /api/v1/ingest; null: any but `manual` (migration 0007).
    sources: list[str] | None = Field(default=None, sa_column=Column(JSONColumn, nullable=True))




class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = PydanticField(min_length=1, max_length=200)
    scopes: list[Scope] = PydanticField(min_length=1)
    expires_at: UtcDatetime | None = None
    sources: list[Annotated[str, PydanticField(pattern=SOURCE_PATTERN)]] | None = PydanticField(
        default=None, min_length=1, max_length=50,
        description="The discovery sources this token may send to /api/v1/ingest (e.g. ssh, nmap); "
                    "omitted: any source but `manual`, which is reserved for edits through the CI API.")


class TokenPublic(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    sources: list[str] | None = PydanticField(description="null: any source but `manual`")
    state: str = PydanticField(description="active, expired or revoked")


class TokenCreated(TokenPublic):
    secret: str = PydanticField(description="Shown once; only its hash is stored.")
