"""Benchmark: the web UI's pages on a big estate, as a person's browser asks for them.

Loads the same realistic estate as bench/api_bench.py (100,000 CIs, ~150,000 relationships) straight
into a fresh database, starts `karta serve` (one worker), signs in through /ui/login like a browser
and times, one request at a time (server time as the client sees it over loopback):
  - the CI page, `/ui/cis/{id}`, for random CIs of every class (services include their single
    points of failure and dependency tree);
  - the CI list, `/ui/cis`, with the filters and sorts people use, and a search;
  - a change review, `/ui/impact?ci=...`, whose answer holds about 10,000 CIs (network devices are
    added to the change until it does), page and picture; and, when Chromium is installed, the same
    page in a real browser until its picture is on screen.
On SQLite and on PostgreSQL. Prints a Markdown table, writes bench/results/ui.md.

    python bench/ui_bench.py [--cis 100000] [--requests 300] [--backends sqlite,postgresql]
"""

import argparse
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api_bench import generate_estate, load, make_token  # noqa: E402
from bench.common import fresh_database, served  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LIST_QUERIES = [
    "/ui/cis",
    "/ui/cis?class=server&environment=prod",
    "/ui/cis?class=application&status=active&sort=name",
    "/ui/cis?owner=team-web&sort=-last_seen",
    "/ui/cis?tag=pci&environment=stage",
    "/ui/cis?class=database&sort=-updated_at",
    "/ui/cis?q=web-server-0001",
    "/ui/cis?q=10.0.3.7",
]
TARGET_IMPACTED = 10_000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def signed_in_client(base: str, secret: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60, trust_env=False)
    form = client.get("/ui/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = client.post("/ui/login", data={"token": secret, "csrf_token": csrf, "next": "/ui/"})
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in failed: {answer.status_code}")
    return client


def timed(client: httpx.Client, urls: list[str]) -> list[float]:
    times = []
    for url in urls:
        started = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:300]}")
    return times


def change_of_size(base: str, secret: str, devices: list[str], target: int) -> tuple[list[str], int]:
    """Network devices whose change, taken together, impacts at least `target` CIs (a few at a time,
    so it overshoots by little)."""
    headers = {"Authorization": f"Bearer {secret}"}
    chosen: list[str] = []
    impacted = 0
    with httpx.Client(base_url=base, timeout=120, headers=headers, trust_env=False) as api:
        for start in range(0, min(len(devices), 5000), 5):
            chosen += devices[start:start + 5]
            impacted = api.post("/api/v1/impact", json={"ci_ids": chosen}).json()["counts"]["total"]
            if impacted >= target:
                break
    return chosen, impacted


def browser_seconds(base: str, secret: str, url: str, runs: int) -> list[float] | None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(base + "/ui/login?next=/ui/")
        page.get_by_label("API token").fill(secret)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/ui/$"))
        for _ in range(runs):
            started = time.perf_counter()
            page.goto(base + url)
            page.locator("figure.picture svg").first.wait_for(timeout=60_000)
            times.append(time.perf_counter() - started)
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rng = random.Random(20261202)
    cis, relationships = generate_estate(args.cis, rng)
    print(f"generated {len(cis)} CIs, {len(relationships)} relationships", file=sys.stderr)
    sample = [str(row["id"]) for row in rng.sample(cis, args.requests)]
    devices = [str(row["id"]) for row in cis if row["ci_class"] == "network_device"]
    rng.shuffle(devices)
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="karta-bench-ui-"))
    for backend in args.backends.split(","):
        url = fresh_database(backend, "karta_bench_ui", workdir)
        load(url, cis, relationships)
        secret = make_token(url)
        with served({**os.environ, "KARTA_DATABASE_URL": url}, Path(__file__).resolve().parent.parent) as base:
            client = signed_in_client(base, secret)
            timed(client, [f"/ui/cis/{ci}" for ci in sample[:30]] + LIST_QUERIES)  # warm-up
            rows.append((backend, "CI page `/ui/cis/{id}`", timed(client, [f"/ui/cis/{ci}" for ci in sample])))
            lists = [LIST_QUERIES[n % len(LIST_QUERIES)] for n in range(args.requests)]
            rows.append((backend, "CI list `/ui/cis?...` (8 kinds)", timed(client, lists)))
            change, impacted = change_of_size(base, secret, devices, TARGET_IMPACTED)
            review = "/ui/impact?" + "&".join(f"ci={ci}" for ci in change)
            timed(client, [review])
            rows.append((backend, f"change review, {impacted:,} CIs impacted (page + picture)",
                         timed(client, [review] * 10)))
            in_browser = browser_seconds(base, secret, review, 5)
            if in_browser is not None:
                rows.append((backend, "same change review in Chromium, until the picture shows",
                             [t * 1000 for t in in_browser]))
            for _, label, times in rows[-4:]:
                print(f"{backend} {label}: p50 {statistics.median(times):.1f} ms p99 {percentile(times, 0.99):.1f} ms",
                      file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    lines = [f"Web UI, {len(cis):,} CIs and {len(relationships):,} relationships, `karta serve` 1 worker, one request "
             f"at a time over loopback, on {os.cpu_count()} cores", "",
             "| backend | page | requests | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---:|---:|---:|---:|---:|"]
    for backend, label, times in rows:
        lines.append(f"| {backend} | {label} | {len(times)} | {statistics.median(times):.1f} | "
                     f"{percentile(times, 0.95):.1f} | {percentile(times, 0.99):.1f} | {max(times):.1f} |")
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ui.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
