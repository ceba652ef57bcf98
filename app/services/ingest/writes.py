"""A batch's bulk writes, run in order on its connection by a second thread.

On PostgreSQL a first load spends about half its time in the database and half in Python, one after
the other: the database writes the CIs while the interpreter waits, then the interpreter builds the
relationships while the database waits. On two cores both can work at once. The writer thread spends
its time waiting on the socket (the driver releases the GIL), so this thread keeps the interpreter.

While writes are pending nothing else may use the connection: a read that depends on them is queued
as a write is. After a failed write the later ones are skipped (the transaction is lost anyway) and
the first error is raised by `wait` (or on leaving the block), in this thread.
"""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection


class BackgroundWrites:
    def __init__(self, conn: Connection, *, background: bool = True) -> None:
        self._conn = conn
        # SQLite's driver takes the GIL back for every row it binds, so a writer thread there only
        # fights this one for it: run inline (measured slower in a thread, BENCHMARKS.md).
        self._inline = conn.dialect.name == "sqlite" or not background
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="karta-ingest-writes")
        self._pending: list[Future] = []
        self._error: BaseException | None = None

    def __enter__(self) -> "BackgroundWrites":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Even when this thread failed, the connection is not handed back (rolled back, closed)
        # while the writer may still be using it; writes not started are dropped then.
        self._executor.shutdown(wait=True, cancel_futures=exc_type is not None)
        if exc_type is None:
            self.wait()

    def submit(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue `write(conn, *args, **kwargs)` after the writes queued before it."""
        if self._inline:
            self._run(write, args, kwargs)
            return
        self._pending.append(self._executor.submit(self._run, write, args, kwargs))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()
        if self._error is not None:
            raise self._error

    def _run(self, write: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        if self._error is not None:
            return
        try:
            write(self._conn, *args, **kwargs)
        except BaseException as exc:
            self._error = exc
