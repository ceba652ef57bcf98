"""The CI list's query, shared by every route that selects CIs the way GET /api/v1/cis does (the CSV
export, the Ansible inventory, Prometheus targets): `attr.<key>=<value>` filters, and no parameter the
route does not know (a typo is a 422, never a filter silently dropped)."""

from fastapi import Request

from app.services.errors import InvalidInput, field_error

MAX_ATTRIBUTE_FILTERS = 20


def attribute_filters(request: Request, known: set[str]) -> dict[str, str]:
    """The `attr.<key>=<value>` filters of the query; any other parameter not in `known` is refused."""
    found: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in known:
            continue
        name = key.removeprefix("attr.")
        if name == key or not name:
            raise InvalidInput(f"Unknown query parameter '{key}'. Parameters: {', '.join(sorted(known))}, attr.<key>.",
                               [field_error(f"query.{key}", "unknown parameter")])
        if any(char in name for char in '"\\\x00') or "\x00" in value:
            raise InvalidInput(f"Attribute filter '{key}' has a quote, backslash or NUL character.",
                               [field_error(f"query.{key}", "quote, backslash or NUL in the key or value")])
        found[name] = value
        if len(found) > MAX_ATTRIBUTE_FILTERS:
            raise InvalidInput(f"At most {MAX_ATTRIBUTE_FILTERS} attr.<key> filters per request.",
                               [field_error("query", "too many attribute filters")])
    return found
