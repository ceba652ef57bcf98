"""Dropping and restoring foreign keys in migrations, on PostgreSQL and on SQLite (0004, 0006).

A key is (table, column, referred table, referred column, ON DELETE, the name PostgreSQL gave it).
SQLite keys have no names: batch mode names them by SQLITE_NAMING to find them, and a downgrade
creates them under the same names, so that the upgrade after it finds them again.
"""

from alembic import op

SQLITE_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}

ForeignKey = tuple[str, str, str, str, str | None, str]


def drop_foreign_keys(keys: list[ForeignKey]) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, column, referred, _, _, pg_name in keys:
        if postgres:
            op.drop_constraint(pg_name, table, type_="foreignkey")
        else:
            with op.batch_alter_table(table, naming_convention=SQLITE_NAMING) as batch:
                batch.drop_constraint(f"fk_{table}_{column}_{referred}", type_="foreignkey")


def restore_foreign_keys(keys: list[ForeignKey]) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, column, referred, referred_column, ondelete, pg_name in keys:
        if postgres:
            op.create_foreign_key(pg_name, table, referred, [column], [referred_column], ondelete=ondelete)
        else:
            with op.batch_alter_table(table, naming_convention=SQLITE_NAMING) as batch:
                batch.create_foreign_key(f"fk_{table}_{column}_{referred}", referred, [column], [referred_column],
                                         ondelete=ondelete)
