"""Karta's outgoing webhook: the body of a delivery, its headers and its signature.

This is Karta's own format (there is no standard for CMDB change webhooks); the signature follows the
scheme of Stripe's webhooks (https://docs.stripe.com/webhooks#verify-manually): an HMAC-SHA256
(RFC 2104) over `timestamp + "." + body`, so a receiver can refuse an old delivery replayed later.

A delivery is one HTTP POST of JSON:

    POST /your/path HTTP/1.1
    Content-Type: application/json
    User-Agent: Karta-Webhooks/1
    X-Karta-Webhook: 6f1c0f7e-3b57-4d4e-9c55-0d6c1b5a2e10
    X-Karta-Delivery: 0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b
    X-Karta-Signature: t=1764690000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

    {"webhook_id": "6f1c0f7e-3b57-4d4e-9c55-0d6c1b5a2e10",
     "delivery_id": "0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b",
     "attempt": 1, "first_seq": 41, "last_seq": 42,
     "records": [
       {"seq": 41, "at": "2026-12-02T15:40:00+00:00", "actor": "ops-bot", "object_type": "ci",
        "object_id": "0193a1b2-...", "action": "update", "diff": {"owner": ["team-a", "team-b"]}},
       {"seq": 42, ...}]}

- `records` are change records exactly as GET /api/v1/changes gives them, in seq order, the ones the
  subscription's filters match; at most KARTA_WEBHOOK_BATCH_RECORDS of them and about
  KARTA_WEBHOOK_BATCH_BYTES of JSON (a single record larger than that still goes, alone).
- `delivery_id` is new for every attempt; `attempt` counts the attempts since the last success (1 when
  the previous delivery succeeded). Delivery is at least once: a record is sent again only when no 2xx
  for it was recorded (the receiver did not answer 2xx, or Karta stopped between the answer and its
  commit). A receiver that must act once keeps the highest `seq` it processed and skips records at or
  below it: seqs only grow, per subscription, across deliveries.
- The receiver answers any 2xx to acknowledge; anything else (3xx included: redirects are not followed),
  a timeout or a refused connection is a failure, retried later with exponential backoff and jitter.
- `X-Karta-Signature`: `t` is the Unix time of signing, `v1` the lowercase hex HMAC-SHA256 of
  `f"{t}.".encode() + body` with the subscription's secret (UTF-8). Check it over the raw body bytes,
  compare in constant time, and refuse a `t` far from now (5 minutes is usual).

This module only translates: it never reads the database and never sends anything.
"""

import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

SIGNATURE_HEADER = "X-Karta-Signature"
DELIVERY_HEADER = "X-Karta-Delivery"
WEBHOOK_HEADER = "X-Karta-Webhook"
USER_AGENT = "Karta-Webhooks/1"
SIGNATURE_TOLERANCE_SECONDS = 300


def record_json(record: dict[str, Any]) -> bytes:
    """One change record as the body holds it (orjson writes UUIDs and datetimes as the feed does)."""
    return orjson.dumps(record)


def body(webhook_id: uuid.UUID, delivery_id: uuid.UUID, attempt: int, encoded_records: Sequence[bytes],
         first_seq: int, last_seq: int) -> bytes:
    """The delivery's JSON body, from records already encoded by record_json (the batch was measured
    with them, so they are not encoded twice)."""
    head = orjson.dumps({"webhook_id": webhook_id, "delivery_id": delivery_id, "attempt": attempt,
                         "first_seq": first_seq, "last_seq": last_seq})
    return head[:-1] + b',"records":[' + b",".join(encoded_records) + b"]}"


def signature(secret: str, body_bytes: bytes, timestamp: int | None = None) -> str:
    """The X-Karta-Signature header's value."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body_bytes, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def headers(webhook_id: uuid.UUID, delivery_id: uuid.UUID, secret: str, body_bytes: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        WEBHOOK_HEADER: str(webhook_id),
        DELIVERY_HEADER: str(delivery_id),
        SIGNATURE_HEADER: signature(secret, body_bytes),
    }
