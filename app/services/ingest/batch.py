"""A discovery batch as parsed from the request: the envelope validated at once, each item and
relationship validated only when ingest has to derive it (see fingerprints.py)."""

import json
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from app.models.ingest import IngestBatch, IngestEnvelope, IngestItem, IngestRelationship, IngestScope
from app.services.errors import InvalidInput, field_error

_ITEMS = TypeAdapter(list[IngestItem])
_RELATIONSHIPS = TypeAdapter(list[IngestRelationship])


class MalformedJson(InvalidInput):
    status = 400
    title = "Malformed JSON"
    slug = "malformed-json"


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
    items: list[Any]  # as parsed; see validated()
    relationships: list[Any]
    # False when the batch holds values JSON has no text for (NaN, Infinity): hashing writes them as
    # null, so such a batch must not be confirmed by fingerprint.
    hashable: bool = True

    @classmethod
    def from_json(cls, body: bytes) -> "Batch":
        try:
            # pydantic-core's parser keeps integers beyond 64 bits exact (orjson turns them into floats);
            # they, NaN and the like are refused per item later, not for the whole batch.
            data = from_json(body, allow_inf_nan=True)
        except ValueError as exc:
            raise MalformedJson(f"The request body is not valid JSON: {exc}.") from None
        batch = cls.from_data(data)
        batch.hashable = b"NaN" not in body and b"Infinity" not in body
        return batch

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
        data = batch.model_dump(by_alias=True)
        parsed = cls.from_data(data)
        try:
            json.dumps(data, allow_nan=False)
        except (ValueError, TypeError):
            parsed.hashable = False
        return parsed

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
