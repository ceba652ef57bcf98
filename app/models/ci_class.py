"""CI classes are data: a registry of classes with a parent, an attribute schema and identification rules."""

from datetime import datetime
from typing import Annotated, Any, Union

from pydantic import (BaseModel, ConfigDict, Field as PydanticField, GetJsonSchemaHandler, TypeAdapter, ValidationError,
                      ValidatorFunctionWrapHandler, WrapValidator)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType
from sqlalchemy import Column, ForeignKey, String
from sqlmodel import Field, SQLModel

from app.models.types import JSONColumn, Timestamp, utcnow
from app.services.storable import INT64_MAX, INT64_MIN, MAX_DEPTH

CLASS_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

# Text Karta can store and serve back (services/storable.py): no NUL, which PostgreSQL text cannot
# hold. Written with escapes that mean the same in ECMA-262 (the dialect of JSON Schema patterns), in
# Rust's regex (pydantic's, and many validators') and in Python's re. Lone surrogates (not UTF-8) are
# refused too, by pydantic before any pattern; no pattern states it: Rust's engine has no surrogate
# code points, and a pattern naming them breaks the tools built on it (RFC 8259 §8.2 leaves such
# strings' meaning undefined anyway).
_NUL = r"\u0000"
_SPACE = r"\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # str.isspace()
TEXT_PATTERN = rf"^[^{_NUL}]*$"
# A name: storable text with something besides whitespace (leading whitespace has its own class,
# disjoint from the first visible character's: one way to match, whatever the engine).
NAME_PATTERN = rf"^[{_SPACE}]*[^{_NUL}{_SPACE}][^{_NUL}]*$"


def _explained(message: str) -> WrapValidator:
    """Says why a pattern refused a value instead of quoting the pattern."""
    def explain(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if any(error["type"] == "string_pattern_mismatch" for error in exc.errors()):
                raise PydanticCustomError("string_pattern_mismatch", message) from None
            raise
    return WrapValidator(explain)


Text = Annotated[str, PydanticField(pattern=TEXT_PATTERN), _explained("contains a NUL character")]
Name = Annotated[str, PydanticField(pattern=NAME_PATTERN),
                 _explained("must have a character besides whitespace, and no NUL character")]
Int64 = Annotated[int, PydanticField(ge=INT64_MIN, le=INT64_MAX)]


class _PerType:
    """Documents a union of JSON types as one schema without `type`, each keyword applying to its own
    type (pattern to strings, items to arrays, ...). Client generators read such a schema as "any
    value" and keep it; a recursive anyOf made openapi-python-client drop it, and with it every
    attribute of a CI. Integer bounds go under if/then: storable floats have none."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        merged: dict[str, Any] = {"description": f"A JSON value Karta can store: text without NUL, integers "
                                                 f"within 64 bits, nested at most {MAX_DEPTH} levels"}
        for member in handler(core_schema)["anyOf"]:
            kind = member.pop("type")
            if kind == "integer":
                merged.update({"if": {"type": "integer"}, "then": member})
            elif kind == "object":
                # a dict's key pattern comes as patternProperties, which leaves other keys free
                (key_pattern, value), = member.pop("patternProperties").items()
                merged.update(member, propertyNames={"pattern": key_pattern}, additionalProperties=value)
            else:
                merged.update(member)
        return merged


# What storable.py lets through, stated for the document (but for nesting at most MAX_DEPTH levels,
# which JSON Schema cannot say). It only documents: the services check values with storable.py.
StorableJSON = TypeAliasType("StorableJSON", Annotated[
    Union[Text, Int64, float, bool, None, list["StorableJSON"], dict[Text, "StorableJSON"]], _PerType()])
_STORABLE_OBJECT = TypeAdapter(dict[Text, StorableJSON]).core_schema


class _DocumentedAsStorable:
    """Validates as dict[str, Any]; documented as an object of StorableJSON values."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = handler(_STORABLE_OBJECT)
        (key_pattern, value), = schema.pop("patternProperties").items()
        return {**schema, "propertyNames": {"pattern": key_pattern}, "additionalProperties": value,
                "description": f"Text without NUL, integers within 64 bits, nested at most {MAX_DEPTH} levels"}


StorableObject = Annotated[dict[str, Any], _DocumentedAsStorable()]


def _absent_not_null(schema: dict[str, Any]) -> None:
    # Its default (None, never validated) means "absent": no value a client may send, so not shown.
    schema.pop("default", None)


# A PATCH field that may be left out but not sent as null.
ABSENT: dict[str, Any] = {"default": None, "json_schema_extra": _absent_not_null}


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


# A rule as sent: distinct attribute names, none empty (the service refuses a repeated name; this states it).
IdentificationRule = Annotated[list[Annotated[Text, PydanticField(min_length=1)]],
                               PydanticField(min_length=1, json_schema_extra={"uniqueItems": True})]


class CIClassCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PydanticField(pattern=CLASS_NAME_PATTERN)
    parent: str | None = PydanticField(default=None, pattern=CLASS_NAME_PATTERN)
    label: Text | None = PydanticField(default=None, max_length=200)
    description: Text = PydanticField(default="", max_length=2000)
    attribute_schema: StorableObject = PydanticField(default_factory=dict, description="A JSON Schema (2020-12)")
    identification_rules: list[IdentificationRule] = PydanticField(default_factory=list)
    held_identifiers: list[Text] = PydanticField(default_factory=list)


class CIClassUpdate(BaseModel):
    """A PATCH: only the fields present change; none can be null."""

    model_config = ConfigDict(extra="forbid")

    label: Text = PydanticField(**ABSENT, max_length=200)
    description: Text = PydanticField(**ABSENT, max_length=2000)
    attribute_schema: StorableObject = PydanticField(**ABSENT, description="A JSON Schema (2020-12)")
    identification_rules: list[IdentificationRule] = PydanticField(**ABSENT)
    held_identifiers: list[Text] = PydanticField(**ABSENT)


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
