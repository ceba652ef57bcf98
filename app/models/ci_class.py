"""CI classes are data: a registry of classes with a parent, an attribute schema and identification rules."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field as PydanticField
from sqlalchemy import Column, ForeignKey, String
from sqlmodel import Field, SQLModel

from app.models.types import JSONColumn, Timestamp, utcnow

CLASS_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class CIClass(SQLModel, table=True):
    __tablename__ = "ci_class"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    parent: str | None = Field(
        default=None, sa_column=Column(String(64), ForeignKey("ci_class.name"), nullable=True)
    )
    label: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(String(2000), nullable=False))
    # JSON Schema (draft 2020-12) for this class's own attributes; subclasses must satisfy their ancestors' too.
    attribute_schema: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONColumn, nullable=False))
    # Ordered list of attribute-name sets; the first set whose values are all present identifies the CI.
    # Empty means "inherit from the parent".
    identification_rules: list[list[str]] = Field(
        default_factory=list, sa_column=Column(JSONColumn, nullable=False)
    )
    # Identifiers a CI holds only while it reports them (a host's IP addresses): the weakest rule;
    # such a value moves to whichever CI reported it last instead of being refused as a duplicate.
    held_identifiers: list[str] = Field(default_factory=list, sa_column=Column(JSONColumn, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(Timestamp, nullable=False))


IdentificationRules = list[list[str]]


class CIClassCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PydanticField(pattern=CLASS_NAME_PATTERN)
    parent: str | None = None
    label: str | None = PydanticField(default=None, max_length=200)
    description: str = PydanticField(default="", max_length=2000)
    attribute_schema: dict[str, Any] = PydanticField(default_factory=dict)
    identification_rules: IdentificationRules = PydanticField(default_factory=list)
    held_identifiers: list[str] = PydanticField(default_factory=list)


class CIClassUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = PydanticField(default=None, max_length=200)
    description: str | None = PydanticField(default=None, max_length=2000)
    attribute_schema: dict[str, Any] | None = None
    identification_rules: IdentificationRules | None = None
    held_identifiers: list[str] | None = None


class CIClassPublic(BaseModel):
    name: str
    parent: str | None
    label: str
    description: str
    attribute_schema: dict[str, Any]
    identification_rules: IdentificationRules
    effective_identification_rules: IdentificationRules
    held_identifiers: list[str]
    effective_held_identifiers: list[str]
    family: str
    created_at: datetime
    updated_at: datetime
