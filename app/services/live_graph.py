"""The impact graph of one worker process, kept in step with the database through the change feed.

Built once (in the background at start-up, or by the first question), then, before every answer,
the worker reads the last committed sequence number and applies the change records up to it: a
single indexed query when nothing is new. Every uvicorn worker keeps its own copy this way and
answers from memory. Relationship types are read from the registry so a new type's impact
direction is known as soon as the registry is.

An answer must never come from a graph older than it says. So:
  - the sequence read before catching up is the one the answer reflects (`applied_seq`, shown as
    `as_of_seq`); since sequence numbers grow in commit order (app.services.history), every change
    committed before the question arrived is at or below it: a worker reads its own writes;
  - with read replicas, a question that may lag catches up from its request's replica (the graph
    only moves forward: a replica behind the graph adds nothing), and one that sends X-Karta-Min-Seq
    from a database that has that change (app/core/replicas.py);
  - more than `catch_up_max` records behind (a worker idle through a bulk load), applying them one by
    one would cost more than loading afresh, so the graph is rebuilt; it never stops half way;
  - `reading()` holds the graph still while an answer is computed from it, so another thread's
    catch-up cannot slip changes in between its parts (nor move `applied_seq` under it).

The graph holds only what the algorithms need: CI ids (as strings), class and min_members.
Names, owners and criticality come from the database for the CIs in an answer.

Snapshots (KARTA_GRAPH_SNAPSHOT_DIR, graph/snapshot.py): a worker whose graph is built writes it to a
file of the host's every `snapshot_seconds` (one worker of the host at a time), and a worker starting
later loads that file (8-10 s at 1,000,000 CIs on 2 cores, against 25-50 s from the database) and catches up from its
`applied_seq` like any graph. The file is trusted only for the schema revision this release runs, the
relationship semantics the registry holds and this database: the change record at its `applied_seq`
must be the one it names (`_lineage`). Otherwise, or if it is truncated or corrupt, it is ignored
with a warning and the graph is loaded from the database.

A graph large enough for the compiled view (graph.compact) starts from the file view first, and stays so: its
CIs' payloads and its view are all it holds (no networkx dicts, ~600 MiB fewer per worker at 1,000,000 CIs),
changes are applied to the view alone (graph.view_changes), and every question is read off the view (impact,
blast radius, root cause, spof, incidents, neighbourhoods, pictures, service maps, the inventory's and the
scrape targets' walks). Only a change of the relationship semantics lays the dicts out, from the view. The
view's base arrays are shared by the host's workers that start from the same file (graph.shared_base: a sealed
memfd, checked against the file by each worker that maps it).
"""

import gc
import hashlib
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock
from sqlalchemy import Connection, Engine, String, cast, select

from app.core import migrations
from app.core.db import prepare_read, read_transaction
from app.models import ChangeRecord, ConfigurationItem, Relationship
from app.services.bulk import id_in
from app.services.changes import last_seq
from app.services.registry import RegistryCache
from graph import ImpactGraph, RelationshipSemantics
from graph import snapshot as snapshot_file  # not `snapshot`: LiveGraph.snapshot() is the metrics' counts
from graph.snapshot import SnapshotHeader, SnapshotRejected

log = logging.getLogger("karta.graph")
CI = ConfigurationItem.__table__
REL = Relationship.__table__
CHANGE = ChangeRecord.__table__
CATCH_UP_PAGE = 10_000
# Past this many records behind, the graph is rebuilt rather than caught up. Measured: catching up
# costs ~20 us a record (120,000 in 2.3 s on SQLite, reads included), a million-CI graph loads in
# 22 s (BENCHMARKS.md): at the cap, catching up still takes a fifth of a big graph's rebuild.
CATCH_UP_MAX = 200_000
SNAPSHOT_FILE = "impact-graph.snapshot"
# A snapshot is taken in slices of this many CIs, each under the graph's lock (~10-70 ms), questions
# answered in between; if the graph moved meanwhile it is taken again, and after CAPTURE_TRIES such
# tries in one hold of the lock (1.5-2.3 s at 1,000,000 CIs: BENCHMARKS.md, "A graph that starts from a
# snapshot").
CAPTURE_SLICE = 4096
CAPTURE_TRIES = 3


def _module_digest() -> str:
    """A digest of this module's source (see LiveGraph.schema_revision); one no other process shares when it
    cannot be read (snapshots are then written but never trusted)."""
    try:
        return hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8).hexdigest()
    except OSError:
        return uuid.uuid4().hex


MODULE_DIGEST = _module_digest()


def min_members_of(attributes_value: Any) -> int | None:
    try:
        value = int(attributes_value)
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


class LiveGraph:
    def __init__(self, engine: Engine, registry_cache: RegistryCache, *, catch_up_max: int = CATCH_UP_MAX,
                 catch_up_page: int = CATCH_UP_PAGE, snapshot_dir: Path | str | None = None,
                 snapshot_seconds: float = 300.0, schema_revision: str | None = None,
                 compact_min_cis: int | None = None, view_first: bool = True) -> None:
        self._engine = engine
        self.compact_min_cis = compact_min_cis  # graph.compact: a graph this large gets its compiled view
        # A graph that large, loaded from a snapshot, answers as soon as its view is made, and from the view alone
        # (graph.snapshot.load(view_first=True)): its networkx dicts are never laid out unless new semantics need them.
        self.view_first = view_first
        self._registry = registry_cache
        self._graph: ImpactGraph | None = None
        self._lock = threading.Lock()
        self.catch_up_max = catch_up_max
        self.catch_up_page = catch_up_page
        self.load_seconds: float | None = None
        self.builds = 0
        # Snapshots: off without a directory. The schema revision a snapshot is written for and trusted
        # at is the migrations' head this release runs (`karta serve` refuses a database behind it).
        self.snapshot_path = Path(snapshot_dir) / SNAPSHOT_FILE if snapshot_dir else None
        self.snapshot_seconds = snapshot_seconds
        self._schema_revision = schema_revision
        self._snapshots_stop = threading.Event()
        self._snapshots_thread: threading.Thread | None = None
        # The applied_seq of the snapshot the last build started from (None: from the database), and
        # what the last snapshot written cost (write_snapshot).
        self.built_from_snapshot: int | None = None
        self.last_snapshot: dict[str, Any] | None = None
        self.snapshot_skipped: str | None = None  # why the last write_snapshot wrote nothing
        # (applied_seq, the change record there as _lineage says it) of the graph held: the history it
        # followed. A catch-up first checks that the database still has that record (a database restored
        # or failed over to a replica that missed commits reuses sequence numbers: the graph would keep
        # changes the database lost and skip the records that took their numbers), and a snapshot is
        # written only with it, so a graph that followed another history is never handed on.
        self._anchor: tuple[int, str | None] = (0, None)
        # Moves whenever the relationships held may have changed (a build, a semantics change, a
        # relationship created or deleted, a CI deleted): what is derived from the edges alone (an
        # inventory's service groups) is kept while it stands still. Read it inside reading().
        self.edges_version = 0
        # Set when a graph's changes failed on its compiled view (_caught_up): the next build skips the snapshot.
        self._reload_from_database = False

    @contextmanager
    def reading(self) -> Iterator[ImpactGraph]:
        """The graph with every change committed before the call applied, held still until the block
        ends: an answer computed inside reflects exactly `graph.applied_seq`. Keep the block to graph
        work; database reads and drawing belong after it. Ask it through ImpactGraph's methods: a graph
        started view first has no networkx dicts (`graph.graph`'s succ and pred refuse)."""
        prepare_read(self._engine)  # a wait for a replica (X-Karta-Min-Seq) happens here, not under the lock
        with self._lock:
            yield self._refresh()

    def snapshot(self, wait_seconds: float) -> tuple[int, int, int, int | None] | None:
        """(CIs, related pairs of CIs, applied_seq, the rows in the compiled view's overlay or None when
        there is no view: graph.compact) of the graph as it is, without catching up (for metrics); None
        before it is built, or while a catch-up or build holds it past `wait_seconds`. Pairs, not
        relationships: counting those walks every edge under the lock (0.5 s at 1.5 million). A graph started
        view first whose view was lost before its dicts were laid out (`broken`) answers nothing: None too."""
        if not self._lock.acquire(timeout=wait_seconds):
            return None
        try:
            graph = self._graph
            if graph is None or graph.broken:
                return None
            return len(graph), graph.number_of_links(), graph.applied_seq, graph.compact_overlay_rows()
        finally:
            self._lock.release()

    def warm_up(self, before=None) -> None:
        threading.Thread(target=self._warm_up, args=(before,), name="karta-graph-load", daemon=True).start()

    def _warm_up(self, before) -> None:
        try:
            if before is not None:
                before()
            with self.reading():
                pass
        except Exception:  # the first question will try again and report the error itself
            log.exception("building the impact graph at start-up failed")

    def _refresh(self) -> ImpactGraph:
        semantics = self._semantics()
        graph = self._graph
        if graph is not None:
            if semantics != graph.semantics and not graph.broken:  # (a broken graph is loaded again below)
                self._new_semantics(graph, semantics)
            if not self._reload_from_database and self._caught_up(graph):
                graph.maybe_compact()  # a graph that grew past the threshold, or a view gone stale (cheap)
                return graph
            if not self._reload_from_database:
                log.warning("impact graph more than %d changes behind (at seq %d): rebuilding it",
                            self.catch_up_max, graph.applied_seq)
            # Let the old graph go before loading the new one (never two in memory); the load froze it
            # out of the collector's reach, so hand its cycles back to the collector. A compiled view's
            # build running on it gives up (it would keep it alive).
            graph.drop_compact()
            self._graph = graph = None
            gc.unfreeze()
        self._graph = self._build(semantics)
        self.edges_version += 1
        self._graph.compact_min_cis = self.compact_min_cis
        self._graph.maybe_compact()
        return self._graph

    def _new_semantics(self, graph: ImpactGraph, semantics: dict[str, RelationshipSemantics]) -> None:
        """graph.set_semantics; for a graph without dicts, whose dicts it may have to lay out first (when a type
        its edges hold changed meaning), a failure lets the graph go to be loaded again from the database, not
        tried again by every question."""
        try:
            graph.set_semantics(semantics)
        except Exception:
            if graph.dicts_ready:
                raise
            log.exception("new relationship semantics failed on the impact graph's compiled view: the graph is "
                          "loaded again")
            self._reload_from_database = True
        self.edges_version += 1

    def _semantics(self) -> dict[str, RelationshipSemantics]:
        return {
            name: RelationshipSemantics(impact=info.impact_direction, membership=info.membership)
            for name, info in self._registry.get().relationship_types.items()
        }

    def _id_column(self, column, conn):
        # PostgreSQL renders the canonical text itself, which saves a million uuid -> str in Python.
        return cast(column, String) if conn.dialect.name == "postgresql" else column

    def _build(self, semantics: dict[str, RelationshipSemantics]) -> ImpactGraph:
        started = time.perf_counter()
        graph = None
        if not self._reload_from_database:
            graph = self._from_snapshot(semantics)
        self._reload_from_database = False  # (set again by a snapshot's graph that broke: loaded below)
        if graph is not None:
            self.builds += 1
            self.load_seconds = time.perf_counter() - started
            log.info("impact graph loaded from snapshot at seq %d and caught up to %d: %d CIs in %.1f s",
                     self.built_from_snapshot, graph.applied_seq, len(graph), self.load_seconds)
            return graph
        return self._from_database(semantics, started)

    def _from_database(self, semantics: dict[str, RelationshipSemantics], started: float) -> ImpactGraph:
        graph = ImpactGraph(semantics)
        with read_transaction(self._engine, begin=True) as conn:
            # Read first: whatever commits while the tables stream in is at most applied twice, and
            # applying a record again changes nothing.
            seq = last_seq(conn)
            stream = conn.execution_options(stream_results=True, yield_per=50_000)
            cis = stream.execute(select(self._id_column(CI.c.id, conn), CI.c.ci_class,
                                        CI.c.attributes["min_members"].as_string()))
            relationships = stream.execute(select(self._id_column(REL.c.source_id, conn),
                                                  self._id_column(REL.c.target_id, conn), REL.c.type))
            graph.bulk_load(
                ((str(ci_id), ci_class, min_members_of(k)) for ci_id, ci_class, k in cis),
                ((str(source), str(target), rel_type) for source, target, rel_type in relationships),
            )
            anchor = (seq, _lineage(conn, seq))
        graph.applied_seq, self._anchor = seq, anchor
        self.builds += 1
        self.built_from_snapshot = None
        self.load_seconds = time.perf_counter() - started
        log.info("impact graph loaded: %d CIs, %d relationships in %.1f s", len(graph),
                 graph.number_of_relationships(), self.load_seconds)
        return graph

    # ---- snapshots ----------------------------------------------------------------------------------

    def schema_revision(self) -> str:
        """The migrations' head this release runs, and a digest of this module, which decides what the
        graph holds of a CI (min_members_of, the queries of a load and of a catch-up): a release that
        changes either never trusts a file an older one wrote."""
        if self._schema_revision is None:
            self._schema_revision = f"{migrations.head_revision()}+{MODULE_DIGEST}"
        return self._schema_revision

    def _from_snapshot(self, semantics: dict[str, RelationshipSemantics]) -> ImpactGraph | None:
        """The graph of the snapshot file, caught up to the last committed change; None (logged) when
        snapshots are off, there is none, it is not to be trusted or it is too far behind."""
        path = self.snapshot_path
        if path is None or _directory_refused(path.parent, create=False) is not None:
            return None
        if not path.exists():
            log.info("no impact graph snapshot at %s yet: loading from the database", path)
            return None

        def same_database(header: SnapshotHeader) -> None:
            # The header's sequence is one a database column holds (graph.snapshot ranges it first).
            with read_transaction(self._engine, routed=False) as conn:
                lineage = _lineage(conn, header.applied_seq)
            if lineage != header.lineage:
                raise SnapshotRejected(f"written for another database (its change at seq {header.applied_seq} "
                                       "is not this database's)")

        try:
            graph, header = snapshot_file.load(path, semantics, schema_revision=self.schema_revision(),
                                               accept=same_database, compact_min_cis=self.compact_min_cis,
                                               view_first=self.view_first, share=True)
        except SnapshotRejected as exc:
            log.warning("impact graph snapshot %s ignored (%s): loading from the database", path, exc)
            return None
        self.built_from_snapshot = header.applied_seq
        self._anchor = (header.applied_seq, header.lineage)  # same_database checked it against the database
        caught_up = False
        try:
            caught_up = self._caught_up(graph)
        finally:
            if not caught_up:  # a graph let go: its view, being made from the file, would keep it alive till then
                graph.drop_compact()
        if caught_up:
            return graph
        log.warning("impact graph snapshot %s not used (more than %d changes behind at seq %d, or its changes "
                    "failed on its compiled view): loading from the database", path, self.catch_up_max,
                    header.applied_seq)
        del graph
        gc.unfreeze()  # the snapshot's graph was frozen out of the collector's reach: hand it back
        return None

    def start_snapshots(self) -> None:
        """Write snapshots in the background (when a directory is set), checking every so often whether the
        file is due; `stop_snapshots` ends it."""
        if self.snapshot_path is None or self._snapshots_thread is not None:
            return
        self._snapshots_thread = threading.Thread(target=self._write_snapshots, name="karta-graph-snapshots",
                                                  daemon=True)
        self._snapshots_thread.start()

    def stop_snapshots(self) -> None:
        """Returns once a write in progress ended: a capture stops at its next slice; encoding and writing
        the file (~10 s at 1,000,000 CIs) are waited for, 25 s at most (within the unit's stop timeout)."""
        self._snapshots_stop.set()
        if self._snapshots_thread is not None:
            self._snapshots_thread.join(timeout=25)

    def _write_snapshots(self) -> None:
        # Checked more often than written: a worker that starts on a host without a fresh file writes one
        # soon after its graph is built, and the file's age is checked under the writers' lock anyway.
        while not self._snapshots_stop.wait(min(self.snapshot_seconds / 4, 60.0)):
            try:
                self.write_snapshot()
            except Exception:
                log.exception("writing the impact graph snapshot failed; trying again later")

    def write_from_database(self, *, lock_wait: float) -> dict[str, Any]:
        """What `karta graph snapshot` runs: the graph loaded from the database as a worker without a snapshot
        loads it (a file already there is not read), then written as the workers' writer writes it (its
        directory checks, its writers' lock, waited for `lock_wait` seconds at most). What the write cost;
        SnapshotNotWritten saying why when nothing was written."""
        if self.snapshot_path is None:
            raise SnapshotNotWritten("no snapshot directory")
        problem = directory_problem(self.snapshot_path.parent, create=True)
        if problem is not None:
            raise SnapshotNotWritten(problem)
        with self._lock:
            self._graph = None
            self._graph = self._from_database(self._semantics(), time.perf_counter())
            self.edges_version += 1
        written = self.write_snapshot(force=True, lock_wait=lock_wait)
        if written is None:
            raise SnapshotNotWritten(self.snapshot_skipped or "nothing written")
        return written

    def write_snapshot(self, *, force: bool = False, lock_wait: float = 0) -> dict[str, Any] | None:
        """Write the graph to the snapshot file if the file is older than `snapshot_seconds` (or `force`),
        the graph is built and no other worker of the host is writing it (waited for `lock_wait` seconds);
        what the write cost (also kept in `last_snapshot`), or None when nothing was written (why, in
        `snapshot_skipped`).

        The graph is caught up first (as a question would), taken in slices under the lock
        (CAPTURE_SLICE), then encoded and written with no lock held."""
        path = self.snapshot_path
        self.snapshot_skipped = None
        if path is None or self._graph is None:
            self.snapshot_skipped = "no snapshot directory" if path is None else "the graph is not built"
            return None
        problem = _directory_refused(path.parent, create=True)
        if problem is not None:
            self.snapshot_skipped = problem
            return None
        writers = snapshot_file.writer_lock(path)
        try:
            writers.acquire(timeout=lock_wait)
        except filelock.Timeout:
            self.snapshot_skipped = f"another process is writing {path}"
            return None  # another worker of this host is writing it
        try:
            if not force and path.exists() and time.time() - path.stat().st_mtime < self.snapshot_seconds:
                self.snapshot_skipped = "the file is not due yet"
                return None
            if not force and self._unchanged(path):
                os.utime(path)  # a quiet database: the file already holds this very graph
                self.snapshot_skipped = "the file already holds this graph"
                return None
            started = time.perf_counter()
            # The collector is paused from the capture to the file (~10 s at 1,000,000 CIs, as for a load):
            # the capture's lists hold millions of references, and a collection between two slices
            # walked them all (~0.1 s, the GIL held).
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                written = self._write_snapshot(path, started)
            finally:
                if was_enabled:
                    gc.enable()
        finally:
            writers.release()
        if written is not None:
            self.last_snapshot = written
            log.info("impact graph snapshot written at seq %d: %d CIs, %.0f MB in %.1f s (lock held %.0f ms at most)",
                     written["applied_seq"], written["cis"], written["bytes"] / 1e6, written["seconds"],
                     written["lock_max_seconds"] * 1000)
        return written

    def _write_snapshot(self, path: Path, started: float) -> dict[str, Any] | None:
        """Capture, encode and write (under the writers' lock); what it cost, or None if nothing was written."""
        taken = self._capture()
        if taken is None:
            self.snapshot_skipped = self.snapshot_skipped or "the graph was dropped or the worker is stopping"
            return None
        capture, holds, tries, anchor = taken
        try:
            with read_transaction(self._engine, routed=False) as conn:
                lineage = _lineage(conn, capture.applied_seq)
            if lineage is None:  # no change recorded yet (or pruned since): nothing ties the file to this database
                self.snapshot_skipped = (f"the database holds no change record at seq {capture.applied_seq} (none "
                                         "recorded yet?): nothing would tie the file to it")
                return None
            if anchor != (capture.applied_seq, lineage):
                # The graph followed a history the database no longer has (restored, failed over): the next
                # question rebuilds it; a file of it would be trusted by every worker that starts.
                self.snapshot_skipped = (f"the change at seq {capture.applied_seq} is not the one the graph followed "
                                         "(the database was restored or failed over?)")
                log.warning("impact graph snapshot not written: %s", self.snapshot_skipped)
                return None
            captured, cis = time.perf_counter(), len(capture.ids)
            snapshot_file.remove_leftovers(path)
            size = snapshot_file.write(
                snapshot_file.encode(capture, schema_revision=self.schema_revision(), lineage=lineage), path)
        finally:
            capture.release()
        done = time.perf_counter()
        return {"applied_seq": capture.applied_seq, "cis": cis, "bytes": size, "seconds": done - started,
                "capture_seconds": captured - started, "write_seconds": done - captured,
                "lock_max_seconds": max(holds), "lock_total_seconds": sum(holds), "tries": tries}

    def _capture(self) -> tuple[snapshot_file.Capture, list[float], int, tuple[int, str | None]] | None:
        """The caught-up graph's content, and how long each hold of the lock lasted; None if it is not built.
        Taken in slices while nothing moves it (its applied_seq, its edges_version and the graph itself
        are the same at every slice), else taken again; the last try holds the lock throughout."""
        holds: list[float] = []
        for tries in range(1, CAPTURE_TRIES + 2):
            whole = tries > CAPTURE_TRIES
            with self._held(holds):
                if self._graph is None:
                    return None
                graph = self._refresh()
                state, anchor = (graph, graph.applied_seq, self.edges_version), self._anchor
                capture = snapshot_file.Capture(graph)
                while whole and not capture.done:
                    # Still in slices, the lock held throughout: one C-level pass over a million CIs held
                    # the GIL ~1 s, stalling every thread of the worker (health checks too), not only
                    # the graph's questions.
                    capture.take(CAPTURE_SLICE)
            while not capture.done:
                if self._snapshots_stop.is_set():  # the worker is stopping: a write is not worth its wait
                    capture.release()
                    return None
                with self._held(holds):
                    graph = self._graph
                    if (graph, graph and graph.applied_seq, self.edges_version) != state:
                        break
                    capture.take(CAPTURE_SLICE)
            if capture.done:
                return capture, holds, tries, anchor
        raise AssertionError("the last try holds the lock throughout")  # pragma: no cover

    @contextmanager
    def _held(self, holds: list[float]) -> Iterator[None]:
        with self._lock:
            started = time.perf_counter()
            try:
                yield
            finally:
                holds.append(time.perf_counter() - started)

    def _unchanged(self, path: Path) -> bool:
        """Whether the file holds the graph as it is once caught up (checked without taking it: reading the
        file's header costs ~0.2 s at 1,000,000 CIs, taking the graph several)."""
        with self._lock:
            graph = self._graph
            if graph is None:
                return False
            graph = self._refresh()
            seq, semantics, anchor = graph.applied_seq, graph.semantics, self._anchor
        try:
            header = snapshot_file.read_header(path)
        except SnapshotRejected:
            return False
        with read_transaction(self._engine, routed=False) as conn:
            lineage = _lineage(conn, seq)
        if anchor != (seq, lineage):
            return False  # the graph followed another history: the write refuses it, and says why
        return (header.applied_seq, header.lineage, header.schema_revision, header.semantics_digest,
                header.code_digest) == (seq, lineage, self.schema_revision(), snapshot_file.semantics_digest(semantics),
                                        snapshot_file.CODE_DIGEST)

    def _caught_up(self, graph: ImpactGraph) -> bool:
        """_catch_up; False too when the changes fail on the compiled view of a graph started view first (the
        view and its payloads then hold part of them, `broken`: nothing is left to answer from), so that the
        graph is loaded again, from the database (a file's catch-up may fail the same way)."""
        if not graph.broken:
            try:
                return self._catch_up(graph)
            except Exception:
                if not graph.broken:
                    raise
                log.exception("applying changes to the impact graph's compiled view failed: the graph is loaded again")
        self.snapshot_skipped = "the graph's changes failed on its compiled view"
        self._reload_from_database = True
        return False

    def _catch_up(self, graph: ImpactGraph) -> bool:
        """Apply every record up to the last committed one; False, having applied none, when there
        are more than `catch_up_max` of them, or when the database no longer holds the record the graph
        last applied (`_anchor`: its history was rewritten; the graph must be loaded again)."""
        with read_transaction(self._engine, begin=True) as conn:
            target = last_seq(conn)
            if target <= graph.applied_seq:
                # Nothing new; or a read replica behind the graph (it only moves forward), which a
                # history rewritten shorter looks like until it grows past the graph's sequence.
                return True
            if self._anchor != (graph.applied_seq, _lineage(conn, graph.applied_seq)):
                log.warning("the change at seq %d is not the one the impact graph applied (the database was "
                            "restored or failed over?): loading the graph again", graph.applied_seq)
                return False
            if target - graph.applied_seq > self.catch_up_max and conn.execute(
                select(CHANGE.c.seq).where(CHANGE.c.seq > graph.applied_seq).order_by(CHANGE.c.seq)
                .offset(self.catch_up_max).limit(1)  # sequence numbers have gaps: count the records
            ).first() is not None:
                return False
        # At most catch_up_max records lie at or below target: the pages are bounded.
        for _ in range(self.catch_up_max // self.catch_up_page + 1):
            with read_transaction(self._engine, begin=True) as conn:
                records = conn.execute(
                    select(CHANGE.c.seq, CHANGE.c.object_type, CHANGE.c.object_id, CHANGE.c.action, CHANGE.c.diff,
                           CHANGE.c.actor, CHANGE.c.at)
                    .where(CHANGE.c.seq > graph.applied_seq, CHANGE.c.seq <= target)
                    .order_by(CHANGE.c.seq).limit(self.catch_up_page)
                ).all()
                if not records:
                    break
                touched = {r.object_id for r in records if r.object_type == "ci" and r.action != "delete"}
                current = {}
                if touched:
                    current = {ci_id: (ci_class, min_members_of(k)) for ci_id, ci_class, k in conn.execute(
                        select(CI.c.id, CI.c.ci_class, CI.c.attributes["min_members"].as_string())
                        .where(id_in(conn, CI.c.id, touched)))}
            if any(r.object_type == "relationship" or (r.object_type == "ci" and r.action == "delete") for r in records):
                self.edges_version += 1
            changes = [change for change in (_change(record, current) for record in records) if change is not None]
            known = graph.semantics
            if any(change[0] == "add_relationship" and change[3] not in known for change in changes):
                # A type this worker's registry did not hold yet (made within its cache's seconds): read again
                # first, so that its edges carry its meaning at once, and, on a graph without dicts, come to the
                # view as a type added (no lay-out), not as one whose meaning changed under its edges.
                self._registry.invalidate()
                semantics = self._semantics()
                if semantics != known:
                    self._new_semantics(graph, semantics)
                    if self._reload_from_database:
                        return False
            graph.apply_changes(changes)
            graph.applied_seq, self._anchor = records[-1].seq, (records[-1].seq, _lineage_of(records[-1]))
            if len(records) < self.catch_up_page:
                break
        if graph.applied_seq != target:  # the last record gone since target was read (pruned): no anchor there
            graph.applied_seq, self._anchor = target, (target, None)
        return True


def _change(record: Any, current: dict[uuid.UUID, tuple[str, int | None]]) -> tuple | None:
    """The graph's change (ImpactGraph.apply_changes) a change record makes; None for one that changes nothing
    the graph holds."""
    object_id, diff = record.object_id, record.diff
    if record.object_type == "ci":
        if record.action != "delete" and object_id in current:
            return ("upsert_ci", str(object_id), *current[object_id])
        return ("remove_ci", str(object_id))
    if record.object_type == "relationship" and record.action in ("create", "delete"):
        side = 1 if record.action == "create" else 0
        ends = (diff.get("source", [None, None])[side], diff.get("target", [None, None])[side],
                diff.get("type", [None, None])[side])
        if None in ends:
            return None
        return ("add_relationship" if record.action == "create" else "remove_relationship", *ends)
    return None


def _lineage(conn: Connection, seq: int) -> str | None:
    """What ties a graph at `seq` to this database's history: the change record at `seq` (a snapshot of
    another database, or of this one before a restore rewrote its history, names another record), or
    None when there is none (seq 0: no change recorded yet)."""
    row = conn.execute(select(CHANGE.c.seq, CHANGE.c.at, CHANGE.c.actor, CHANGE.c.object_type, CHANGE.c.object_id,
                              CHANGE.c.action).where(CHANGE.c.seq == seq)).first()
    return None if row is None else _lineage_of(row)


def _lineage_of(record: Any) -> str:
    """_lineage of a change record read with seq, object_type, object_id, action, actor and at."""
    return f"{record.seq} {record.object_type} {record.object_id} {record.action} {record.actor} {record.at.isoformat()}"


class SnapshotNotWritten(Exception):
    """LiveGraph.write_from_database wrote nothing; the message says why."""


def _directory_refused(directory: Path, *, create: bool) -> str | None:
    """directory_problem, logged unless the directory is merely missing."""
    problem = directory_problem(directory, create=create)
    if problem is not None and problem != "missing":
        log.warning("impact graph snapshots off: %s", problem)
    return problem


def directory_problem(directory: Path, *, create: bool) -> str | None:
    """Why snapshots may not be read from and written to `directory`, or None: it must be the service's own
    (owned by its user, not writable by others), since whoever can write the file decides what every
    worker's impact answers say. Created (mode 0700) when missing and `create`; "missing" otherwise."""
    try:
        if create:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"{directory}: {exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a directory"
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        return f"{directory} must belong to this service's user and be writable by it alone"
    return None
