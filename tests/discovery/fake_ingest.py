"""A stand-in for ``POST /api/v1/ingest`` that fails on the network the way the real service cannot be
made to on demand: 503 for the first ``fail_first`` requests, or an answer ``delay`` seconds late.

Everything else (what the service accepts, refuses and answers) is tested against the real service
(test_push.py, test_cli.py). So that the stand-in cannot drift into a shape the service never sends,
its 200 answer is validated by the service's own response model (IngestOutcome).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app.models.ingest import IngestOutcome


def accepted(body: dict) -> dict:
    """An answer of the real shape: every item created."""
    created = len(body["items"])
    return IngestOutcome(
        run_id=body["run_id"], source=body["source"], dry_run=False, applied=True,
        counts={"created": created, "updated": 0, "unchanged": 0, "conflicts": 0, "errors": 0, "by_class": {}},
        relationships={"created": len(body["relationships"]), "updated": 0, "unchanged": 0, "errors": 0},
        refs={item["ref"]: str(uuid.uuid4()) for item in body["items"]},
        conflicts=[], errors=[], stale=[], ended_relationships=0,
    ).model_dump()


class FakeIngest:
    def __init__(self, *, fail_first: int = 0, delay: float = 0.0) -> None:
        self.fail_first = fail_first
        self.delay = delay
        self.attempts = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True  # a late answer must not hold up stop()
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeIngest:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _answer(self, status: int, body: dict, content_type: str) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with fake._lock:
                    fake.attempts += 1
                    attempt = fake.attempts
                if attempt <= fake.fail_first:
                    return self._answer(503, {"title": "Service Unavailable", "status": 503},
                                        "application/problem+json")
                time.sleep(fake.delay)
                self._answer(200, accepted(body), "application/json")

        return Handler
