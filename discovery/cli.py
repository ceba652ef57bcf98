"""``karta discover``: the discovery agent's command line (typer app ``discovery.cli:app``).

Commands: ``scan`` (nmap), ``ssh`` (paramiko), ``local`` (this machine), ``snmp``
(network devices, discovery/snmp/) and ``run`` (every scope of a TOML config, for cron). Each either pushes its
batch to the ingest API (``--api-url`` or KARTA_API_URL; the token from
KARTA_TOKEN or ``--token-file``, see api_access.py) or, with ``--dry-run``,
prints it; ``--output`` also writes it.

Exit status: 0 when the run did its job, even if some hosts were down or
refused us; 1 when the run itself failed (nmap could not run, the key is
unusable, the service refused the batch); 2 for bad arguments or config;
75 (EX_TEMPFAIL) when another ``run`` holds the lock.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from discovery.api_access import TOKEN_ON_COMMAND_LINE, Endpoint, resolve_token
from discovery.classify import effective_rules
from discovery.nmapscan import DEFAULT_PORTS, NAME_RESOLUTION, validate_ports, validate_subnets
from discovery.paths import default_known_hosts
from discovery.targets import parse_targets

# The collectors (runner, paramiko) are imported by the commands that run them: `karta alert` and
# `karta inventory` share this program and run once per notification or play (0.16 -> 0.06 s to import).
if TYPE_CHECKING:
    from discovery import runner

app = typer.Typer(help="Discover hosts and applications and send them to Karta.",
                  no_args_is_help=True, add_completion=False)
EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 1, 2, 75

ApiUrl = Annotated[str | None, typer.Option("--api-url", envvar="KARTA_API_URL",
                                            help="Karta base URL, e.g. https://karta.example.org")]
# No envvar on --token: KARTA_TOKEN is read by resolve_token, so only a token typed on the command line
# (visible in ps) earns the deprecation warning.
Token = Annotated[str | None, typer.Option("--token", show_default=False,
                                           help="Deprecated (visible in ps): use KARTA_TOKEN or --token-file.")]
TokenFile = Annotated[Path | None, typer.Option(
    "--token-file", help="File holding the bearer token (scope 'discovery'); else KARTA_TOKEN.")]
Insecure = Annotated[bool, typer.Option(
    "--insecure", help="Allow plain http:// to another machine: the token then travels in clear text.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the batch JSON instead of pushing it.")]
Output = Annotated[Path | None, typer.Option("--output", help="Also write the batch JSON to this file.")]


def _interactive() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"karta discover: {message}", err=True)
    return typer.Exit(code)


def _warn(message: str) -> None:
    typer.echo(f"karta discover: warning: {message}", err=True)


def _endpoint(api_url: str | None, token: str | None, token_file: Path | None, *, insecure: bool, needed: bool,
              config_token_file: Path | None = None) -> Endpoint | None:
    """The service to push to (and look up in), checked; None when it is not needed (a plain dry run)."""
    if not needed:
        if token is not None:
            _warn(TOKEN_ON_COMMAND_LINE)  # unused, but shown in ps all the same
        return None
    try:
        token, warnings = resolve_token(option=token, token_file=token_file, config_token_file=config_token_file)
        for warning in warnings:
            _warn(warning)
        if not api_url or not token:
            raise ValueError("--api-url (KARTA_API_URL) and a token (KARTA_TOKEN or --token-file) are needed "
                             "unless --dry-run")
        return Endpoint(api_url, token, insecure)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc), EXIT_USAGE) from None


def _finish(outcome: runner.ScopeOutcome, *, endpoint: Endpoint | None, dry_run: bool, output: Path | None) -> None:
    """Write, print or push one command's outcome, then exit with the right status."""
    from discovery import runner

    if outcome.batch is not None and not outcome.failed:
        if output is not None:
            runner.write_batch(outcome.batch, output)
        if dry_run:
            sys.stdout.buffer.write(runner.batch_json(outcome.batch))
            sys.stdout.flush()
        else:
            with runner.ingest_client(endpoint) as client:
                runner.push_outcome(outcome, client)
    typer.echo(outcome.summary_line(), err=True)
    if outcome.failed:
        raise typer.Exit(EXIT_FAILED)


def _progress(description: str, total: int | None):
    """A rich progress bar on a terminal; nothing otherwise. Returns (context, advance)."""
    if not _interactive():
        return nullcontext(), lambda *_: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = progress.add_task(description, total=total)
    return progress, lambda *_: progress.advance(task)


@app.command()
def scan(
    subnet: Annotated[list[str], typer.Option("--subnet", help="CIDR to scan; repeat for more.")],
    ports: Annotated[str, typer.Option(help="TCP ports, e.g. 22,80,8000-8100.")] = DEFAULT_PORTS,
    service_versions: Annotated[bool, typer.Option("--service-versions", help="Probe versions (nmap -sV).")] = False,
    exclude: Annotated[str | None, typer.Option(help="Addresses to skip, comma-separated.")] = None,
    names: Annotated[str, typer.Option(
        help="Reverse DNS: system (nsswitch), nmap (its parallel resolver) or off.")] = "system",
    api_url: ApiUrl = None, token_file: TokenFile = None, insecure: Insecure = False, token: Token = None,
    dry_run: DryRun = False, output: Output = None,
) -> None:
    """Find live addresses and open ports with nmap (OS guess when root)."""
    from discovery import runner

    try:
        subnets = validate_subnets(subnet)
        ports = validate_ports(ports)
        if names not in NAME_RESOLUTION:
            raise ValueError(f"--names must be one of {', '.join(NAME_RESOLUTION)}")
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    endpoint = _endpoint(api_url, token, token_file, insecure=insecure, needed=not dry_run)
    context, _ = _progress("nmap " + " ".join(subnets), None)
    with context:
        outcome = runner.scan_scope("scan", subnets, ports=ports, service_versions=service_versions,
                                    exclude=[a for a in (exclude or "").split(",") if a.strip()], names=names)
    _finish(outcome, endpoint=endpoint, dry_run=dry_run, output=output)


@app.command()
def ssh(
    targets: Annotated[list[str], typer.Option(
        "--targets", help="HOST, CIDR, RANGE (10.0.0.5-20), @FILE of those, or a,b,c.")],
    user: Annotated[str, typer.Option(help="Remote user.")],
    key: Annotated[Path, typer.Option(help="Private key file (passphrase in KARTA_SSH_KEY_PASSPHRASE).")],
    known_hosts: Annotated[Path | None, typer.Option(
        "--known-hosts", help="known_hosts file to verify against (default: the agent's own, "
                              "/var/lib/karta/known_hosts as root).")] = None,
    trust_on_first_use: Annotated[bool, typer.Option(
        "--trust-on-first-use", help="Accept and pin keys of hosts not yet in known_hosts.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 22,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 20,
    connect_timeout: Annotated[float, typer.Option(min=0.1)] = 10.0,
    command_timeout: Annotated[float, typer.Option(min=0.1)] = 120.0,
    packages: Annotated[bool, typer.Option("--packages", help="Also list installed packages.")] = False,
    resolve_remote: Annotated[bool, typer.Option(
        "--resolve-remote", help="Place connections to hosts outside this run on applications the CMDB "
                                 "already holds (a few GET requests per unknown address).")] = False,
    api_url: ApiUrl = None, token_file: TokenFile = None, insecure: Insecure = False, token: Token = None,
    dry_run: DryRun = False, output: Output = None,
) -> None:
    """Collect facts from hosts over SSH: one session, one read-only script per host."""
    from discovery import runner
    from discovery.sshcollect import SshSettings
    notes: list[str] = []
    try:
        hosts = parse_targets(targets, notes)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    for note in notes:
        _warn(note)
    endpoint = _endpoint(api_url, token, token_file, insecure=insecure, needed=not dry_run or resolve_remote)
    settings = SshSettings(user=user, key_path=key, known_hosts=known_hosts or default_known_hosts(),
                           trust_on_first_use=trust_on_first_use, port=port, concurrency=concurrency,
                           connect_timeout=connect_timeout, command_timeout=command_timeout, packages=packages)
    context, advance = _progress("ssh", len(hosts))
    with context:
        outcome = runner.ssh_scope("ssh", hosts, settings, on_result=advance,
                                   remote=endpoint if resolve_remote else None)
    _finish(outcome, endpoint=endpoint, dry_run=dry_run, output=output)


@app.command()
def local(
    packages: Annotated[bool, typer.Option("--packages", help="Also list installed packages.")] = False,
    api_url: ApiUrl = None, token_file: TokenFile = None, insecure: Insecure = False, token: Token = None,
    dry_run: DryRun = False, output: Output = None,
) -> None:
    """Collect facts from this machine with the same script, without SSH."""
    from discovery import runner

    endpoint = _endpoint(api_url, token, token_file, insecure=insecure, needed=not dry_run)
    outcome = runner.local_scope("local", packages=packages)
    _finish(outcome, endpoint=endpoint, dry_run=dry_run, output=output)


Secret = Annotated[str | None, typer.Option(hidden=True, show_default=False)]


@app.command()
def snmp(
    targets: Annotated[list[str] | None, typer.Option(
        "--targets", help="HOST, CIDR, RANGE (10.0.0.5-20), @FILE of those, or a,b,c.")] = None,
    subnet: Annotated[list[str] | None, typer.Option(
        "--subnet", help="CIDR whose every address is asked (the run's scope); repeat for more.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="TOML config: its \\[snmp] table (credential files, protocols) and api_url.")] = None,
    snmp_version: Annotated[str | None, typer.Option(
        "--snmp-version", help="2c or 3 (default: 3 when KARTA_SNMP_USER is set).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    timeout: Annotated[float | None, typer.Option(min=0.1, max=60, help="Seconds per request.")] = None,
    retries: Annotated[int | None, typer.Option(min=0, max=5)] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=256)] = None,
    community: Secret = None, auth_key: Secret = None, priv_key: Secret = None,
    api_url: ApiUrl = None, token_file: TokenFile = None, insecure: Insecure = False, token: Token = None,
    dry_run: DryRun = False, output: Output = None,
) -> None:
    """Walk SNMP devices (v2c or v3): system, interfaces, addresses, ARP, LLDP, forwarding tables.

    Credentials come from KARTA_SNMP_COMMUNITY (v2c) or KARTA_SNMP_USER, KARTA_SNMP_AUTH_KEY and
    KARTA_SNMP_PRIV_KEY (v3), or from files the config's \\[snmp] table names; never from the command line."""
    from discovery.snmp.scope import snmp_scope, subnet_targets
    from discovery.snmp.settings import SECRET_ON_COMMAND_LINE, resolve_settings

    if community is not None or auth_key is not None or priv_key is not None:
        raise _fail(SECRET_ON_COMMAND_LINE, EXIT_USAGE)
    settings = None
    notes: list[str] = []
    try:
        if bool(targets) == bool(subnet):
            raise ValueError("give --targets or --subnet (one of them)")
        if snmp_version not in (None, "2c", "3"):
            raise ValueError("--snmp-version must be 2c or 3")
        if config is not None:
            from discovery.config import ConfigError, load_config

            try:
                settings = load_config(config)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        subnets = validate_subnets(subnet) if subnet else None
        hosts = subnet_targets(subnets) if subnets else parse_targets(targets, notes)
        snmp_settings, warnings = resolve_settings(settings.snmp if settings else None, version=snmp_version,
                                                   port=port, timeout=timeout, retries=retries,
                                                   concurrency=concurrency)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    for note in notes + warnings:
        _warn(note)
    endpoint = _endpoint(api_url or (settings.api_url if settings else None), token, token_file,
                         insecure=insecure or bool(settings and settings.insecure), needed=not dry_run,
                         config_token_file=settings.token_file if settings else None)
    context, advance = _progress("snmp", len(hosts))
    with context:
        outcome = snmp_scope("snmp", hosts, snmp_settings, subnets=subnets, on_result=advance, remote=endpoint)
    _finish(outcome, endpoint=endpoint, dry_run=dry_run, output=output)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", help="TOML config with the scopes to run.")],
    only: Annotated[list[str] | None, typer.Option("--scope", help="Run only this scope; repeatable.")] = None,
    api_url: ApiUrl = None, token_file: TokenFile = None, insecure: Insecure = False, token: Token = None,
    dry_run: DryRun = False,
    output: Annotated[Path | None, typer.Option(
        "--output", help="Also write each scope's batch to DIR/<scope>.json.")] = None,
) -> None:
    """Run every scope of a config (for cron). One summary line per scope when not on a terminal."""
    from discovery import runner

    from discovery.config import ConfigError, load_config  # pydantic: only ``run`` needs it

    try:
        settings = load_config(config)
    except (ConfigError, OSError) as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    endpoint = _endpoint(api_url or settings.api_url, token, token_file, insecure=insecure or settings.insecure,
                         needed=not dry_run or settings.resolve_remote, config_token_file=settings.token_file)
    scopes = [s for s in settings.scope if not only or s.name in only]
    if only and len(scopes) != len(set(only)):
        raise _fail(f"unknown scope in --scope; known: {', '.join(s.name for s in settings.scope)}", EXIT_USAGE)
    rules = effective_rules(settings.extra_rules())
    # Batches go to stdout on --dry-run, so the summary lines move to stderr.
    say = (lambda line: typer.echo(line, err=True)) if dry_run else typer.echo
    try:
        with runner.run_lock(settings.lock_file):
            failed = _run_all(scopes, settings, rules, endpoint=endpoint, dry_run=dry_run, output=output, say=say)
    except runner.LockHeld as exc:
        raise _fail(str(exc), EXIT_LOCKED) from None
    except runner.LockUnsafe as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _run_all(scopes, settings, rules, *, endpoint, dry_run, output, say) -> bool:
    """Run the scopes one after the other; True when any of them failed."""
    from discovery import runner

    failed = False
    client = None if dry_run else runner.ingest_client(endpoint)
    try:
        for scope in scopes:
            try:
                outcome = _run_scope(scope, settings, rules, endpoint)
            except Exception as exc:  # noqa: BLE001 - a bug in one scope must not cost the others their run
                outcome = runner.ScopeOutcome(scope.name, scope.type, error=f"internal error: {type(exc).__name__}")
            if outcome.batch is not None and not outcome.failed:
                if output is not None:
                    runner.write_batch(outcome.batch, output / f"{scope.name}.json")
                if client is None:
                    sys.stdout.buffer.write(runner.batch_json(outcome.batch, indent=False))
                    sys.stdout.flush()
                else:
                    runner.push_outcome(outcome, client)
            failed |= outcome.failed
            say(outcome.summary_line())
    finally:
        if client is not None:
            client.close()
    return failed


def _run_scope(scope, settings, rules, endpoint) -> runner.ScopeOutcome:
    from discovery import runner
    from discovery.sshcollect import SshSettings

    if scope.type == "nmap":
        context, _ = _progress(f"{scope.name}: nmap", None)
        with context:
            return runner.scan_scope(scope.name, scope.subnets, ports=scope.ports,
                                     service_versions=scope.service_versions, exclude=scope.exclude,
                                     names=scope.names)
    if scope.type == "local":
        return runner.local_scope(scope.name, packages=scope.packages, rules=rules)
    if scope.type == "snmp":
        return _snmp_scope(scope, settings, endpoint)
    notes: list[str] = []
    try:
        hosts = parse_targets(scope.targets, notes)
    except (ValueError, OSError) as exc:
        return runner.ScopeOutcome(scope.name, "ssh", error=str(exc))
    ssh_settings = SshSettings(
        user=scope.user or settings.user, key_path=scope.key or settings.key,
        known_hosts=settings.known_hosts, trust_on_first_use=settings.trust_on_first_use,
        port=scope.port, concurrency=settings.concurrency, connect_timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout, packages=scope.packages)
    context, advance = _progress(f"{scope.name}: ssh", len(hosts))
    with context:
        outcome = runner.ssh_scope(scope.name, hosts, ssh_settings, rules=rules, on_result=advance,
                                   remote=endpoint if settings.resolve_remote else None)
    outcome.notes[:0] = notes
    return outcome


def _snmp_scope(scope, settings, endpoint) -> runner.ScopeOutcome:
    from discovery import runner
    from discovery.snmp.scope import snmp_scope, subnet_targets
    from discovery.snmp.settings import resolve_settings

    notes: list[str] = []
    try:
        hosts = subnet_targets(scope.subnets) if scope.subnets else parse_targets(scope.targets, notes)
        snmp_settings, warnings = resolve_settings(settings.snmp)
    except (ValueError, OSError) as exc:
        return runner.ScopeOutcome(scope.name, "snmp", error=str(exc))
    context, advance = _progress(f"{scope.name}: snmp", len(hosts))
    with context:
        outcome = snmp_scope(scope.name, hosts, snmp_settings, subnets=scope.subnets or None, on_result=advance,
                             remote=endpoint)
    outcome.notes[:0] = notes + warnings
    return outcome


if __name__ == "__main__":
    app()
