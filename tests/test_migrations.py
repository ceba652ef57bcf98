"""The migrations are the schema: they match the models exactly, and go down and up again."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from app.core import migrations
from app.core.db import make_engine
from app.models import metadata
from app.services.search import SQLITE_FTS_TABLES


def _not_search_fts(name, type_, _parents) -> bool:
    # SQLite's FTS5 search table and its shadow tables (migration 0009) cannot be models: a virtual
    # table is no SQLAlchemy table. Exactly those names are left out; tests/test_search.py checks them.
    return not (type_ == "table" and name in SQLITE_FTS_TABLES)


def _for_this_database(dialect: str):
    """Model objects created only on another database (`Index(...).ddl_if(dialect="postgresql")`):
    Alembic's comparison does not read ddl_if, and would ask for them here."""
    def include(obj, _name, type_, reflected, _compare_to) -> bool:
        only = getattr(obj, "_ddl_if", None)
        return reflected or type_ != "index" or only is None or only.dialect in (None, dialect)
    return include


def test_models_match_migrations(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": _not_search_fts,
                                                             "include_object": _for_this_database(conn.dialect.name)})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(database_url):
    engine = make_engine(database_url)
    try:
        migrations.downgrade(engine, "base")
        assert migrations.current_revision(engine) is None
        assert "ci" not in inspect(engine).get_table_names()
        migrations.upgrade(engine)
        assert migrations.is_at_head(engine)
    finally:
        engine.dispose()


def test_each_step_down_and_up_again(database_url):
    # Down one migration at a time and back: a downgrade must leave what its upgrade expects to find
    # (SQLite's unnamed foreign keys in 0004 included).
    engine = make_engine(database_url)
    revisions = [script.down_revision for script in ScriptDirectory.from_config(migrations._config()).walk_revisions()
                 if script.down_revision is not None]
    try:
        for revision in revisions:
            migrations.downgrade(engine, revision)
            migrations.upgrade(engine)
            assert migrations.is_at_head(engine)
    finally:
        engine.dispose()


def test_plain_alembic_upgrade_on_sqlite_keeps_the_rows_of_rebuilt_tables(tmp_path):
    # `alembic upgrade head` (as alembic.ini allows) must not enforce foreign keys while batch mode
    # rebuilds a table: dropping the old `relationship` would cascade into its sightings (0006).
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    database = tmp_path / "karta.db"
    env = {"KARTA_DATABASE_URL": f"sqlite:///{database}", "PATH": "/usr/bin:/bin"}
    repo = Path(__file__).resolve().parent.parent

    def alembic(revision: str) -> None:
        done = subprocess.run([sys.executable, "-m", "alembic", "upgrade", revision], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]

    alembic("0005")
    with sqlite3.connect(database) as db:
        now = "2026-11-22 00:00:00.000000"
        for ci_id, name in (("a" * 32, "app"), ("b" * 32, "host")):
            db.execute("INSERT INTO ci (id, ci_class, name, status, tags, attributes, provenance, version, "
                       "first_seen, last_seen, created_at, updated_at) VALUES (?, 'server', ?, 'active', '[]', '{}', "
                       "'{}', 1, ?, ?, ?, ?)", (ci_id, name, now, now, now, now))
        db.execute("INSERT INTO relationship (id, source_id, target_id, type, attributes, created_at) "
                   "VALUES (?, ?, ?, 'runs_on', '{}', ?)", ("c" * 32, "a" * 32, "b" * 32, now))
        db.execute("INSERT INTO relationship_source (relationship_id, source, scope_key, last_seen, last_run_id) "
                   "VALUES (?, 'ssh', 'k', ?, 'r1')", ("c" * 32, now))
    alembic("head")
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM relationship_source").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM relationship").fetchone() == (1,)


def test_0007_fills_ended_relationships_from_the_feed(database_url):
    # Relationships ended before 0007 stay in the histories of the CIs they touched.
    import json
    import uuid

    from sqlalchemy import text

    engine = make_engine(database_url)
    rel, source, target = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        migrations.downgrade(engine, "0006")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO change_record (at, actor, object_type, object_id, action, diff) VALUES "
                              "(CURRENT_TIMESTAMP, 'old', 'relationship', :id, 'delete', :diff)"),
                         {"id": rel.hex if engine.dialect.name == "sqlite" else rel,
                          "diff": json.dumps({"source": [str(source), None], "target": [str(target), None],
                                              "type": ["runs_on", None]})})
        migrations.upgrade(engine)
        with engine.connect() as conn:
            from app.services.changes import relationships_touching

            assert relationships_touching(conn, source) == [rel] and relationships_touching(conn, target) == [rel]
    finally:
        engine.dispose()


def test_0014_gives_open_alertmanager_incidents_an_expiry(database_url):
    # An Alertmanager incident open before 0014 (its group silenced whole, say) expires like the ones
    # notified since: expires_at is the upgrade's time + the default KARTA_ALERT_EXPIRY_SECONDS. A
    # resolved one and one of another source (the generic form does not repeat itself) keep none.
    import uuid
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from app.core.config import Settings
    from app.models.types import JSONColumn, Timestamp, as_utc

    incident = sa.table("incident", sa.column("id", sa.Uuid), sa.column("group_key", sa.Text),
                        sa.column("group_key_hash", sa.String), sa.column("source", sa.String),
                        sa.column("group_labels", JSONColumn), sa.column("status", sa.String),
                        sa.column("summary", JSONColumn), sa.column("as_of_seq", sa.BigInteger),
                        sa.column("opened_at", Timestamp), sa.column("resolved_at", Timestamp),
                        sa.column("updated_at", Timestamp), sa.column("expires_at", Timestamp))
    then = datetime(2026, 1, 1, tzinfo=UTC)
    rows = {(source, status): uuid.uuid4() for source in ("alertmanager", "generic") for status in ("open", "resolved")}
    engine = make_engine(database_url)
    try:
        migrations.downgrade(engine, "0013")
        with engine.begin() as conn:
            conn.execute(incident.insert(),  # the columns of 0013: those the rows name
                         [{"id": incident_id, "group_key": f"{source}-{status}", "group_key_hash": incident_id.hex,
                           "source": source, "group_labels": {}, "status": status, "summary": {}, "as_of_seq": 0,
                           "opened_at": then, "resolved_at": then if status == "resolved" else None,
                           "updated_at": then} for (source, status), incident_id in rows.items()])
        before = datetime.now(UTC)
        migrations.upgrade(engine)
        after = datetime.now(UTC)
        with engine.connect() as conn:
            expires = dict(conn.execute(sa.select(incident.c.id, incident.c.expires_at)
                                        .where(incident.c.id.in_(rows.values()))).all())
    finally:
        engine.dispose()
    window = timedelta(seconds=Settings.model_fields["alert_expiry_seconds"].default)  # the migration's copy
    opened = expires.pop(rows["alertmanager", "open"])
    assert opened is not None and before + window <= as_utc(opened) <= after + window
    assert expires == {rows["alertmanager", "resolved"]: None, rows["generic", "open"]: None,
                       rows["generic", "resolved"]: None}


def _add_cabled_to(engine, impact_direction: str) -> None:
    """What POST /api/v1/relationship-types stored before 0015 existed."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO relationship_type (name, forward_label, reverse_label, impact_direction, "
                          "membership, description, created_at) VALUES ('cabled_to', 'wired to', 'wired to', :d, "
                          ":m, 'ours', :t)"), {"d": impact_direction, "m": False, "t": datetime.now(UTC)})


def _cabled_to(engine):
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT impact_direction, description FROM relationship_type "
                                 "WHERE name = 'cabled_to'")).all()


def test_0015_keeps_an_admins_cabled_to(database_url):
    # An admin's own cabled_to without impact is adopted as it is, and a downgrade leaves it theirs.
    engine = make_engine(database_url)
    try:
        migrations.downgrade(engine, "0014")
        assert _cabled_to(engine) == []
        _add_cabled_to(engine, "none")
        migrations.upgrade(engine)
        assert migrations.is_at_head(engine)
        assert _cabled_to(engine) == [("none", "ours")]
        migrations.downgrade(engine, "0014")
        assert _cabled_to(engine) == [("none", "ours")]
        migrations.upgrade(engine)
    finally:
        engine.dispose()


def test_0015_refuses_a_cabled_to_with_impact(database_url):
    import pytest

    engine = make_engine(database_url)
    try:
        migrations.downgrade(engine, "0014")
        _add_cabled_to(engine, "target_to_source")
        with pytest.raises(Exception, match="cabled_to exists with impact_direction 'target_to_source'"):
            migrations.upgrade(engine)
        assert migrations.current_revision(engine) == "0014"
        assert _cabled_to(engine) == [("target_to_source", "ours")]
    finally:
        engine.dispose()
