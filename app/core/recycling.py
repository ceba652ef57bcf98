"""A worker that has grown by a bulk load asks `karta serve` to replace it with a fresh one.

Why: a worker that went through a large load (or a keeper that walked every service map while the
estate was loaded) keeps a larger, sparser heap than a worker started after it, and spends 18-31% more
CPU on the same requests from then on (BENCHMARKS.md, "Loaded and fresh servers in one run"). Nothing
in the graph explains it: reloading the graph whole in the same process did not help. A new process
does.

How: with `KARTA_WORKER_RECYCLE_MIB` set, `karta serve` runs its workers under uvicorn's supervisor
(even one worker), and each worker checks its resident memory every `worker_recycle_check_seconds`
while it serves no request. Once it has grown by that many MiB since its impact graph was first built,
at two checks in a row, the worker writes a graph snapshot (when KARTA_GRAPH_SNAPSHOT_DIR is set, so the replacement loads it in
seconds instead of reading the database) and sends the supervisor SIGHUP. The supervisor starts a
replacement for each worker and ends the old one only once its replacement serves (uvicorn's
`restart_all`); the old one finishes its requests first (a graceful stop). No request is refused: both
processes accept on the one listening socket meanwhile.

One replacement round at a time: the worker that asks writes the round's time to a file in the
server's own directory (one per `karta serve` start); a worker started before that
time does not ask again (its replacement is on its way). A worker asks at most once.
"""

import logging
import os
import signal
import threading
import time
from pathlib import Path

log = logging.getLogger("karta.recycling")

SUPERVISOR_ENV = "KARTA_SUPERVISOR_PID"  # set by `karta serve` for the workers it supervises
SUPERVISOR_DIR_ENV = "KARTA_SUPERVISOR_DIR"  # a directory of that `karta serve`'s own
ROUND_FILE = "recycle-round"


def resident_mib() -> float:
    """This process's resident memory (MiB), from /proc/self/statm (one small read)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def supervisor_pid() -> int | None:
    """The pid of the `karta serve` that supervises this worker, if it is this process's parent."""
    value = os.environ.get(SUPERVISOR_ENV, "")
    return int(value) if value.isdigit() and int(value) == os.getppid() else None


class InFlight:
    """ASGI middleware counting the requests this worker is serving, so that the recycler measures the
    memory a worker kept, not what a request in progress holds (an ingest batch of 5,000 items
    allocates tens of MiB for its own time)."""

    def __init__(self, app, recycler: "Recycler") -> None:
        self.app = app
        self.recycler = recycler

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.recycler.in_flight += 1  # the event loop's thread only; the recycler's thread only reads it
        try:
            await self.app(scope, receive, send)
        finally:
            self.recycler.in_flight -= 1


class Recycler:
    """The check, in a daemon thread of the worker. `builds` says how many times the graph was built so
    far (LiveGraph.builds): the resident memory at the first check after the first build is the baseline.
    A later rebuild (a worker too far behind, live_graph.catch_up_max) does not move it: the load that made
    the worker rebuild is what it grew by."""

    def __init__(self, growth_mib: int, check_seconds: float, builds, before_asking=None) -> None:
        self.growth_mib = growth_mib
        self.check_seconds = check_seconds
        self._builds = builds
        self._before_asking = before_asking  # e.g. write the graph snapshot the replacement loads
        directory = os.environ.get(SUPERVISOR_DIR_ENV)
        self._round_file = Path(directory) / ROUND_FILE if directory else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = time.time()
        self.baseline: float | None = None
        self.asked = False
        self.in_flight = 0  # requests being served (InFlight)
        self._grown_before = False  # the last check found the worker grown, and idle

    def start(self) -> None:
        if self.growth_mib <= 0 or self._thread is not None:
            return
        if supervisor_pid() is None:
            log.info("worker recycling is set but this worker has no karta serve supervisor: it is not recycled")
            return
        self._thread = threading.Thread(target=self._run, name="karta-worker-recycler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        # Often until the graph is built and the baseline taken (close to the worker's start), then every
        # check_seconds.
        while not self._stop.wait(self.check_seconds if self.baseline is not None else min(self.check_seconds, 0.5)):
            try:
                if self.check():
                    return
            except Exception:  # a failed check must not end the worker; the next one tries again
                log.exception("the worker recycling check failed")

    def check(self) -> bool:
        """One check; True once the worker asked to be replaced (or learned its replacement is coming)."""
        if self._builds() == 0:
            return False  # no graph yet: no baseline to grow from
        rss = resident_mib()
        if self.baseline is None:
            # Taken busy or idle: a load that begins as the worker starts keeps it from being idle until
            # the load is over, and a baseline taken then would hide the very growth it is for.
            self.baseline = rss
            return False
        if self.in_flight:
            self._grown_before = False
            return False  # a request holds memory for its own time
        grown = rss - self.baseline
        if grown < self.growth_mib:
            self._grown_before = False
            return False
        if not self._grown_before:  # grown and idle at two checks in a row: kept, not a passing peak
            self._grown_before = True
            return False
        if self._round_started_after_me():
            log.info("worker %d grew %.0f MiB; its replacement is already on its way", os.getpid(), grown)
            return True
        supervisor = supervisor_pid()
        if supervisor is None:
            return True  # the supervisor went away: nothing to ask
        log.warning("worker %d grew %.0f MiB since its graph was built (%.0f -> %.0f MiB, KARTA_WORKER_RECYCLE_MIB="
                    "%d): asking karta serve for fresh workers", os.getpid(), grown, self.baseline, rss, self.growth_mib)
        if self._before_asking is not None:
            try:
                self._before_asking()
            except Exception:  # the replacement then loads from the database: slower, still right
                log.exception("writing the graph snapshot before recycling failed")
        if self._round_started_after_me():
            return True  # another worker asked while this one wrote its snapshot
        self._mark_round()
        self.asked = True
        os.kill(supervisor, signal.SIGHUP)
        return True

    def _round_started_after_me(self) -> bool:
        if self._round_file is None:
            return False
        try:
            return float(self._round_file.read_text()) >= self.started_at
        except (OSError, ValueError):
            return False

    def _mark_round(self) -> None:
        if self._round_file is None:
            return
        temporary = self._round_file.with_name(f"{ROUND_FILE}.{os.getpid()}")
        temporary.write_text(repr(time.time()))
        os.replace(temporary, self._round_file)
