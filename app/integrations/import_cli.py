"""`karta import FILE [--class C] [--dry-run] [--relationships]`: send a spreadsheet or bundle to
POST /api/v1/import and print its per-row report readably.

An HTTP client like the discovery agent: the URL from --url or KARTA_URL, the token from KARTA_TOKEN or
--token-file (never the command line), https for any host but this machine (discovery/api_access.py).
The file goes as one request, because the import is one transaction (all or nothing): cutting it into
chunks would let half of it apply. On a terminal a progress bar follows the upload, then a spinner
while Karta applies it. Text from the report (names, values) is cleaned of control characters before
it reaches the terminal.

Exit status: 0 when every row applied (or would, dry); 1 when rows have errors (nothing applied);
2 when the request could not be made or was refused as a whole.

It must never import the service (SQLAlchemy, FastAPI): it runs on operators' laptops and in cron.
"""

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

from discovery.api_access import check_api_url, resolve_token, uses_proxy
from discovery.sanitize import clean_text

EXIT_OK, EXIT_ROWS, EXIT_FAILED = 0, 1, 2
CHUNK = 256 * 1024
MEDIA_TYPES = {".csv": "text/csv", ".tsv": "text/csv", ".txt": "text/csv", ".json": "application/json",
               ".yaml": "application/yaml", ".yml": "application/yaml"}
SHOWN = 50  # values per diff printed before "..."


def run(file: Path, *, ci_class: str | None, dry_run: bool, relationships: bool, url: str | None,
        token_file: Path | None, insecure: bool, all_or_nothing: bool = True, timeout: float = 900.0,
        out: Console | None = None, err: Console | None = None) -> int:
    out = out or Console(highlight=False, soft_wrap=True)
    err = err or Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        base = check_api_url(url or os.environ.get("KARTA_URL") or "", insecure=insecure)
        token, warnings = resolve_token(option=None, token_file=token_file)
        media_type = MEDIA_TYPES.get(file.suffix.lower())
        if media_type is None:
            raise ValueError(f"{file.name}: name a .csv, .json or .yaml file (the suffix says its format)")
        size = file.stat().st_size
    except (ValueError, OSError) as exc:
        err.print(f"karta import: {exc}", markup=False)
        return EXIT_FAILED
    for warning in warnings:
        err.print(f"karta import: {warning}", markup=False)
    if not token:
        err.print("karta import: set KARTA_TOKEN or give --token-file (a token with scope write)", markup=False)
        return EXIT_FAILED
    params = {"dry_run": dry_run, "relationships": relationships, "all_or_nothing": all_or_nothing}
    if ci_class:
        params["class"] = ci_class
    try:
        response = _send(base.rstrip("/") + "/api/v1/import", file, size, media_type, token, params, timeout, err)
    except (httpx.HTTPError, OSError) as exc:
        err.print(f"karta import: cannot reach {base}: {type(exc).__name__}", markup=False)
        return EXIT_FAILED
    return _answer(response, out, err)


def _send(endpoint: str, file: Path, size: int, media_type: str, token: str, params: dict, timeout: float,
          err: Console) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": media_type, "Content-Length": str(size),
               "User-Agent": "karta-import"}
    with httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), trust_env=uses_proxy(endpoint)) as client, \
            Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                     TransferSpeedColumn(), console=err, disable=not err.is_terminal, transient=True) as progress:
        task = progress.add_task(f"sending {file.name}", total=size)

        def body() -> Iterator[bytes]:
            with file.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    progress.advance(task, len(chunk))
                    yield chunk
            progress.update(task, description="Karta is importing", total=None)

        return client.post(endpoint, params=params, content=body(), headers=headers)


def _answer(response: httpx.Response, out: Console, err: Console) -> int:
    try:
        body = response.json()
    except ValueError:
        err.print(f"karta import: HTTP {response.status_code}: {clean_text(response.text, 300)}", markup=False)
        return EXIT_FAILED
    report = body.get("report") if response.status_code == 422 and isinstance(body.get("report"), dict) else None
    if response.status_code != 200 and report is None:
        detail = clean_text(body.get("detail") or body, 500) if isinstance(body, dict) else clean_text(body, 500)
        err.print(f"karta import: HTTP {response.status_code}: {detail}", markup=False)
        for problem in (body.get("errors") or [])[:50] if isinstance(body, dict) else []:
            err.print(f"  {clean_text(problem.get('field'), 100)}: {clean_text(problem.get('message'), 300)}", markup=False)
        return EXIT_FAILED
    report = report or body
    print_report(report, out)
    return EXIT_ROWS if report.get("errors") else EXIT_OK


def print_report(report: dict[str, Any], out: Console) -> None:
    """Every row that changes or fails, one line each (diffs indented below), then the counts."""
    for kind, rows in (("row", report.get("rows") or []), ("relationship row", report.get("relationships") or [])):
        for row in rows:
            action = row.get("action")
            if action == "unchanged":
                continue
            ci = f" {row['ci']}" if row.get("ci") else ""
            out.print(f"{kind} {row.get('row')}: {action}{ci}", markup=False)
            for name, change in list((row.get("diff") or {}).items())[:SHOWN]:
                if name in ("first_seen", "last_seen"):
                    continue
                old, new = change if isinstance(change, list) and len(change) == 2 else (None, change)
                out.print(f"    {clean_text(name, 100)}: {clean_text(old, 80)} -> {clean_text(new, 80)}", markup=False)
            for problem in row.get("errors") or []:
                out.print(f"    {clean_text(problem.get('column'), 100)}: {clean_text(problem.get('reason'), 300)}",
                          markup=False)
    verb = "would be" if report.get("dry_run") else ("were" if report.get("applied") else "would have been")
    for label, counts in (("CIs", report.get("counts") or {}), ("relationships", report.get("relationship_counts") or {})):
        if any(counts.values()):
            out.print(f"{label}: {counts.get('create', 0)} created, {counts.get('update', 0)} updated, "
                      f"{counts.get('unchanged', 0)} unchanged {verb}; {counts.get('error', 0)} with errors", markup=False)
    if report.get("errors") and not report.get("dry_run") and not report.get("applied"):
        out.print("nothing was imported: fix the rows above (or send all_or_nothing=false)", markup=False)
    sys.stdout.flush()
