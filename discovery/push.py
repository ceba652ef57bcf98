"""Push step: send a batch to ``POST {api_url}/api/v1/ingest`` with the discovery token.

The batch is split (``batch.split_batch``) into requests of at most 10,000
items sharing one run_id; only the last carries ``complete``. A request that
fails on the network or with 429/502/503/504 is retried a bounded number of
times with backoff; any other error status ends the push with the server's
problem+json title and detail. The token goes in the Authorization header and
nowhere else: not in messages, not in logs, not in the batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import orjson

from discovery.batch import MAX_ITEMS, split_batch
from discovery.sanitize import clean_text

RETRY_STATUS = frozenset({429, 502, 503, 504})


class PushError(RuntimeError):
    """The service did not accept the batch."""


@dataclass
class PushReport:
    requests: int = 0
    refs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)


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
    def __init__(self, api_url: str, token: str, *, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0, transport: httpx.BaseTransport | None = None) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise ValueError("api_url must start with http:// or https://")
        self.url = api_url.rstrip("/") + "/api/v1/ingest"
        self.retries = max(0, retries)
        self.backoff = backoff
        self._client = httpx.Client(
            timeout=timeout, transport=transport,
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
            answer = self._post(body)
            report.requests += 1
            report.refs.update(answer.get("refs") or {})
            for key, value in (answer.get("counts") or {}).items():
                if isinstance(value, int):
                    report.counts[key] = report.counts.get(key, 0) + value
            report.errors += list(answer.get("errors") or [])
            report.conflicts += list(answer.get("conflicts") or [])
        return report
