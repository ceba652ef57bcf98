"""A real webhook receiver for the tests, run as its own program: an HTTP server that checks each
delivery's signature with the README's snippet (read from README.md and run as written), appends what
it got as one JSON line to a file (flushed to disk before it answers, so an acknowledged delivery is
always on file), and answers the status written in a control file (200 when there is none).

    python webhook_receiver.py PORT OUT_FILE SECRET README [STATUS_FILE]
"""

import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 32 * 1024 * 1024


def readme_snippet(readme: Path) -> str:
    """The Python block of the README's webhook section: the code an operator copies."""
    text = readme.read_text()
    section = text[text.index("### Webhooks: changes go out"):]
    section = section[:section.index("\n## ")]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def main() -> None:
    port, out, secret, readme = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    status_file = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    namespace: dict = {}
    exec(compile(readme_snippet(readme), "README.md", "exec"), namespace)  # noqa: S102 - the snippet under test
    check = namespace["karta_signature_ok"]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(length, MAX_BODY))
            if len(body) < min(length, MAX_BODY):  # the sender went away mid-body: acknowledge nothing
                self.close_connection = True
                return
            status = int(status_file.read_text().strip() or 200) if status_file and status_file.exists() else 200
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {}
            entry = {
                "path": self.path, "status": status,
                "signature_ok": check(secret, self.headers.get("X-Karta-Signature", ""), body),
                "tampered_ok": check(secret, self.headers.get("X-Karta-Signature", ""), body + b" "),
                "delivery_header": self.headers.get("X-Karta-Delivery"),
                "webhook_header": self.headers.get("X-Karta-Webhook"),
                "delivery_id": payload.get("delivery_id"), "webhook_id": payload.get("webhook_id"),
                "attempt": payload.get("attempt"), "first_seq": payload.get("first_seq"),
                "last_seq": payload.get("last_seq"),
                "records": [{key: r[key] for key in ("seq", "object_type", "object_id", "action")} | {"diff": sorted(r["diff"])}
                            for r in payload.get("records", [])],
            }
            with lock, out.open("a") as file:
                file.write(json.dumps(entry) + "\n")
                file.flush()
                os.fsync(file.fileno())
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
