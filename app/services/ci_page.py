"""Reads the page of one CI needs beyond cis.get_ci_detail and changes.object_history: the CI's
identifiers, the ends of the relationships its history names, the CI's own changes since a version
(an edit that met someone else's), and the tree of what a service depends on.

Every read is one indexed query, bounded in rows: the page must stay fast on a big estate."""

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from app.models import (
    ChangeRecord,
    CIIdentifier,
    ConfigurationItem,
    EndedRelationship,
    Relationship,
)
from app.services.bulk import id_in
from app.services.changes import to_public as change_to_public
from app.services.identifiers import PART_SEPARATOR

CI = ConfigurationItem.__table__
IDENT = CIIdentifier.__table__
CHANGE = ChangeRecord.__table__
REL = Relationship.__table__
ENDED = EndedRelationship.__table__

MAX_IDENTIFIERS = 200
# An edit that met other changes merges over at most this many of them (each one small).
MAX_CHANGES_SINCE = 1000


def ci_name(conn: Connection, ci_id: uuid.UUID) -> str | None:
    """The CI's name; None once it is deleted (its history stays readable)."""
    return conn.execute(select(CI.c.name).where(CI.c.id == ci_id)).scalar()


def identifiers_of(conn: Connection, ci_id: uuid.UUID, *, limit: int = MAX_IDENTIFIERS) -> dict[str, Any]:
    """The identifier index rows the CI holds: {"items": [{"family", "key", "value"}], "truncated"}.
    A composite rule's value (name + environment) shows its parts joined by " / "."""
    rows = conn.execute(select(IDENT.c.family, IDENT.c.key, IDENT.c.value).where(IDENT.c.ci_id == ci_id)
                        .order_by(IDENT.c.key, IDENT.c.value).limit(limit + 1)).all()
    items = [{"family": family, "key": key, "value": value.replace(PART_SEPARATOR, " / ")}
             for family, key, value in rows[:limit]]
    return {"items": items, "truncated": len(rows) > limit}


def relationship_ends(conn: Connection, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """{relationship id: {"source", "target", "type"}} for live relationships, and {"source",
    "target", "type": None} for ended ones (ended_relationship keeps only the ends)."""
    wanted = set(ids)
    if not wanted:
        return {}
    ends: dict[uuid.UUID, dict[str, Any]] = {}
    for rel_id, source, target, rel_type in conn.execute(
            select(REL.c.id, REL.c.source_id, REL.c.target_id, REL.c.type).where(id_in(conn, REL.c.id, wanted))):
        ends[rel_id] = {"source": source, "target": target, "type": rel_type}
    missing = wanted - ends.keys()
    if missing:
        for rel_id, source, target in conn.execute(
                select(ENDED.c.relationship_id, ENDED.c.source_id, ENDED.c.target_id)
                .where(id_in(conn, ENDED.c.relationship_id, missing))):
            ends[rel_id] = {"source": source, "target": target, "type": None}
    return ends


def changes_since(conn: Connection, ci_id: uuid.UUID, version: int, current_version: int, *,
                  limit: int = MAX_CHANGES_SINCE) -> dict[str, Any]:
    """What changed on the CI after `version`, up to `current_version`: {"items": its change records,
    newest first (at most `limit`), "more": how many older ones were left out, "fields": {field:
    [value at `version`, value now]} over the records listed (complete when "more" is 0)}.

    Every version step is exactly one change record of the CI itself (the API's edits, ingest's
    updates, staleness), so the records since `version` are the CI's newest `current - version`."""
    count = max(0, current_version - max(version, 0))
    if count == 0:
        return {"items": [], "more": 0, "fields": {}}
    rows = conn.execute(select(CHANGE).where(CHANGE.c.object_id == ci_id, CHANGE.c.object_type == "ci")
                        .order_by(CHANGE.c.seq.desc()).limit(min(count, limit))).mappings().all()
    items = [change_to_public(row) for row in rows]
    fields: dict[str, list[Any]] = {}
    for record in reversed(items):  # oldest first: the first old value is the one the editor saw
        for name, (old, new) in (record["diff"] or {}).items():
            fields[name] = [fields[name][0] if name in fields else old, new]
    fields = {name: pair for name, pair in sorted(fields.items()) if pair[0] != pair[1]}
    return {"items": items, "more": max(0, count - len(items)), "fields": fields}


@dataclass
class TreeNode:
    id: str
    label: str  # the relationship, read from the dependent's side ("runs on")
    children: list["TreeNode"] = field(default_factory=list)
    repeated: bool = False  # already shown elsewhere in the tree: not expanded again


@dataclass
class Tree:
    children: list[TreeNode]
    shown: list[str]  # CI ids in the tree, in the order they were reached
    truncated: bool  # some providers were left out (past max_nodes)


def dependency_tree(root: str, edges: Iterable[tuple], flips: Callable[[str], bool],
                    label: Callable[[str, bool], str], *, max_depth: int, max_nodes: int) -> Tree:
    """What `root` depends on, as a tree, from the relationships among its providers ((source,
    target, type) as recorded, e.g. ImpactGraph.neighborhood(root, direction="up")).

    `flips(type)`: the type's impact flows target -> source (A depends_on B: B provides). `label(type,
    dependent_is_source)` names the relationship from the dependent's side. Built breadth first so a
    bound keeps the nearest providers: a CI reached again is listed as repeated, not expanded, and
    past `max_nodes` entries the rest are left out (which ones: by id, deterministic; the page
    orders what it shows by name)."""
    providers: dict[str, list[tuple[str, str, bool]]] = {}
    for source, target, rel_type in edges:
        dependent, provider = (source, target) if flips(rel_type) else (target, source)
        if dependent != provider:
            providers.setdefault(dependent, []).append((provider, rel_type, dependent == source))
    top = TreeNode(root, "")
    expanded, shown, truncated = {root}, [], False
    frontier = [(top, 0)]
    while frontier:
        next_frontier = []
        for node, depth in frontier:
            if depth >= max_depth:
                continue
            for provider, rel_type, from_source in sorted(providers.get(node.id, ())):
                if len(shown) >= max_nodes:
                    truncated = True
                    break
                child = TreeNode(provider, label(rel_type, from_source), repeated=provider in expanded)
                node.children.append(child)
                shown.append(provider)
                if not child.repeated:
                    expanded.add(provider)
                    next_frontier.append((child, depth + 1))
        frontier = next_frontier
    return Tree(top.children, shown, truncated)
