"""Webhook subscriptions and their delivery log (migration 0012).

A `webhook` row is one subscription: where to send (url), the secret it signs with (encrypted with the
service's key, never returned), which change records it wants (filters), whether it is active or was
disabled, and its delivery state: the committed cursor (the last change seq the receiver acknowledged,
or that the filters skipped), the run of consecutive failures, when to try next, and the lease that
lets exactly one worker of one host deliver it at a time. Only the subscription's own fields are in
the change feed ("webhook" records); the cursor and the lease move on every delivery and are not.

`webhook_delivery` holds the last attempts of each subscription (bounded retention, see
app/services/webhook_delivery.py): when, the seq range sent, the status code or the error, how long.
"""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, UrlConstraints
from pydantic import Field as PydanticField
from sqlalchemy import BigInteger, Column, Index, Integer, String, Uuid
from sqlmodel import Field, SQLModel

from app.models.types import JSONColumn, Timestamp, utcnow

MAX_URL_LENGTH = 2000
SECRET_MIN, SECRET_MAX = 16, 200
FILTER_NAME = r"^[A-Za-z0-9_.:-]{1,200}$"


class WebhookState(StrEnum):
    active = "active"
    disabled = "disabled"


class Webhook(SQLModel, table=True):
    __tablename__ = "webhook"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    url: str = Field(sa_column=Column(String(MAX_URL_LENGTH), nullable=False))
    # Fernet token of the secret (app.services.webhooks.SecretBox); never leaves the service otherwise.
    secret_encrypted: str = Field(sa_column=Column(String(1000), nullable=False))
    filters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    state: str = Field(default=WebhookState.active, sa_column=Column(String(16), nullable=False))
    disabled_reason: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    # Delivery state, written by the worker only (not in the change feed).
    cursor_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    failures: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    last_success_at: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))
    lease_owner: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    leased_until: datetime | None = Field(default=None, sa_column=Column(Timestamp, nullable=True))


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_webhook", "webhook_id", "attempted_at"),)

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))  # the X-Karta-Delivery sent
    webhook_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    attempted_at: datetime = Field(sa_column=Column(Timestamp, nullable=False))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    first_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    records: int = Field(sa_column=Column(Integer, nullable=False))
    status_code: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    duration_ms: int = Field(sa_column=Column(Integer, nullable=False))
    outcome: str = Field(sa_column=Column(String(16), nullable=False))  # delivered or failed


FilterNames = Annotated[list[Annotated[str, PydanticField(pattern=FILTER_NAME)]],
                        PydanticField(min_length=1, max_length=100)]
WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=MAX_URL_LENGTH, allowed_schemes=["http", "https"])]


class WebhookFilters(BaseModel):
    """Every key given must match (kinds, then class or type, then fields); a key left out matches all."""

    model_config = ConfigDict(extra="forbid")

    object_types: FilterNames | None = PydanticField(
        default=None, description="Kinds of object: ci, relationship, class, relationship_type, precedence, token, "
                                  "webhook, incident, service_map. `classes` implies ci and `relationship_types` relationship.")
    classes: FilterNames | None = PydanticField(default=None, description="CI records of CIs of these classes")
    relationship_types: FilterNames | None = PydanticField(
        default=None, description="Relationship records of relationships of these types")
    fields: FilterNames | None = PydanticField(
        default=None, description="Records whose diff touches one of these fields; `attributes` means any "
                                  "attribute, `attributes.os_name` one of them")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    secret: str = PydanticField(min_length=SECRET_MIN, max_length=SECRET_MAX,
                                description="Signs every delivery (HMAC-SHA256); never returned")
    filters: WebhookFilters = PydanticField(default_factory=WebhookFilters)


class WebhookUpdate(BaseModel):
    """PATCH: `state: active` re-enables a disabled subscription (its failures reset; the deliveries
    resume from its cursor, so nothing is skipped); the other fields replace what they name."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    secret: str | None = PydanticField(default=None, min_length=SECRET_MIN, max_length=SECRET_MAX)
    filters: WebhookFilters | None = None
    state: WebhookState | None = None


class WebhookPublic(BaseModel):
    id: uuid.UUID
    url: str
    filters: WebhookFilters
    state: WebhookState
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    cursor_seq: int = PydanticField(description="The last change seq delivered (acknowledged) or skipped by filters")
    failures: int = PydanticField(description="Consecutive failed attempts")
    next_attempt_at: datetime | None
    last_success_at: datetime | None


class WebhookDeliveryPublic(BaseModel):
    id: uuid.UUID
    attempted_at: datetime
    attempt: int
    first_seq: int
    last_seq: int
    records: int
    status_code: int | None
    error: str | None
    duration_ms: int
    outcome: str


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryPublic]
