"""`karta alert`: tell Karta a check's state, from a Nagios or Zabbix notification command.

It runs once per notification, so it imports only what it needs (no SQLAlchemy, no FastAPI): this
module, discovery.api_access and httpx. It posts the generic alert form (app/integrations/alerts.py)
to `POST {KARTA_URL}/api/v1/integrations/alerts` with the token from KARTA_TOKEN or --token-file
(never the command line: Nagios logs and `ps` show command lines). Plain http only to this machine.

Exit codes (Nagios logs a notification command's failure with its code):
  0  Karta accepted the state (its incident is printed on one line)
  2  usage error (an option missing or malformed)
  3  configuration error: KARTA_URL or the token missing, or a URL that would send the token in clear text
  4  Karta refused the alert (4xx: a bad token, a scope without write, an invalid field): retrying is useless
  5  Karta could not be reached or answered 5xx, after retries within --timeout
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

OK, USAGE, CONFIG, REFUSED, UNREACHABLE = 0, 2, 3, 4, 5
RETRY_STATUS = frozenset({429, 502, 503, 504})
MAX_OUTPUT = 8192  # what the form takes; a plugin's long output is cut, not refused


def _say(message: str) -> None:
    print(f"karta alert: {message}", file=sys.stderr)


def _labels(pairs: list[str]) -> dict[str, str] | None:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return None
        labels[key] = value
    return labels


def run(*, host: str, service: str | None, state: str, output: str | None, group: str | None, labels: list[str],
        token_file: Path | None, insecure: bool, timeout: float, environ: dict[str, str] | None = None) -> int:
    from discovery.api_access import check_api_url, resolve_token, uses_proxy

    environ = os.environ if environ is None else environ
    parsed = _labels(labels)
    if parsed is None:
        _say("--label takes key=value")
        return USAGE
    url = environ.get("KARTA_URL", "").rstrip("/")
    if not url:
        _say("set KARTA_URL to Karta's base URL (https://karta.example.com)")
        return CONFIG
    try:
        check_api_url(url, insecure=insecure)
        token, warnings = resolve_token(option=None, token_file=token_file, environ=environ)
    except (OSError, ValueError) as exc:
        _say(str(exc))
        return CONFIG
    for warning in warnings:
        _say(warning)
    if not token:
        _say("set KARTA_TOKEN (a token of scope write) or give --token-file")
        return CONFIG
    body = {"host": host, "state": state.upper()}
    if service:
        body["service"] = service
    if output:
        body["output"] = output[:MAX_OUTPUT]
    if group:
        body["group"] = group
    if parsed:
        body["labels"] = parsed
    return _post(f"{url}/api/v1/integrations/alerts", token, body, timeout, trust_env=uses_proxy(url))


def _post(url: str, token: str, body: dict, timeout: float, *, trust_env: bool) -> int:
    import httpx

    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "karta-alert"}
    last = "no attempt"
    with httpx.Client(trust_env=trust_env) as client:
        for attempt in range(4):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                response = client.post(url, json=body, headers=headers, timeout=left)
            except httpx.HTTPError as exc:
                last = f"cannot reach Karta: {type(exc).__name__}"
            else:
                if response.status_code == 200:
                    try:
                        print(_summary(response.json()))
                    except (ValueError, AttributeError, TypeError):  # 200 from something that is not Karta
                        _say(f"the answer from {url} is not Karta's: is KARTA_URL right?")
                        return REFUSED
                    return OK
                if response.status_code not in RETRY_STATUS and response.status_code < 500:
                    _say(f"refused ({response.status_code}): {_problem(response)}")
                    return REFUSED
                last = f"Karta answered {response.status_code}: {_problem(response)}"
            time.sleep(min(0.5 * 2 ** attempt, max(deadline - time.monotonic(), 0)))
    _say(f"{last} (gave up after {timeout:g} s)")
    return UNREACHABLE


def _problem(response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return response.text[:300].replace("\n", " ")
    if not isinstance(problem, dict):
        return str(problem)[:300]
    errors = "; ".join(f"{e.get('field')}: {e.get('message')}"
                       for e in problem.get("errors") or [] if isinstance(e, dict))
    return " ".join(str(part) for part in (problem.get("title"), problem.get("detail"), errors) if part)[:500]


def _summary(incident: dict) -> str:
    counts = incident.get("counts") or {}
    failed = ", ".join(str(ci.get("name") or ci.get("id")) for ci in incident.get("failed") or [])
    radius = incident.get("blast_radius") or {}
    services = ", ".join(f"{s.get('name')} {s.get('state')}" for s in radius.get("services") or [])
    return (f"incident {incident.get('id')} {incident.get('status')}: {counts.get('firing', 0)} firing; "
            f"failed: {failed or 'none'}; services: {services or 'none'}; risk: {radius.get('risk') or 'none'}"
            ).replace("\n", " ")
