"""A stand-in for Karta's ``POST /api/v1/ingest`` until the real endpoint lands.

It checks the bearer token, records every request body, and answers like the
contract says (refs for every item, counts). ``fail_first`` answers 503 to the
first N requests, ``status`` forces an error status with a problem+json body.
Runs in a thread (``FakeIngest``) or as a process inside a lab namespace:

    python -m tests.discovery.fake_ingest --port 8790 --token T --record FILE --lifetime 300
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeIngest:
    def __init__(self, *, token: str = "test-token", host: str = "127.0.0.1", port: int = 0,
                 fail_first: int = 0, status: int = 200, record: str | None = None) -> None:
        self.token = token
        self.fail_first = fail_first
        self.status = status
        self.record = record
        self.requests: list[dict] = []
        self.attempts = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeIngest:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> FakeIngest:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _answer(self, status: int, body: dict, content_type: str = "application/json") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, 64 * 1024 * 1024))
                with fake._lock:
                    fake.attempts += 1
                    attempt = fake.attempts
                if self.path != "/api/v1/ingest":
                    return self._answer(404, {"title": "Not Found"}, "application/problem+json")
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._answer(401, {"title": "Unauthorized", "detail": "bad token"},
                                        "application/problem+json")
                if attempt <= fake.fail_first:
                    return self._answer(503, {"title": "Service Unavailable"}, "application/problem+json")
                if fake.status != 200:
                    return self._answer(fake.status, {"title": "Unprocessable", "detail": "items[0]: bad class"},
                                        "application/problem+json")
                body = json.loads(raw)
                with fake._lock:
                    fake.requests.append(body)
                    if fake.record:
                        with open(fake.record, "a", encoding="utf-8") as handle:
                            handle.write(json.dumps(body) + "\n")
                self._answer(200, {
                    "run_id": body["run_id"],
                    "refs": {item["ref"]: str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(item["identifiers"],
                                                                                      sort_keys=True)))
                             for item in body["items"]},
                    "counts": {"items": len(body["items"]), "relationships": len(body["relationships"])},
                    "errors": [], "conflicts": [],
                })

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--lifetime", type=float, default=300)
    args = parser.parse_args()
    with FakeIngest(token=args.token, host=args.host, port=args.port, record=args.record):
        time.sleep(args.lifetime)


if __name__ == "__main__":
    main()
