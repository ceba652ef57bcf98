"""Keys the service generates for itself and keeps in the `service_secret` table (migration 0008), so
every worker and host on one database shares them and a restart changes none: the web UI's session key,
the key that seals webhook secrets. Never logged."""

from cryptography.fernet import Fernet
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from app.core.db import write_transaction
from app.models.web import ServiceSecret

SECRET = ServiceSecret.__table__


def stored_key(engine: Engine, name: str) -> bytes:
    """The Fernet key kept in the database under `name`, made by whichever worker asks first."""
    for _ in range(3):  # a concurrent worker may insert between our read and our insert: read again
        with write_transaction(engine) as conn:
            value = conn.execute(select(SECRET.c.value).where(SECRET.c.name == name)).scalar()
            if value is not None:
                return value.encode()
            try:
                value = Fernet.generate_key().decode()
                with conn.begin_nested():  # a savepoint: losing the race leaves the transaction usable
                    conn.execute(insert(SECRET).values(name=name, value=value))
                return value.encode()
            except IntegrityError:
                continue
    raise RuntimeError(f"could not read or create the service key {name}")
