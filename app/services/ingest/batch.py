"""A discovery batch as parsed from the request: the envelope validated at once, each item and
relationship validated only when ingest has to derive it (see fingerprints.py)."""

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from app.models.ingest import IngestBatch, IngestEnvelope, IngestItem, IngestRelationship, IngestScope
from app.services.errors import InvalidInput, field_error

_ITEMS = TypeAdapter(list[IngestItem])
# An integer of 20 digits or more may not fit 64 bits (or is a long digit string, which costs only speed).
_LONG_NUMBER = re.compile(rb"[0-9]{20,}")
_RELATIONSHIPS = TypeAdapter(list[IngestRelationship])


class MalformedJson(InvalidInput):
    status = 400
    title = "Malformed JSON"
    slug = "malformed-json"


def _exact_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedJson(f"The request body is not valid JSON: {exc}.") from None


def _field(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _invalid(errors: list[dict[str, Any]]) -> InvalidInput:
    first = errors[0]
    return InvalidInput(f"{first['field']}: {first['message']}", errors)


@dataclass
class Batch:
    source: str
    run_id: str
    scope: IngestScope
    complete: bool
    atomic: bool
    items: list[Any]  # as parsed; see item()
    relationships: list[Any]

    @classmethod
    def from_json(cls, body: bytes) -> "Batch":
        if _LONG_NUMBER.search(body):
            data = _exact_json(body)  # orjson would read it as a float and lose digits
        else:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = _exact_json(body)  # NaN and the like: kept, and refused per item later
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Any) -> "Batch":
        try:
            envelope = IngestEnvelope.model_validate(data)
        except ValidationError as exc:
            raise _invalid([field_error(_field(e["loc"]), e["msg"]) for e in exc.errors()]) from None
        return cls(envelope.source, envelope.run_id, envelope.scope, envelope.complete, envelope.atomic,
                   envelope.items, envelope.relationships)

    @classmethod
    def from_model(cls, batch: IngestBatch) -> "Batch":
        return cls.from_data(batch.model_dump(by_alias=True))

    def validated(self, item_indexes: list[int], relationship_positions: list[int]
                  ) -> tuple[list[tuple[int, IngestItem]], list[tuple[int, IngestRelationship]]]:
        """The items and relationships at these positions as models; 422 naming every fault."""
        errors = []
        items = relationships = []
        try:
            items = _ITEMS.validate_python([self.items[i] for i in item_indexes])
        except ValidationError as exc:
            errors += [field_error(_field(("items", item_indexes[e["loc"][0]], *e["loc"][1:])), e["msg"])
                       for e in exc.errors()]
        try:
            relationships = _RELATIONSHIPS.validate_python([self.relationships[p] for p in relationship_positions])
        except ValidationError as exc:
            errors += [field_error(_field(("relationships", relationship_positions[e["loc"][0]], *e["loc"][1:])), e["msg"])
                       for e in exc.errors()]
        if errors:
            raise _invalid(errors)
        return list(zip(item_indexes, items)), list(zip(relationship_positions, relationships))
