"""Secrets the service keeps for itself, shared by every worker and host that uses the database.

`web_session` is the key that encrypts and signs the web UI's session cookies: created once by the
first worker that needs it (or taken from KARTA_SESSION_SECRET), so a cookie set by one worker is
read by every other one, and a restart signs nobody out."""

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel


class ServiceSecret(SQLModel, table=True):
    __tablename__ = "service_secret"

    name: str = Field(sa_column=Column(String(100), primary_key=True))
    value: str = Field(sa_column=Column(String(200), nullable=False))
