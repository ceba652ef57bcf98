"""The `karta` command: serve the API, migrate the database, manage tokens, run discovery, be an Ansible
inventory."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.core.scopes import Scope
from discovery.cli import app as discover_cli

if TYPE_CHECKING:
    from sqlalchemy import Engine

# The service (settings, SQLAlchemy, the models, uvicorn, alembic) is imported by the commands that
# need it: `karta discover` runs from cron on machines that only push to the API, and importing the
# service first cost it 0.4 s a run (BENCHMARKS.md, discovery).
cli = typer.Typer(help="Karta: a CMDB with discovery and impact analysis.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
token_cli = typer.Typer(help="API tokens.", no_args_is_help=True)
graph_cli = typer.Typer(help="The impact graph the workers hold.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(token_cli, name="token")
cli.add_typer(graph_cli, name="graph")
cli.add_typer(discover_cli, name="discover")


@contextmanager
def _database() -> Iterator["Engine"]:
    """An engine on the configured database, disposed when the command is done."""
    from app.core.config import get_settings
    from app.core.db import make_engine

    engine = make_engine(get_settings().database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
    migrate: Annotated[bool, typer.Option("--migrate", help="Apply pending migrations first")] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (costs ~10% throughput)")] = False,
) -> None:
    """Serve the API with uvicorn. Refuses to start on a database whose schema is behind."""
    with _metrics_directory():  # before anything imports prometheus_client, which reads it once
        _serve(host, port, workers, migrate, access_log)


@contextmanager
def _metrics_directory() -> Iterator[None]:
    """A directory of this start's own for prometheus-client's multiprocess mode, so the counters of
    every worker add up (app/core/metrics.py), removed when the server stops."""
    import os
    import shutil
    import signal
    import sys
    import tempfile

    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    path = tempfile.mkdtemp(prefix="karta-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    # uvicorn (one worker) ends a graceful stop on SIGTERM by raising the signal again once it has put
    # its own handlers back: with Python's default one the process would die there, before the removal.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(path, ignore_errors=True)


def _exit_on_sigterm(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)  # the shell's code for "ended by this signal"


def _serve(host: str, port: int, workers: int, migrate: bool, access_log: bool) -> None:
    import uvicorn

    from app.core import migrations
    from app.core.config import get_settings
    from app.core.metrics_listener import check_bindable

    listen = get_settings().metrics_listen
    if listen:
        try:
            check_bindable(listen)
        except (OSError, ValueError) as exc:
            typer.echo(f"KARTA_METRICS_LISTEN={listen} cannot be listened on: {exc}", err=True)
            raise typer.Exit(1) from exc

    with _database() as engine:
        if migrate:
            migrations.upgrade(engine)
        current, head = migrations.current_revision(engine), migrations.head_revision()
    if current != head:
        typer.echo(
            f"The database schema is at {current or 'nothing (empty database)'}; Karta needs {head}.\n"
            "Run `karta db upgrade` (or start with `karta serve --migrate`).",
            err=True,
        )
        raise typer.Exit(1)
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=access_log, proxy_headers=True,
                http="app.core.http_protocol:HeaderDeadlineProtocol", log_config=_log_config())


def _log_config() -> dict:
    """uvicorn's logging, and Karta's own messages (karta.*: the graph loaded and from where, snapshots
    written, replicas in and out of rotation) at INFO through the same handler: without it they had no
    handler and only warnings reached the log, through Python's last resort."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["karta"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from app.core import migrations

    with _database() as engine:
        migrations.upgrade(engine, revision)
        typer.echo(f"database schema at {migrations.current_revision(engine)}")


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision; 'base' empties the database")]) -> None:
    """Undo migrations down to REVISION."""
    from app.core import migrations

    with _database() as engine:
        migrations.downgrade(engine, revision)
        typer.echo(f"database schema at {migrations.current_revision(engine) or 'base'}")


@db_cli.command("current")
def db_current() -> None:
    """Show the database's schema revision and the newest one."""
    from app.core import migrations

    with _database() as engine:
        typer.echo(f"current: {migrations.current_revision(engine) or 'none'}\nhead:    {migrations.head_revision()}")


@db_cli.command("check")
def db_check(
    repair: Annotated[bool, typer.Option("--repair", help="End relationships to nothing, delete identifiers and "
                                                           "sightings of what is gone")] = False,
) -> None:
    """Find rows that point at nothing (relationships, identifiers, sightings); exit 1 if any, unless repaired."""
    from app.services import integrity
    from app.services.history import UnitOfWork

    with _database() as engine:
        if repair:
            with UnitOfWork(engine, "karta db check --repair") as uow:
                findings = integrity.repair(uow)
        else:
            with engine.connect() as conn:
                findings = integrity.find_dangling(conn)
    for finding in findings:
        typer.echo(("repaired: " if repair else "") + str(finding))
    if not findings:
        typer.echo("no dangling references")
    elif not repair:
        typer.echo("run `karta db check --repair` to end or delete them", err=True)
        raise typer.Exit(1)


@db_cli.command("map-services")
def db_map_services() -> None:
    """Map every business service afresh from its entry points (a worker does it once, on a database it
    never mapped; run this after a restore or a repair). Each map that changes is recorded."""
    from app.services.live_graph import LiveGraph
    from app.services.registry import RegistryCache
    from app.services.service_map_keeper import ServiceMapKeeper

    with _database() as engine:
        registry = RegistryCache(engine, 60)
        changed = ServiceMapKeeper(engine, registry, LiveGraph(engine, registry)).rebuild()
    typer.echo(f"{changed} service map(s) changed")


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what uses the token; shown as the actor in history")],
    scope: Annotated[list[Scope], typer.Option(help="read, write, discovery or admin; repeat for several")],
    source: Annotated[list[str] | None, typer.Option(
        help="A discovery source the token may send to ingest (ssh, nmap, ...); repeat for several. "
             "Without it: any source but manual")] = None,
    expires: Annotated[datetime | None, typer.Option(help="Expiry time (ISO 8601, UTC), in the future")] = None,
) -> None:
    """Create a token. Its secret is printed once, alone on the last line."""
    from pydantic import ValidationError

    from app.models.token import TokenCreate
    from app.services import tokens
    from app.services.errors import KartaError
    from app.services.history import in_unit_of_work

    try:
        data = TokenCreate(name=name, scopes=scope, sources=source or None,
                           expires_at=expires.replace(tzinfo=expires.tzinfo or UTC) if expires else None)
    except ValidationError as exc:
        error = exc.errors()[0]
        typer.echo(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}", err=True)
        raise typer.Exit(1) from exc
    try:
        with _database() as engine:
            created = in_unit_of_work(engine, tokens.cli_actor("karta token create"), lambda uow: tokens.create_token(
                uow, data.name, data.scopes, data.expires_at, data.sources))
    except KartaError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"token '{created['name']}' ({created['id']}) scopes: {', '.join(created['scopes'])}; "
               f"sources: {_sources(created['sources'])}")
    typer.echo("the secret follows; it is shown only now:")
    typer.echo(created["secret"])


def _sources(sources: list[str] | None) -> str:
    return ",".join(sources) if sources is not None else "any source but manual"


@token_cli.command("list")
def token_list() -> None:
    """List tokens (never their secrets): state (active, expired, revoked), scopes, sources."""
    from app.services import tokens

    with _database() as engine, engine.connect() as conn:
        for row in tokens.list_tokens(conn):
            typer.echo(f"{row['id']}  {row['name']:<24} {row['state']:<8} scopes {','.join(row['scopes']):<24} "
                       f"sources {_sources(row['sources'])}  last used {row['last_used_at'] or 'never'}")


@token_cli.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="The token's id or name")],
) -> None:
    """Revoke a token. Returns once no worker sharing this configuration's token cache time accepts it."""
    from app.core.config import get_settings
    from app.services import tokens
    from app.services.errors import KartaError
    from app.services.history import in_unit_of_work

    settings = get_settings()
    try:
        with _database() as engine:
            found = tokens.find_token_by_id_or_name(engine, token)
            changed = in_unit_of_work(engine, tokens.cli_actor("karta token revoke"),
                                      lambda uow: tokens.revoke_token(uow, found["id"]))
    except KartaError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from exc
    if not changed:
        typer.echo(f"token '{found['name']}' ({found['id']}) was already revoked")
        return
    time.sleep(tokens.revocation_settled(settings.token_cache_seconds))
    typer.echo(f"token '{found['name']}' ({found['id']}) revoked")


@graph_cli.command("snapshot")
def graph_snapshot(
    directory: Annotated[Path | None, typer.Option(
        "--directory", help="Where the workers read it (default: KARTA_GRAPH_SNAPSHOT_DIR)")] = None,
    lock_wait: Annotated[float, typer.Option(
        min=0, max=3600, help="Seconds to wait for a worker writing the file meanwhile")] = 120.0,
) -> None:
    """Write the impact graph snapshot now: the graph loaded from the database as a worker loads it, written
    as the workers write it (run it before starting workers, so that they start from it)."""
    import pwd

    from sqlalchemy.exc import DBAPIError

    from app.core import migrations
    from app.core.config import get_settings
    from app.services.live_graph import LiveGraph, SnapshotNotWritten
    from app.services.registry import RegistryCache

    directory = directory or get_settings().graph_snapshot_dir
    if directory is None:
        typer.echo("No snapshot directory: pass --directory or set KARTA_GRAPH_SNAPSHOT_DIR.", err=True)
        raise typer.Exit(2)
    try:
        with _database() as engine:
            current, head = migrations.current_revision(engine), migrations.head_revision()
            if current != head:  # a worker of this release refuses such a database: its snapshot would go unread
                typer.echo(f"The database schema is at {current or 'nothing (empty database)'}; Karta needs {head}.\n"
                           "Run `karta db upgrade` first.", err=True)
                raise typer.Exit(1)
            live = LiveGraph(engine, RegistryCache(engine, 60), snapshot_dir=directory)
            written = live.write_from_database(lock_wait=lock_wait)
    except SnapshotNotWritten as exc:
        typer.echo(f"No snapshot written: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (DBAPIError, OSError) as exc:  # the database unreachable, the disk full: one line, not a traceback
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:500]
        typer.echo(f"No snapshot written: {type(exc).__name__}: {reason}", err=True)
        raise typer.Exit(1) from exc
    owner = live.snapshot_path.parent.stat().st_uid
    try:
        owner_name = pwd.getpwuid(owner).pw_name
    except KeyError:
        owner_name = str(owner)
    typer.echo(f"{live.snapshot_path}: applied_seq {written['applied_seq']}, {written['cis']} CIs, "
               f"{written['bytes']} bytes (graph loaded in {live.load_seconds:.1f} s, written in "
               f"{written['write_seconds']:.1f} s). The directory is {owner_name}'s: only workers running as "
               f"{owner_name} read it.")


@cli.command("alert")
def alert(
    host: Annotated[str, typer.Option(help="The host checked: address, fqdn or hostname ($HOSTADDRESS$ / $HOSTNAME$)")],
    state: Annotated[str, typer.Option(help="CRITICAL, WARNING, UNKNOWN, OK; host checks: DOWN, UNREACHABLE, UP")],
    service: Annotated[str | None, typer.Option(help="The service check's name ($SERVICEDESC$); none for a host check")] = None,
    output: Annotated[str | None, typer.Option(help="The check's output ($SERVICEOUTPUT$)")] = None,
    group: Annotated[str | None, typer.Option(help="The incident's group key (default: one incident per host)")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value, repeat for several (cmdb_ci=<id> binds exactly)")] = None,
    token_file: Annotated[Path | None, typer.Option(help="A file holding the token (else KARTA_TOKEN)")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow plain http to another machine")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, max=300, help="Give up after this many seconds")] = 10.0,
) -> None:
    """Send a check's state to Karta (POST /api/v1/integrations/alerts), for a Nagios or Zabbix notification
    command. KARTA_URL and KARTA_TOKEN from the environment. Exit 0 accepted, 3 configuration, 4 refused,
    5 unreachable (app/integrations/alert_cli.py)."""
    from app.integrations.alert_cli import run

    raise typer.Exit(run(host=host, service=service, state=state, output=output, group=group, labels=label or [],
                         token_file=token_file, insecure=insecure, timeout=timeout))


@cli.command()
def inventory(
    list_all: Annotated[bool, typer.Option("--list", help="Every group and host (what Ansible asks)")] = False,
    host: Annotated[str | None, typer.Option("--host", help="One host's variables")] = None,
) -> None:
    """An executable Ansible inventory: Karta's hosts as JSON (KARTA_URL, KARTA_TOKEN; cached for
    KARTA_INVENTORY_CACHE_SECONDS)."""
    from app.integrations import inventory_cli

    raise typer.Exit(inventory_cli.run(list_all, host))


@cli.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="A .csv of one class (or of relationships), or a .json/.yaml bundle")],
    ci_class: Annotated[str | None, typer.Option("--class", help="The CSV's class (rows may name a subclass)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show per row what would happen; change nothing")] = False,
    relationships: Annotated[bool, typer.Option("--relationships", help="The CSV holds source,type,target rows")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="Apply the rows without errors (default: all or nothing)")] = False,
    url: Annotated[str | None, typer.Option("--url", envvar="KARTA_URL", help="Karta's base URL")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the token; else KARTA_TOKEN")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow plain http:// to another machine")] = False,
) -> None:
    """Import CIs or relationships from a spreadsheet or bundle through the API, as the source 'import'."""
    from app.integrations import import_cli  # the client only: no SQLAlchemy, no FastAPI

    raise typer.Exit(import_cli.run(file, ci_class=ci_class, dry_run=dry_run, relationships=relationships, url=url,
                                    token_file=token_file, insecure=insecure, all_or_nothing=not partial))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
