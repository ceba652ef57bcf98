"""Token scopes. Apart from the models so that the `karta` command can name them without importing the
service (`karta discover` runs from cron and must start fast)."""

from enum import StrEnum


class Scope(StrEnum):
    read = "read"
    write = "write"
    discovery = "discovery"
    admin = "admin"
