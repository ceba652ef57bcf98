"""The start and stop of a test's load or probe threads, shared by the classes that run them."""

from __future__ import annotations

import threading
from typing import Self


class ThreadGroup:
    """`threads` started on entering; on leaving, `stop` is set and each thread joined for at most
    `join_seconds`; with `must_stop`, a thread still alive fails the test. A subclass makes `threads`
    and `stop` in its __init__."""

    join_seconds = 30.0
    must_stop = True
    threads: list[threading.Thread]
    stop: threading.Event

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=self.join_seconds)
        if self.must_stop:
            assert not any(thread.is_alive() for thread in self.threads), "a load thread did not stop"
