"""The shapes of a discovery batch (POST /api/v1/ingest) and of a run."""

import ipaddress
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models.ci_class import Text

from app.core.batch_contract import (MAX_ITEMS, MAX_NAME, MAX_REF, MAX_RELATIONSHIPS, MAX_RUN_ID,  # noqa: F401
                                      MAX_SCOPE_HOSTS, MAX_SCOPE_SUBNETS)  # shared with the agent

SOURCE_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


class IngestItem(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ref: str = Field(min_length=1, max_length=MAX_REF, description="The batch's own name for this item")
    ci_class: str = Field(alias="class", max_length=64)
    name: str = Field(min_length=1, max_length=MAX_NAME)
    identifiers: dict[str, Any] = Field(default_factory=dict, description="Values the class's identification rules use")
    attributes: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = Field(default=None, max_length=64, description="Set on creation only")
    owner: str | None = Field(default=None, max_length=200, description="Set on creation only")


class IngestRelationship(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=MAX_REF, description="A ref in this batch or an existing CI's id")
    target: str = Field(min_length=1, max_length=MAX_REF)
    type: str = Field(max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict)


class IngestScope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subnets: list[str] = Field(default_factory=list, max_length=MAX_SCOPE_SUBNETS)
    hosts: list[str] = Field(default_factory=list, max_length=MAX_SCOPE_HOSTS)

    @field_validator("subnets")
    @classmethod
    def _networks(cls, subnets: list[str]) -> list[str]:
        normalized = []
        for subnet in subnets:
            try:
                normalized.append(str(ipaddress.ip_network(subnet, strict=False)))
            except ValueError as exc:
                raise ValueError(f"'{subnet}' is not a network in CIDR notation") from exc
        return sorted(set(normalized))

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        return sorted({host.strip().lower() for host in hosts if host.strip()})


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=SOURCE_PATTERN, description="Who saw this: ssh, nmap, snmp, import, ...")
    run_id: Text = Field(min_length=1, max_length=MAX_RUN_ID, description="Batches of one run share it")
    scope: IngestScope = Field(default_factory=IngestScope)
    complete: bool = Field(default=False, description="This batch ends a run that covered its whole scope")
    atomic: bool = Field(default=False, description="Apply nothing if any item or relationship fails")
    items: list[IngestItem] = Field(default_factory=list)
    relationships: list[IngestRelationship] = Field(default_factory=list)


class IngestEnvelope(BaseModel):
    """A batch with its items and relationships left as parsed: ingest validates each one it has to
    derive, and a report confirmed unchanged by its fingerprint was validated when it was first sent."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=SOURCE_PATTERN)
    run_id: Text = Field(min_length=1, max_length=MAX_RUN_ID)
    scope: IngestScope = Field(default_factory=IngestScope)
    complete: bool = False
    atomic: bool = False
    items: list[Any] = Field(default_factory=list)
    relationships: list[Any] = Field(default_factory=list)


class IngestOutcome(BaseModel):
    run_id: str
    source: str
    dry_run: bool
    applied: bool
    counts: dict[str, Any]
    relationships: dict[str, int]
    refs: dict[str, str]
    conflicts: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    stale: list[str]
    ended_relationships: int


class DiscoveryRunPublic(BaseModel):
    id: str
    source: str
    actor: str
    scope: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    complete: bool
    batches: int
    counts: dict[str, Any]
    conflicts: list[Any]
    errors: list[Any]


class DiscoveryRunPage(BaseModel):
    items: list[DiscoveryRunPublic]
    next_cursor: str | None


class PrecedenceRuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ci_class: str | None = Field(default=None, alias="class", max_length=64)
    attribute: str | None = Field(default=None, max_length=128)
    sources: list[str] = Field(min_length=1, max_length=32)
