"""The limits of a discovery batch (``POST /api/v1/ingest``) that the service and the agent share.

The service refuses a request beyond them (413 for too many items or relationships, 422 for a field
too long); the agent (``discovery/``) cuts and trims what it sends to fit them. Both sides import
them from here, so the agent can never build a request the service refuses by design.

The agent imports this module at start-up from cron, so it must never import anything but the
standard library: no FastAPI, no SQLModel, no pydantic, nothing from the rest of ``app``.
"""

from typing import Final

MAX_ITEMS: Final = 10_000  # items per request; a run sends several requests with one run_id
MAX_RELATIONSHIPS: Final = 50_000  # relationships per request
MAX_NAME: Final = 255  # characters of an item's name (a CI's name)
MAX_REF: Final = 200  # characters of an item's ref, and of a relationship's end
MAX_RUN_ID: Final = 100  # characters of a run_id
MAX_SCOPE_SUBNETS: Final = 10_000  # networks in a batch's scope
MAX_SCOPE_HOSTS: Final = 100_000  # hosts in a batch's scope (every request of a run carries the scope)
