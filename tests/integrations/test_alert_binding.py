"""Binding an alert's short hostname (`instance="web-1:9100"`) to the host whose fqdn is `web-1.<domain>`,
through the API, on SQLite, on PostgreSQL, and on a PostgreSQL database whose collation weighs
punctuation as glibc's en_US.UTF-8 does (ICU with alternate=shifted): there a range of the collation's
order is not a prefix, and `web` found no `web.example.com` before migration 0014.
"""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.core import migrations
from app.core.config import Settings
from app.core.db import make_engine
from app.main import create_app
from app.services import alert_binding
from tests.conftest import Api, create_tokens, fresh_database, missing_requirement
from tests.integrations.test_incidents import am_alert, am_payload, post_am

# CI name -> fqdn: no name is a short hostname of an alert below, so only the fqdn prefix binds them.
HOSTS = {"plain": "web.example.com", "dash": "web-1.example.com", "underscore": "web_1.example.com",
         "digit": "web1.example.com", "longer": "web-10.example.com", "dotted": "db.1.example.org",
         "app-a": "app.a.example", "app-b": "app.b.example"}
# instance label -> CI name it binds (None: nothing, or several CIs)
EXPECTED = {"web:9100": "plain", "web-1:9100": "dash", "web_1:9100": "underscore", "web1": "digit",
            "web-10": "longer", "we": None, "web-": None, "app:9100": None, "db": "dotted",
            "db.1": None}
ICU_LOCALE = "en-US-u-ka-shifted"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("postgresql-icu", marks=pytest.mark.postgres)])
def any_collation_url(request, tmp_path):
    if request.param != "postgresql-icu":
        yield from fresh_database(request, request.param, tmp_path)
        return
    databases = request.getfixturevalue("postgres_databases")
    if databases.error:
        missing_requirement(databases.error)
    name = f"{databases.prefix}_icu"
    with databases.admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        try:
            conn.execute(text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu "
                              f"ICU_LOCALE '{ICU_LOCALE}'"))
        except DBAPIError as exc:
            missing_requirement(f"PostgreSQL cannot create an ICU-collated database: {str(exc).splitlines()[0]}")
    try:
        engine = make_engine(databases.url_for(name))
        migrations.upgrade(engine)
        engine.dispose()
        yield databases.url_for(name)
    finally:
        databases.drop(name)


@pytest.fixture
def collation_api(any_collation_url):
    app = create_app(Settings(database_url=any_collation_url))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, create_tokens(app.state.engine))
    finally:
        app.state.engine.dispose()


def bound_names(api, incident_id: str) -> dict[str, str | None]:
    detail = api.get(f"/api/v1/incidents/{incident_id}", as_="read").json()
    return {a["labels"]["instance"]: a["ci"] and a["ci"]["name"] for a in detail["alerts"]}


def test_a_short_hostname_binds_the_fqdn_it_begins_whatever_the_collation(collation_api):
    api = collation_api
    for name, fqdn in HOSTS.items():
        api.create_ci("server", name, attributes={"fqdn": fqdn})
    alerts = [am_alert(f"a{n}", instance=instance) for n, instance in enumerate(EXPECTED)]
    response = post_am(api, am_payload("short", alerts))
    assert response.status_code == 200, response.text
    assert bound_names(api, response.json()["id"]) == EXPECTED


def test_more_short_hostnames_than_a_chunk_all_bind(collation_api):
    api = collation_api
    count = alert_binding.CHUNK + alert_binding.PREFIX_CHUNK + 7
    hosts = [f"h{n}" for n in range(count)]
    body = {"source": "ssh", "run_id": "many-hosts", "scope": {"hosts": hosts},
            "items": [{"ref": host, "class": "server", "name": f"ci-{n}", "identifiers": {"fqdn": f"{host}.bulk.example"}}
                      for n, host in enumerate(hosts)], "relationships": []}
    ingested = api.post("/api/v1/ingest", json=body)
    assert ingested.status_code == 200, ingested.text[:500]
    alerts = [am_alert(f"a{n}", instance=f"h{n}:9100") for n in range(count)]
    response = post_am(api, am_payload("many", alerts))
    assert response.status_code == 200, response.text[:500]
    assert response.json()["counts"] == {"firing": count, "resolved": 0, "unbound": 0}
    assert bound_names(api, response.json()["id"]) == {f"h{n}:9100": f"ci-{n}" for n in range(count)}


def test_the_prefix_is_read_from_an_index(collation_api):
    """PostgreSQL reads the ranges from ix_ci_identifier_prefix (text_pattern_ops); SQLite from the
    identifier table's primary key (family, key, value), whose BINARY order is byte order."""
    api = collation_api
    engine = api.client.app.state.engine
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Enough rows (rolled back below) that the planner weighs its indexes, not the table's one page.
            conn.exec_driver_sql("INSERT INTO ci_identifier (family, key, value, ci_id) SELECT 'server', 'fqdn', "
                                 "'host-' || n || '.example.com', gen_random_uuid() FROM generate_series(1, 20000) AS n")
            conn.exec_driver_sql("ANALYZE ci_identifier")
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        statement = alert_binding._fqdns_of_hostnames(conn, ["web-1", "db_2"])
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
        plan = "\n".join(str(row[-1]) for row in conn.exec_driver_sql(f"{explain} {compiled}"))
        conn.rollback()
    if engine.dialect.name == "postgresql":
        assert "ix_ci_identifier_prefix" in plan, plan
    else:
        assert plan.count("USING INDEX sqlite_autoindex_ci_identifier_1 (family=? AND key=? AND value>? AND value<?)") == 2, plan
