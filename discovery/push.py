"""Push step: send a batch to ``POST {api_url}/api/v1/ingest`` with the discovery token.

The batch is split (``batch.split_batch``) into requests within the limits the
service enforces (``app/core/batch_contract.py``) sharing one run_id; only the
last carries ``complete``. A request that
fails on the network or with 429/502/503/504 is retried a bounded number of
times with backoff; any other error status ends the push with the server's
problem+json title and detail. The token goes in the Authorization header and
nowhere else: not in messages, not in logs, not in the batch; and never over
plain http to another machine unless the operator said ``insecure``
(``api_access.check_api_url``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import orjson

from app.core.batch_contract import MAX_ITEMS
from discovery.api_access import check_api_url, uses_proxy
from discovery.batch import split_batch
from discovery.sanitize import clean_text

RETRY_STATUS = frozenset({429, 502, 503, 504})


class PushError(RuntimeError):
    """The service did not accept the batch."""


@dataclass
class PushReport:
    """What the service answered (IngestOutcome, app/models/ingest.py), summed over the run's requests.

    An item copied into two requests (the far end of an edge, see split_batch) is counted by each.
    """

    requests: int = 0
    refs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # created, updated, unchanged, conflicts, errors
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    relationships: dict[str, int] = field(default_factory=dict)  # created, updated, unchanged, errors
    errors: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    ended_relationships: int = 0

    def add(self, answer: dict) -> None:
        self.requests += 1
        self.refs.update(answer.get("refs") or {})
        counts = dict(answer.get("counts") or {})
        for ci_class, per_class in (counts.pop("by_class", None) or {}).items():
            _add(self.by_class.setdefault(ci_class, {}), per_class)
        _add(self.counts, counts)
        _add(self.relationships, answer.get("relationships") or {})
        self.errors += list(answer.get("errors") or [])
        self.conflicts += list(answer.get("conflicts") or [])
        self.stale += list(answer.get("stale") or [])
        ended = answer.get("ended_relationships")
        self.ended_relationships += ended if isinstance(ended, int) else 0


def _add(totals: dict[str, int], counts: dict) -> None:
    for key, value in counts.items():
        if isinstance(value, int) and not isinstance(value, bool):
            totals[key] = totals.get(key, 0) + value


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return clean_text(response.text, 300)
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("title", "detail") if body.get(k)]
        return clean_text(": ".join(parts) or body, 300)
    return clean_text(body, 300)


class IngestClient:
    def __init__(self, api_url: str, token: str, *, insecure: bool = False, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0, transport: httpx.BaseTransport | None = None) -> None:
        check_api_url(api_url, insecure=insecure)
        self.url = api_url.rstrip("/") + "/api/v1/ingest"
        self.retries = max(0, retries)
        self.backoff = backoff
        self._client = httpx.Client(
            timeout=timeout, transport=transport, trust_env=uses_proxy(api_url),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                     "User-Agent": "karta-discovery"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _post(self, body: dict) -> dict:
        # Sorted keys: the same report is the same bytes, which the service confirms without re-deriving.
        content = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._client.post(self.url, content=content)
            except httpx.TransportError as exc:
                if last:
                    raise PushError(f"cannot reach {self.url}: {type(exc).__name__}") from exc
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise PushError("ingest answered 200 with a body that is not JSON") from exc
                if response.status_code not in RETRY_STATUS or last:
                    raise PushError(f"ingest refused the batch: HTTP {response.status_code} {_problem(response)}")
            time.sleep(self.backoff * (2 ** attempt))
        raise PushError("unreachable")  # the loop always returns or raises

    def push(self, batch: dict, *, limit: int = MAX_ITEMS) -> PushReport:
        report = PushReport()
        for body in split_batch(batch, limit):
            report.add(self._post(body))
        return report
