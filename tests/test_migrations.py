"""The migrations are the schema: they match the models exactly, and go down and up again."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from app.core import migrations
from app.core.db import make_engine
from app.models import metadata


def test_models_match_migrations(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
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
    try:
        for revision in ("0004", "0003", "0002", "0001"):
            migrations.downgrade(engine, revision)
            migrations.upgrade(engine)
            assert migrations.is_at_head(engine)
    finally:
        engine.dispose()
