"""The OpenAPI description (/openapi.json) made whole: other tools generate their clients from it, so
it must describe the API exactly and resolve on its own.

FastAPI's document is finished here in three ways, once, when it is first asked for:
- Schemas given as JSON Schema (the ingest body, from `IngestBatch.model_json_schema()`) keep their
  definitions in `$defs` with `#/$defs/...` references, which resolve against the document's root and
  so lead nowhere: the definitions move to `components/schemas` and the references follow them, and
  the body itself becomes a component named by its title, as FastAPI names the bodies it declares
  (a generated client then calls it IngestBatch).
- FastAPI's OpenAPI model holds `minimum`/`maximum` as floats: 2**63 - 1 (the largest integer Karta
  stores) came out as 2**63, which the API refuses. Integer bounds are written back as integers.
- The pictures and exports some operations answer with, chosen by their `format` parameter, are
  listed beside JSON as the response's other media types.
- Links say which response supplies the id another operation needs (a created CI's `id` is the
  `ci_id` of GET /cis/{ci_id}), for clients and for stateful testers such as schemathesis.

This module never changes what the API accepts: the models do, and the document follows them.
"""

from typing import Any

from fastapi import FastAPI

from app.services.storable import INT64_MAX

REF_PREFIX = "#/components/schemas/"
_LOCAL_DEFS = "#/$defs/"

# (method, path, status) of a response -> links: name -> (method, path of the target operation,
# its parameters as runtime expressions, description).
_CI = "$response.body#/id"
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str], str]]] = {
    ("post", "/api/v1/cis", "201"): {
        "GetCI": ("get", "/api/v1/cis/{ci_id}", {"ci_id": _CI}, "The CI created, with its relationships"),
        "UpdateCI": ("patch", "/api/v1/cis/{ci_id}", {"ci_id": _CI}, "Change the CI created"),
        "DeleteCI": ("delete", "/api/v1/cis/{ci_id}", {"ci_id": _CI}, "Delete the CI created"),
        "CIHistory": ("get", "/api/v1/cis/{ci_id}/history", {"ci_id": _CI}, "The CI's change records"),
        "CISinglePointsOfFailure": ("get", "/api/v1/cis/{ci_id}/spof", {"ci_id": _CI},
                                    "What the CI's availability hangs on"),
        "CINeighborhood": ("get", "/api/v1/cis/{ci_id}/neighborhood", {"ci_id": _CI}, "The CI's surroundings"),
    },
    ("patch", "/api/v1/cis/{ci_id}", "200"): {
        "GetCI": ("get", "/api/v1/cis/{ci_id}", {"ci_id": _CI}, "The CI changed"),
    },
    ("post", "/api/v1/relationships", "201"): {
        "GetRelationship": ("get", "/api/v1/relationships/{relationship_id}", {"relationship_id": _CI},
                            "The relationship created"),
        "DeleteRelationship": ("delete", "/api/v1/relationships/{relationship_id}", {"relationship_id": _CI},
                               "End the relationship created"),
        "GetSource": ("get", "/api/v1/cis/{ci_id}", {"ci_id": "$response.body#/source"}, "The source CI"),
        "GetTarget": ("get", "/api/v1/cis/{ci_id}", {"ci_id": "$response.body#/target"}, "The target CI"),
    },
    ("post", "/api/v1/tokens", "201"): {
        "RevokeToken": ("delete", "/api/v1/tokens/{token_id}", {"token_id": _CI}, "Revoke the token created"),
    },
    ("post", "/api/v1/classes", "201"): {
        "GetClass": ("get", "/api/v1/classes/{name}", {"name": "$response.body#/name"}, "The class created"),
        "UpdateClass": ("patch", "/api/v1/classes/{name}", {"name": "$response.body#/name"}, "Change the class created"),
    },
    # `refs` maps each ref of the batch to its CI's id; a runtime expression can only name a fixed key
    # (a JSON pointer), so GET /cis/{ci_id} is reached from it by the client (see the response's text).
    ("post", "/api/v1/ingest", "200"): {
        "GetRun": ("get", "/api/v1/discovery/runs/{run_id}", {"run_id": "$response.body#/run_id"},
                   "The discovery run this batch belongs to"),
    },
}
# Media types an operation answers with besides JSON (app/api/impact.py picks one by `format`).
_TEXT = {"schema": {"type": "string"}}
OTHER_MEDIA_TYPES = {
    ("post", "/api/v1/impact"): ("text/vnd.graphviz", "image/svg+xml"),
    ("post", "/api/v1/blast-radius"): ("text/vnd.graphviz", "image/svg+xml"),
    ("get", "/api/v1/cis/{ci_id}/neighborhood"): ("text/vnd.graphviz", "application/graphml+xml"),
}
INGEST_REFS = ("`refs` maps each item's ref to its CI's id: pass `refs[ref]` as `ci_id` to "
               "GET /api/v1/cis/{ci_id}.")


def install(app: FastAPI) -> None:
    """Serve the finished document at /openapi.json (and to /docs)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(generate())
        return app.openapi_schema

    app.openapi = openapi


def finish(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _name_inline_bodies(document, schemas)
    _hoist_definitions(document, schemas)
    _integer_bounds(document)
    _add_media_types(document)
    _add_links(document)
    return document


def _name_inline_bodies(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    for operations in document["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            schema = content.get("schema", {})
            if "$defs" in schema and schema.get("title") and schema["title"] not in schemas:
                schemas[schema["title"]] = schema
                content["schema"] = {"$ref": REF_PREFIX + schema["title"]}


def _hoist_definitions(node: Any, schemas: dict[str, Any]) -> None:
    """Move every `$defs` into components/schemas and point its references there."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for name, definition in item.pop("$defs", {}).items():
                if name in schemas and schemas[name] != definition:
                    # Another model of the same name: a silent overwrite would misdescribe one of them.
                    raise ValueError(f"Two different schemas named {name!r} in the OpenAPI document")
                schemas[name] = definition
                stack.append(definition)
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith(_LOCAL_DEFS):
                item["$ref"] = REF_PREFIX + ref.removeprefix(_LOCAL_DEFS)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _integer_bounds(node: Any) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            integer_schemas = [item] if item.get("type") == "integer" else []
            if item.get("if") == {"type": "integer"} and isinstance(item.get("then"), dict):
                integer_schemas.append(item["then"])  # StorableJSON's bounds (models/ci_class.py)
            for schema in integer_schemas:
                for key in ("minimum", "maximum"):
                    bound = schema.get(key)
                    if isinstance(bound, float) and bound.is_integer():
                        # 2**63 - 1 has no float of its own: it became 2**63.
                        schema[key] = INT64_MAX if bound == float(INT64_MAX) else int(bound)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _add_media_types(document: dict[str, Any]) -> None:
    for (method, path), media_types in OTHER_MEDIA_TYPES.items():
        content = document["paths"][path][method]["responses"]["200"]["content"]
        content.update({media_type: _TEXT for media_type in media_types})


def _add_links(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for (method, path, status), links in LINKS.items():
        response = paths[path][method]["responses"][status]
        response["links"] = {
            name: {"operationId": paths[target_path][target_method]["operationId"],
                   "parameters": parameters, "description": description}
            for name, (target_method, target_path, parameters, description) in links.items()
        }
    ingest_ok = paths["/api/v1/ingest"]["post"]["responses"]["200"]
    ingest_ok["description"] = f"{ingest_ok['description']}. {INGEST_REFS}"
