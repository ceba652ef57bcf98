"""Benchmark: webhook delivery throughput, a real `karta serve` delivering to the real test receiver
(tests/integrations/webhook_receiver.py: checks each signature, appends to a file and fsyncs before it
answers 200).

For each backend: subscribe S webhooks (no filters), ingest N servers through /api/v1/ingest in
batches of 1,000 while the worker delivers, then wait until every subscription's cursor reaches the
feed's head. Reports records delivered per second (all subscriptions together) from the first ingest
to the last acknowledgement, and how far delivery trailed the end of the ingest.

    python bench/webhooks_bench.py [--records 20000] [--subscriptions 1,10] [--backends sqlite,postgresql]
"""

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core import migrations
from app.core.db import make_engine
from bench.common import fresh_database
from tests.conftest import create_tokens
from tests.server import free_port, running_server

RECEIVER = Path(__file__).resolve().parent.parent / "tests" / "integrations" / "webhook_receiver.py"
README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = "bench-secret-0123456789"


def run(backend: str, records: int, subscriptions: int, workdir: Path) -> dict:
    url = fresh_database(backend, f"karta_bench_webhooks_{subscriptions}", workdir)
    engine = make_engine(url)
    migrations.upgrade(engine)
    headers = {"Authorization": f"Bearer {create_tokens(engine)['admin']}"}
    engine.dispose()
    port = free_port()
    out = workdir / f"received-{backend}-{subscriptions}.jsonl"
    out.unlink(missing_ok=True)
    receiver = subprocess.Popen([sys.executable, str(RECEIVER), str(port), str(out), SECRET, str(README)],
                                stdout=subprocess.PIPE, text=True)
    assert receiver.stdout.readline().strip() == "ready"
    try:
        with running_server(url, env={"KARTA_WEBHOOK_POLL_SECONDS": "0.5"}) as base, \
                httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            hooks = [client.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/{i}", "secret": SECRET,
                                                            "filters": {"object_types": ["ci"]}}).json()["id"]
                     for i in range(subscriptions)]
            started = time.monotonic()
            for first in range(0, records, 1000):
                names = [f"host-{i}" for i in range(first, min(records, first + 1000))]
                body = {"source": "ssh", "run_id": f"bench-{uuid.uuid4()}", "scope": {"hosts": names},
                        "items": [{"ref": n, "class": "server", "name": n, "identifiers": {"serial_number": f"SN-{n}"}}
                                  for n in names]}
                client.post("/api/v1/ingest", json=body).raise_for_status()
            ingested = time.monotonic()
            head = client.get("/api/v1/changes?limit=1").json()["head_seq"]
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                if all(client.get(f"/api/v1/webhooks/{h}").json()["cursor_seq"] >= head for h in hooks):
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError("deliveries did not catch up within 30 minutes")
            done = time.monotonic()
            deliveries = sum(1 for _ in out.open())
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    delivered = records * subscriptions
    return {"backend": backend, "subscriptions": subscriptions, "records": delivered, "deliveries": deliveries,
            "ingest_s": ingested - started, "total_s": done - started, "trail_s": done - ingested,
            "rate": delivered / (done - started)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--subscriptions", default="1,10")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for backend in args.backends.split(","):
            for subscriptions in map(int, args.subscriptions.split(",")):
                rows.append(run(backend, args.records, subscriptions, Path(directory)))
                print(rows[-1], flush=True)
    print("| backend | subscriptions | records delivered | deliveries | ingest s | until all acknowledged s "
          "| trailing the ingest s | records/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['subscriptions']} | {r['records']:,} | {r['deliveries']:,} | {r['ingest_s']:.1f} "
              f"| {r['total_s']:.1f} | {r['trail_s']:.1f} | {r['rate']:,.0f} |")


if __name__ == "__main__":
    main()
