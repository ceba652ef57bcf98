"""/ui/cis: the CI list. Filters (class with its subclasses, status, environment, owner, tag, no owner),
a search box, sorting and cursor pagination, with a total count: a GET form, so every view is a URL to
bookmark or paste into a ticket. htmx swaps the filters and the table together (so they never disagree);
without JavaScript the same URL gives the whole page.

The search box (`q`) asks app.services.search (names, identifiers such as an IP address or a MAC, and
attribute values) for its best SEARCH_LIMIT matches and lists those, filtered and sorted like any list,
each with what it matched."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.core.db import read_transaction
from app.models.ci import CIStatus
from app.services import cis
from app.services.errors import InvalidInput, field_error
from app.services.search import search_cis
from app.web.auth import CurrentUser
from app.web.render import is_htmx, render

router = APIRouter(include_in_schema=False)

DEFAULT_SORT = "name"
PAGE_SIZES = (25, 50, 100)
SEARCH_LIMIT = 200  # best matches of a search that the list shows
# The total is counted exactly up to this many CIs; past it the page says "more than" and offers a
# link that counts them all (a count reads every matching row: 20,000 of them cost SQLite ~80 ms).
COUNT_UP_TO = 5_000
# (public sort key, column heading, the direction a first click sorts in)
COLUMNS = (("name", "Name", ""), ("class", "Class", ""), ("status", "Status", ""), (None, "Environment", ""),
           (None, "Owner", ""), (None, "Tags", ""), ("last_seen", "Last seen", "-"), ("updated_at", "Updated", "-"))
SORT_LABELS = {"name": "Name, A to Z", "-name": "Name, Z to A", "class": "Class", "-class": "Class, reversed",
               "status": "Status", "-status": "Status, reversed", "-last_seen": "Last seen, newest first",
               "last_seen": "Last seen, oldest first", "-updated_at": "Updated, newest first",
               "updated_at": "Updated, oldest first"}

Text = Annotated[str | None, Query(max_length=200)]


@router.get("/ui/cis")
def cis_list(
    request: Request,
    user: CurrentUser,
    ci_class: Annotated[str | None, Query(alias="class", max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    owner: Text = None,
    tag: Text = None,
    no_owner: Annotated[str | None, Query(max_length=5)] = None,
    q: Text = None,
    sort: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: int = 50,
    count: Annotated[str | None, Query(max_length=3)] = None,
):
    if limit not in PAGE_SIZES:
        raise InvalidInput(f"limit is one of {', '.join(map(str, PAGE_SIZES))}.", [field_error("limit", "not offered")])
    if status and status not in CIStatus.__members__:
        raise InvalidInput(f"Unknown status '{status}'.", [field_error("status", "unknown status")])
    filters = {"ci_class": ci_class or None, "status": status or None, "environment": environment or None,
               "owner": owner or None, "tag": tag or None, "no_owner": no_owner in ("1", "true", "on")}
    sort = sort or DEFAULT_SORT
    cis.parse_sort(sort)
    q = (q or "").strip() or None
    state, notice, search = request.app.state, None, None
    up_to = None if count == "all" else COUNT_UP_TO
    with read_transaction(state.engine) as conn:
        if q:
            search = search_cis(conn, state.registry, q, limit=SEARCH_LIMIT, ci_class=filters["ci_class"])
            filters["ids"] = [uuid.UUID(str(result["id"])) for result in search["results"]]
        try:
            result = cis.list_cis(conn, state.registry, limit=limit, cursor=cursor or None, sort=sort, with_total=True,
                                  total_up_to=up_to, **filters)
        except InvalidInput as refused:
            if not sort.endswith("last_seen") or cursor:
                raise
            notice, sort = refused.detail, DEFAULT_SORT
            result = cis.list_cis(conn, state.registry, limit=limit, sort=sort, with_total=True, total_up_to=up_to,
                                  **filters)
        classes = _class_choices(state.registry.get(conn=conn).classes)
    params = {"q": q, "class": filters["ci_class"], "status": filters["status"], "environment": filters["environment"],
              "owner": filters["owner"], "tag": filters["tag"], "no_owner": "1" if filters["no_owner"] else None,
              "sort": None if sort == DEFAULT_SORT else sort, "limit": None if limit == 50 else limit}
    matched = {str(r["id"]): r.get("matched") for r in search["results"]} if search else {}
    # htmx swaps the filters and the table: it gets just those.
    return render(request, "_cis_results.html" if is_htmx(request) else "cis_list.html", {
        "page": result, "params": params, "sort": sort, "limit": limit, "classes": classes,
        "statuses": [s.value for s in CIStatus], "columns": COLUMNS, "sort_labels": SORT_LABELS,
        "page_sizes": PAGE_SIZES, "notice": notice, "matched": matched, "searched": search is not None,
        "search_truncated": bool(search and search.get("truncated")), "search_limit": SEARCH_LIMIT,
        "first_page": not cursor,
    })


def _class_choices(classes: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, label indented by depth) in tree order: a class is listed under its parent."""
    children: dict[str | None, list[str]] = {}
    for name, info in classes.items():
        children.setdefault(info.parent if info.parent in classes else None, []).append(name)
    ordered: list[tuple[str, str]] = []
    stack = [(name, 0) for name in sorted(children.get(None, []), reverse=True)]
    while stack and len(ordered) <= len(classes):  # bounded: each class once
        name, depth = stack.pop()
        ordered.append((name, "\u00a0\u00a0" * depth + classes[name].label))
        stack.extend((child, depth + 1) for child in sorted(children.get(name, []), reverse=True))
    return ordered
