"""Shared fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL, an app, tokens.

PostgreSQL tests run against KARTA_TEST_POSTGRES_URL (default: the local server, database `test`).
Each test gets its own database cloned from a migrated template, so tests never see each other's data.
Where PostgreSQL (or root, nmap, sshd for discovery) is missing the tests skip and say why; in CI
(CI=true or KARTA_REQUIRE_ALL=1) they fail instead, because nothing may be skipped silently there.
"""

import itertools
import os
import shutil
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core import migrations
from app.core.config import Settings
from app.core.db import make_engine
from app.main import create_app
from app.models.token import Scope
from app.services import tokens as token_service
from app.services.history import UnitOfWork

REQUIRE_ALL = os.environ.get("KARTA_REQUIRE_ALL") == "1" or os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("KARTA_TEST_POSTGRES_URL", "postgresql+psycopg://@127.0.0.1:5432/test")


def missing_requirement(reason: str) -> None:
    """Skip with the reason; in CI, fail: a required part is missing from the machine."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (required in CI: KARTA_REQUIRE_ALL/CI is set)", pytrace=False)
    pytest.skip(reason)


class PostgresDatabases:
    """Clones of one migrated template database, one per test."""

    def __init__(self, url: str) -> None:
        self.admin_url = make_url(url)
        self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.prefix = f"karta_test_{os.getpid()}"
        self.template = f"{self.prefix}_template"
        self.counter = itertools.count(1)
        self.error: str | None = None
        try:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.template}"'))
                conn.execute(text(f'CREATE DATABASE "{self.template}"'))
            engine = make_engine(self.url_for(self.template))
            migrations.upgrade(engine)
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any failure means "no usable PostgreSQL here"
            self.error = f"PostgreSQL at {url} is not usable: {type(exc).__name__}: {str(exc).splitlines()[0]}"

    def url_for(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def clone(self) -> tuple[str, str]:
        name = f"{self.prefix}_{next(self.counter)}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        return name, self.url_for(name)

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        if self.error is None:
            self.drop(self.template)
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases():
    databases = PostgresDatabases(POSTGRES_URL)
    yield databases
    databases.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite-template") / "karta.db"
    engine = make_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def fresh_database(request, backend: str, directory):
    """Yield the URL of a freshly migrated, empty database of `backend`, then drop it."""
    if backend == "sqlite":
        path = directory / "karta.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    databases = request.getfixturevalue("postgres_databases")
    if databases.error:
        missing_requirement(databases.error)
    name, url = databases.clone()
    yield url
    databases.drop(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A freshly migrated, empty database: each test runs once per backend."""
    yield from fresh_database(request, request.param, tmp_path)


@pytest.fixture
def app(database_url):
    # A short token cache: revoking waits for it (app.services.tokens), and tests revoke often.
    application = create_app(Settings(database_url=database_url, token_cache_seconds=0.3))
    yield application
    try:
        # Whatever a test did through the service, nothing may point at nothing afterwards (the
        # foreign keys that would have refused it are gone, migrations 0004 and 0006).
        assert dangling_rows(application.state.engine) == {}
    finally:
        application.state.engine.dispose()


@pytest.fixture
def engine(app):
    return app.state.engine


class Api:
    """A test client that sends the token of a chosen scope (`as_="admin"`), or none (`as_=None`)."""

    def __init__(self, client: TestClient, secrets: dict[str, str]) -> None:
        self.client = client
        self.secrets = secrets

    def request(self, method: str, url: str, *, as_: str | None = "admin", headers=None, **kwargs):
        headers = dict(headers or {})
        if as_ is not None:
            headers["Authorization"] = f"Bearer {self.secrets[as_]}"
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def patch(self, url, **kwargs):
        return self.request("PATCH", url, **kwargs)

    def delete(self, url, **kwargs):
        return self.request("DELETE", url, **kwargs)

    def create_ci(self, ci_class: str, name: str, **fields) -> dict:
        response = self.post("/api/v1/cis", json={"class": ci_class, "name": name, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def relate(self, source: str, rel_type: str, target: str, **attributes) -> dict:
        response = self.post("/api/v1/relationships",
                             json={"source": source, "target": target, "type": rel_type, "attributes": attributes})
        assert response.status_code == 201, response.text
        return response.json()


def create_tokens(engine) -> dict[str, str]:
    secrets = {}
    with UnitOfWork(engine, "tests") as uow:
        for scope in Scope:
            secrets[scope.value] = token_service.create_token(uow, f"{scope.value}-bot", [scope])["secret"]
    return secrets


def tokens_for(database_url: str) -> dict[str, str]:
    """create_tokens on the database at `database_url`, through an engine of its own (for a test that then
    starts a real `karta serve` on that database)."""
    engine = make_engine(database_url)
    try:
        return create_tokens(engine)
    finally:
        engine.dispose()


@pytest.fixture
def api(app, engine):
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, create_tokens(engine))


def new_id() -> str:
    return str(uuid.uuid4())


def dangling_rows(engine) -> dict[str, int]:
    """How many rows of each kind point at nothing (`karta db check`'s checks; empty when all is well):
    the foreign keys that would have refused them were dropped (migrations 0004 and 0006)."""
    from app.services import integrity

    with engine.connect() as conn:
        return {finding.check.name: finding.count for finding in integrity.find_dangling(conn)}


def discovered_app_host_and_database(api) -> dict[str, str]:
    """Ingest an application `a` that runs on a server `h` and depends on a database `d`; their ids by ref."""
    body = {"source": "ssh", "run_id": f"small-estate-{new_id()}", "scope": {"hosts": ["h"]},
            "items": [{"ref": "h", "class": "server", "name": "h", "identifiers": {"serial_number": "SN-1"}},
                      {"ref": "a", "class": "application", "name": "a", "identifiers": {"instance_key": "h/a/80"}},
                      {"ref": "d", "class": "database", "name": "d", "identifiers": {"instance_key": "h/d/5432"}}],
            "relationships": [{"source": "a", "target": "h", "type": "runs_on"},
                              {"source": "a", "target": "d", "type": "depends_on"}]}
    response = api.post("/api/v1/ingest", json=body)
    assert response.status_code == 200 and response.json()["relationships"]["created"] == 2, response.text
    return response.json()["refs"]
