"""A batch's bulk writes, run in order on its connection by a second thread.

A first load spends about half its time in the database and half in Python, one after the other:
the database writes the CIs while the interpreter waits, then the interpreter builds the
relationships while the database waits. On two cores both can work at once. The writer thread spends
its time waiting on the socket (the driver releases the GIL), so this thread keeps the interpreter.

While writes are pending nothing else may use the connection: a read that depends on them goes
through `call`, which runs it after them. After a failed write the later ones are skipped (the
transaction is lost anyway) and the first error is raised by `call` or `wait`, in this thread.
"""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection


class BackgroundWrites:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
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
        self._pending.append(self._executor.submit(self._run, write, args, kwargs))

    def call(self, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`read(conn, *args, **kwargs)` once every queued write is done; its result."""
        self.wait()
        return read(self._conn, *args, **kwargs)

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
