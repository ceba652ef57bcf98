"""The identifier index: (class family, key, normalized value) -> CI, unique in the database.

The primary key IS the uniqueness guarantee: two CIs of one family can never claim the same serial,
machine-id, MAC or fqdn, whichever process tries, because the database refuses the second row.

On PostgreSQL a second btree, ix_ci_identifier_prefix, orders values by bytes (text_pattern_ops)
whatever the database's collation, so that a prefix (`web-1.` of the fqdns of host `web-1`,
app.services.alert_binding) is a range of it; SQLite's primary key already compares by bytes.
"""

import uuid

from sqlalchemy import Column, Index, String, Uuid
from sqlmodel import Field, SQLModel


class CIIdentifier(SQLModel, table=True):
    __tablename__ = "ci_identifier"
    __table_args__ = (
        Index("ix_ci_identifier_prefix", "family", "key", "value",
              postgresql_ops={"value": "text_pattern_ops"}).ddl_if(dialect="postgresql"),
    )

    family: str = Field(sa_column=Column(String(64), primary_key=True))
    key: str = Field(sa_column=Column(String(128), primary_key=True))
    value: str = Field(sa_column=Column(String(512), primary_key=True))
    # No foreign key: written only with the CI created or locked, deleted with it (migration 0004).
    ci_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, index=True))
