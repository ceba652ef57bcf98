"""Alembic environment: runs migrations on a connection handed over by app.core.migrations, or on KARTA_DATABASE_URL."""

from alembic import context

from app.core.config import get_settings
from app.core.db import make_engine
from app.models import metadata

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(get_settings().database_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # As app.core.migrations does: batch mode alters a table by copying it, and with foreign
                # keys enforced, dropping the old copy would cascade into the tables referring to it.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
