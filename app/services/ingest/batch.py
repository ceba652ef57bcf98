"""A discovery batch as received: the envelope validated at once, each item and relationship kept as
the bytes the source sent and validated only when ingest has to derive it (see fingerprints.py).

Keeping the bytes is what makes an unchanged report cheap: it is hashed as sent, and an item
confirmed by its hash is never parsed into objects at all.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from app.models.ingest import IngestBatch, IngestEnvelope, IngestItem, IngestRelationship, IngestScope
from app.services.errors import InvalidInput, KartaError, field_error
from app.services.storable import MAX_DEPTH

_ITEMS = TypeAdapter(list[IngestItem])
_RELATIONSHIPS = TypeAdapter(list[IngestRelationship])
_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_LIST = msgspec.json.Decoder(list[msgspec.Raw])


class _ItemHead(msgspec.Struct):
    ref: Any = None
    ci_class: Any = msgspec.field(default=None, name="class")
    ci_class_by_name: Any = msgspec.field(default=None, name="ci_class")  # the model accepts either


class _Ends(msgspec.Struct):
    source: Any = None
    target: Any = None
    type: Any = None


# What could make a parsed value unstorable (see storable.py) shows in its bytes: a NUL or surrogate
# escape, an integer of 19 digits or more, NaN, an infinity or an exponent large enough to overflow.
# Bytes without any of these (strings may trip it too: that only costs the full check) hold nothing
# unstorable but, perhaps, deep nesting, which is bounded by the count of brackets. Substring tests
# on a copy with every digit made '0' cost a third of one regular expression.
_DIGITS_AS_ZERO = bytes(ord("0") if chr(c).isdigit() and c < 128 else ord("e") if c == ord("E") else c
                        for c in range(256))
_NUMBER_HAZARDS = (b"0" * 19, b"e000", b"e+000", b"e-000")
_ESCAPES = (b"\\u", b"\x00")  # a NUL or a surrogate can only arrive as one of these
_TEXT_HAZARDS = (*_ESCAPES, b"NaN", b"Infinity")


def _surely_storable(raw: bytes) -> bool:
    if raw.count(b"[") + raw.count(b"{") >= MAX_DEPTH or any(hazard in raw for hazard in _TEXT_HAZARDS):
        return False
    digits = raw.translate(_DIGITS_AS_ZERO)
    return not any(hazard in digits for hazard in _NUMBER_HAZARDS)


_HEAD = msgspec.json.Decoder(_ItemHead)
_ENDS = msgspec.json.Decoder(_Ends)


class MalformedJson(InvalidInput):
    status = 400
    title = "Malformed JSON"
    slug = "malformed-json"


class NestedTooDeeply(InvalidInput):
    """A value nested deeper than any field may be (422, naming it), as the CI API answers."""


# Every value of a batch starts at most this many levels below the body (body, relationships, one
# relationship, its attributes): a container opened deeper is inside a value nested beyond MAX_DEPTH.
_ENVELOPE_DEPTH = 4
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]')


def _too_deep(raw: bytes, where: str) -> KartaError:
    """The error for JSON too deep to decode (the decoders recurse once per level): it names the first
    value nested beyond MAX_DEPTH, found without recursing. Only a refused body pays for this."""
    path = where.split(".") if where else []
    limit, depth = MAX_DEPTH + _ENVELOPE_DEPTH - len(path), 0  # `raw` sits len(path) levels below the body
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                break
        elif token in (b"]", b"}"):
            depth -= 1
    else:
        return MalformedJson("The request body is not valid JSON: nested too deeply.")
    # The body up to there, closed by the partial parser, shows the path: the last key or index of
    # each level (a key sent twice in one object may name the earlier place).
    try:
        node = from_json(raw[:match.end()], allow_inf_nan=True, allow_partial=True)
    except ValueError:  # malformed before it gets that deep
        return MalformedJson("The request body is not valid JSON: nested too deeply.")
    while isinstance(node, dict | list) and node:
        key = next(reversed(node)) if isinstance(node, dict) else len(node) - 1
        path.append(str(key))
        node = node[key]
    field_name = ".".join(path) or "body"
    reason = f"nested deeper than {MAX_DEPTH} levels"
    return NestedTooDeeply(f"{field_name}: {reason}.", [field_error(field_name, reason)])


def _field(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _invalid(errors: list[dict[str, Any]]) -> InvalidInput:
    first = errors[0]
    return InvalidInput(f"{first['field']}: {first['message']}", errors)


def _parse(raw: bytes, where: str = "") -> Any:
    # pydantic-core's parser keeps integers beyond 64 bits exact; they, NaN and the like are refused
    # per item later, not for the whole batch. It stops at 200 levels, far beyond what is storable.
    try:
        return from_json(raw, allow_inf_nan=True)
    except ValueError as exc:
        if "recursion limit exceeded" in str(exc):
            raise _too_deep(raw, where) from None
        raise MalformedJson(f"The request body is not valid JSON: {exc}.") from None


def _head(raw: bytes, decoder) -> Any:
    try:
        return decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None  # not an object, or NaN inside: validation reports it


def _text(value: Any) -> str | None:
    return value if type(value) is str else None


@dataclass
class Batch:
    source: str
    run_id: str
    scope: IngestScope
    complete: bool
    atomic: bool
    items: list[bytes]  # each as sent; see validated()
    relationships: list[bytes]
    refs: list[str | None] = field(default_factory=list)  # per item, when it has a string ref
    classes: list[str | None] = field(default_factory=list)  # per item, its class when sent as a string
    ends: list[tuple[Any, Any, Any]] = field(default_factory=list)  # per relationship, (source, target, type) as sent

    def __post_init__(self) -> None:
        heads = [_head(raw, _HEAD) for raw in self.items]
        self.refs = [h.ref if h is not None and type(h.ref) is str else None for h in heads]
        self.classes = [_text(h.ci_class if h.ci_class is not None else h.ci_class_by_name) if h is not None else None
                        for h in heads]
        ends = [_head(raw, _ENDS) for raw in self.relationships]
        self.ends = [(e.source, e.target, e.type) if e is not None else (None, None, None) for e in ends]

    def text_storable(self, item_indexes: list[int], relationship_positions: list[int]) -> bool:
        """No string in these items and relationships can hold a NUL or a lone surrogate."""
        raws = [self.items[i] for i in item_indexes] + [self.relationships[p] for p in relationship_positions]
        return not any(escape in raw for raw in raws for escape in _ESCAPES)

    def item_storable(self, index: int) -> bool:
        """True when item `index` surely holds only storable values; False means: check it."""
        return _surely_storable(self.items[index])

    @classmethod
    def from_json(cls, body: bytes) -> "Batch":
        try:
            return cls._decode(body)
        except RecursionError:
            # msgspec recurses once per level on Python's stack (about 950 levels in a request).
            raise _too_deep(body, "") from None

    @classmethod
    def _decode(cls, body: bytes) -> "Batch":
        try:
            top = _TOP.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            # Not an object, or JSON beyond the strict grammar (NaN): parse it whole and let
            # validation speak (or refuse it as malformed).
            return cls._from_data(_parse(body))
        data: dict[str, Any] = {}
        lists: dict[str, list[bytes]] = {"items": [], "relationships": []}
        for key, raw in top.items():
            if key in lists:
                try:
                    lists[key] = [bytes(item) for item in _LIST.decode(bytes(raw))]
                    continue
                except msgspec.ValidationError:
                    pass  # not a list: the envelope's validation says so
                except msgspec.DecodeError:
                    return cls._from_data(_parse(body))  # NaN and the like, inside
            data[key] = _parse(bytes(raw), key)
        return cls._from_envelope(data, lists["items"], lists["relationships"])

    @classmethod
    def _from_data(cls, data: Any) -> "Batch":
        lists: dict[str, list[bytes]] = {"items": [], "relationships": []}
        if isinstance(data, dict):
            data = dict(data)
            for key in lists:
                if isinstance(data.get(key), list):
                    lists[key] = [json.dumps(value).encode() for value in data.pop(key)]
        return cls._from_envelope(data, lists["items"], lists["relationships"])

    @classmethod
    def _from_envelope(cls, data: Any, items: list[bytes], relationships: list[bytes]) -> "Batch":
        try:
            envelope = IngestEnvelope.model_validate(data)
        except ValidationError as exc:
            raise _invalid([field_error(_field(e["loc"]), e["msg"]) for e in exc.errors()]) from None
        return cls(envelope.source, envelope.run_id, envelope.scope, envelope.complete, envelope.atomic,
                   items, relationships)

    @classmethod
    def from_model(cls, batch: IngestBatch) -> "Batch":
        return cls._from_data(batch.model_dump(by_alias=True))

    def validated(self, item_indexes: list[int], relationship_positions: list[int]
                  ) -> tuple[list[tuple[int, IngestItem]], list[tuple[int, IngestRelationship]]]:
        """The items and relationships at these positions as models; 422 naming every fault."""
        errors = []
        items = relationships = []
        try:
            items = _ITEMS.validate_python(_parse_list(self.items, item_indexes, "items"))
        except ValidationError as exc:
            errors += [field_error(_field(("items", item_indexes[e["loc"][0]], *e["loc"][1:])), e["msg"])
                       for e in exc.errors()]
        try:
            relationships = _RELATIONSHIPS.validate_python(
                _parse_list(self.relationships, relationship_positions, "relationships"))
        except ValidationError as exc:
            errors += [field_error(_field(("relationships", relationship_positions[e["loc"][0]], *e["loc"][1:])),
                                   e["msg"]) for e in exc.errors()]
        if errors:
            raise _invalid(errors)
        return list(zip(item_indexes, items)), list(zip(relationship_positions, relationships))


def _parse_list(raws: list[bytes], positions: list[int], name: str) -> list[Any]:
    """The values at `positions`, parsed as one list; one nested too deeply is named by its position."""
    try:
        return _parse(b"[" + b",".join(raws[p] for p in positions) + b"]")
    except NestedTooDeeply:
        for position in positions:
            _parse(raws[position], f"{name}.{position}")
        raise
