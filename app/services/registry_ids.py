"""Stable ids for the registry's objects in the change feed.

Classes and relationship types are named, not numbered, and the precedence rules are one set; change
records name every object by a UUID. Each gets a name-based UUID (v5) in Karta's own namespace, so a
tool can compute it (`uuid5(KARTA_NAMESPACE, "class:server")`) and it never changes.
"""

import uuid

KARTA_NAMESPACE = uuid.UUID("6b617274-612d-4f62-8a65-637473000000")  # fixed forever


def registry_object_id(kind: str, name: str) -> uuid.UUID:
    """The change-record id of a class (`kind` "class"), relationship type or the precedence rule set."""
    return uuid.uuid5(KARTA_NAMESPACE, f"{kind}:{name}")


PRECEDENCE_ID = registry_object_id("precedence", "rules")
