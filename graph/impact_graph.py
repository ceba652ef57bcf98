"""The in-memory CMDB graph one service worker keeps, and the entry points of every analysis.

The service builds one `ImpactGraph` per worker at start-up (`bulk_load`) and keeps it current by
applying change records (`upsert_ci`, `add_relationship`, ...). This module owns the storage
layout; the analyses live in `propagation` (impact) and `causes` (root cause, spof). It must never
import `app/`, a web framework, an ORM or anything HTTP.

Storage layout, chosen for a million CIs in a few hundred megabytes (rules in `graph.semantics`):
  - a networkx DiGraph whose edges point the way impact flows (provider -> dependent);
  - every node's data dict is shared by all CIs of the same (class, min_members), and every
    edge's data dict by all edges with the same set of types, so neither is ever mutated in place
    (a change swaps in another shared dict);
  - the analyses walk `G._succ` / `G._pred` directly: the public views cost a call per step.

Covered dependencies (graph.semantics) are kept exact by every change, locally: whether M -> A is
covered depends only on the edges M -> G and G -> A, so a change to edge u -> v re-decides u -> v
itself when it is new, and when its membership bit appears or goes, the edges from u to v's
dependents; when its ordinary bit appears or goes, the edges from u's members to v. Removing a CI
re-decides the edges from its members to its dependents. A load or a change of semantics decides
every edge at once, walking only from members that relate to something besides their groups.
"""

from __future__ import annotations

import gc
import logging
import operator
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

import networkx as nx

from graph import causes, propagation, providers, reach
from graph.semantics import COVERED_KEY, KIND_KEY, MEMBER, ORDINARY, TYPES_KEY, EdgeTypeSets, RelationshipSemantics

CLASS_KEY = "ci_class"
MIN_MEMBERS_KEY = "min_members"
log = logging.getLogger("karta.graph")
COMPACT_RETRY_SECONDS = 300  # a compiled view's build that failed is not tried again before this


class ImpactGraph:
    """CIs and relationships in memory, with impact, root cause, spof and neighborhood queries."""

    def __init__(self, semantics: dict[str, RelationshipSemantics]):
        self._g = nx.DiGraph()
        self._types = EdgeTypeSets(semantics)
        self._payloads: dict[tuple, dict] = {}
        # kind key -> {group: members it can lose and stay up}, kept between questions and
        # dropped per group by every change that touches its members or its min_members.
        self._spares: dict[str, dict] = {}
        # Serializes writers and readers: a worker may answer from threads while applying changes.
        self._lock = threading.RLock()
        self.applied_seq: int = 0
        # The compiled impact loop's integer-indexed view (graph.compact), built beside the dicts once
        # the graph holds `compact_min_cis` CIs (None: never), and kept current by `_touch`: every CI
        # whose successors or payload change is added to each set in `_sinks` (the view's, and a build's
        # in progress). `_epoch` moves when every edge is re-laid (a load, a change of semantics): the
        # view is dropped and a build in progress gives up.
        self.compact_min_cis: int | None = None
        # graph.compact (numpy and numba, ~120 MiB in a process) is imported only when a view is built.
        self._view = None  # graph.compact.CompactView
        self._compact_failed: float | None = None  # when a build last failed (the next waits COMPACT_RETRY_SECONDS)
        self._sinks: list[set] = []
        self._epoch = 0
        self._building = False
        self._adopting: threading.Thread | None = None  # adopt_compact's thread, for wait_compact
        # A graph started view first (start_view_first): until lay_out_dicts, its succ and pred dicts are not
        # there (NotLaidOut stands in; `_dicts_due` is set) and changes go to the view alone (graph.view_changes);
        # its `_node` is a graph.id_table.NodeTable over the view's ids where those are a table (no string per CI).
        # While lay_out_dicts lays them out from the view, outside the lock, the changes applied meanwhile are
        # kept in `_replay` (None otherwise), to be applied to them before they answer.
        self._dicts_due: object | None = None
        self._replay: list[tuple] | None = None
        self._laying_out = threading.Lock()

    @classmethod
    def over(cls, tables: "ImpactGraph", node: dict, succ: dict, pred: dict, sink: set) -> "ImpactGraph":
        """A graph over these dicts (graph.view_changes: some CIs' rows only), sharing `tables`' type-set and
        payload tables, so that its edge and node data are `tables`' very dicts; every CI it touches is added
        to `sink`. It never builds a compiled view."""
        local = cls(tables._types.semantics)
        local._types, local._payloads = tables._types, tables._payloads
        g = local._g
        g._node, g._succ, g._pred = node, succ, pred
        local._sinks.append(sink)
        return local

    # ---- read-only views -------------------------------------------------------------------

    @property
    def graph(self) -> nx.DiGraph:
        """The underlying networkx graph (impact direction). Treat it, and its data dicts, as read-only."""
        return self._g

    @property
    def semantics(self) -> dict[str, RelationshipSemantics]:
        return dict(self._types.semantics)

    def __len__(self) -> int:
        return len(self._g._node)

    def __contains__(self, ci_id) -> bool:
        return ci_id in self._g._node

    def number_of_relationships(self) -> int:
        """Relationships counted one per type, as the database holds them."""
        return sum(len(d[TYPES_KEY]) for nbrs in self._g._succ.values() for d in nbrs.values())

    def number_of_links(self) -> int:
        """Pairs of CIs related by at least one relationship (several types between one pair count
        once): a C-level sum, ~30 ms for 1.5 million pairs where number_of_relationships takes 0.5 s;
        before the dicts of a graph started view first are laid out, the view's count."""
        with self._lock:
            if self._dicts_due is not None:
                return self._view_or_refuse().links()
            return sum(map(len, self._g._succ.values()))

    @property
    def broken(self) -> bool:
        """Whether a graph started view first lost its view before its dicts were laid out (changes that failed
        half way): it can answer nothing, and its dicts cannot be laid out from the view; let it go."""
        return self._dicts_due is not None and self._view is None

    @property
    def dicts_ready(self) -> bool:
        """False while a graph started view first has no succ and pred dicts: every analysis, neighbourhoods,
        the edges among CIs and the parts upstream of CIs are then read off its compiled view; what walks the
        dicts themselves (`graph`, relationships, number_of_relationships) refuses (DictsNotLaidOut)."""
        return type(self._g._pred) is not NotLaidOut

    def ci(self, ci_id) -> tuple[str | None, int | None] | None:
        """(ci_class, min_members) of a CI, or None if it is not in the graph."""
        payload = self._g._node.get(ci_id)
        return None if payload is None else (payload[CLASS_KEY], payload[MIN_MEMBERS_KEY])

    def classes(self, ci_ids: Iterable) -> dict:
        """ci_id -> class for the CIs given that the graph holds (an impact answer's, say)."""
        with self._lock:
            node = self._g._node
            if not isinstance(node, dict):  # graph.id_table.NodeTable: the lookups at once
                ci_ids = list(ci_ids)
                return {ci_id: payload[CLASS_KEY] for ci_id, payload in zip(ci_ids, node.payloads_of(ci_ids))
                        if payload is not None}
            return {ci_id: node[ci_id][CLASS_KEY] for ci_id in ci_ids if ci_id in node}

    def tally(self, ci_ids: Iterable, picked: Iterable[str]) -> tuple[Counter, list]:
        """How many of the CIs given are of each class (None for a CI the graph does not hold), and
        those whose class is in `picked`, in their order: an incident's counts by class and its
        services, in one pass under the lock, without the dict `classes` would build for the tens
        of thousands of CIs a datacenter's router takes down."""
        given = ci_ids
        picked, ci_ids = frozenset(picked), list(ci_ids)
        with self._lock:
            node = self._g._node
            if not isinstance(node, dict):  # graph.id_table.NodeTable: the lookups at once, by position if known
                at = given.positions_in(node.table) if hasattr(given, "positions_in") else None
                payloads = node.payloads_of(ci_ids) if at is None else node.payloads_at(node.table, at, strict=False)
                found = [None if payload is None else payload[CLASS_KEY] for payload in payloads]
            else:
                try:
                    found = [node[ci_id][CLASS_KEY] for ci_id in ci_ids]
                except KeyError:  # a CI removed since the answer was computed: one lookup more per CI
                    found = [node[ci_id][CLASS_KEY] if ci_id in node else None for ci_id in ci_ids]
        return Counter(found), [ci_id for ci_id, ci_class in zip(ci_ids, found) if ci_class in picked]

    # ---- loading and change records ---------------------------------------------------------

    def set_semantics(self, semantics: dict[str, RelationshipSemantics]) -> None:
        """Replace the relationship-type semantics. Edges whose type changed direction are re-laid. A graph
        started view first keeps answering from its view alone when no type its edges hold changed meaning (a
        type added, or one no edge holds changed): its edge data dicts are swapped for the new table's, every
        kind and coverage staying what it was; otherwise its dicts are laid out first (call this without holding
        the graph's lock), and the view built again from them later."""
        new = EdgeTypeSets(semantics)
        with self._lock:
            old = self._types
            if self._dicts_due is True and all(old.semantics_of(t) == new.semantics_of(t)
                                                   for t in old.present_types()):
                view = self._view_or_refuse()
                table = view.table
                for i, data in enumerate(table):  # in place: the rows' data rows stay what they index
                    table[i] = (new.covered if data[COVERED_KEY] else new.of)(data[TYPES_KEY])
                view.relinked()
                self._types = new
                self._spares.clear()
                self._cache_changed()
                return
        self.lay_out_dicts()
        with self._lock:
            old, new = self._types, EdgeTypeSets(semantics)
            self._spares.clear()
            self._drop_view()
            if all(_flips(old, t) == _flips(new, t) for t in old.present_types()):
                self._types = new
                self._cover_members(self._relink_edge_data())
                self._cache_changed()
                return
            relationships = list(self._relationships(self._g._succ))
            self._types = new
            for nbrs in self._g._succ.values():
                nbrs.clear()
            for nbrs in self._g._pred.values():
                nbrs.clear()
            succ, pred, with_type = self._g._succ, self._g._pred, new.with_type
            for source, target, type_name in relationships:
                u, v = self._impact_ends(source, target, type_name)
                succ[u][v] = pred[v][u] = with_type(succ[u].get(v), type_name)
            self._cover_members(self._members())
            self._cache_changed()

    def bulk_load(self, cis: Iterable[tuple], relationships: Iterable[tuple]) -> None:
        """Start-up fast path: load CIs (ci_id, ci_class, min_members) then relationships
        (source_id, target_id, type_name). Adds to what is there; ids seen only in a relationship
        become CIs without a class.

        The collector is paused while millions of small containers are created (each allocation
        would otherwise trigger scans of everything built so far), then the loaded graph is frozen
        out of the collector's reach so later traversals do not pay to rescan it.
        """
        with self._lock:
            self._spares.clear()
            self._drop_view()
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                self._bulk_load(cis, relationships)
            finally:
                if was_enabled:
                    gc.enable()
            gc.collect()
            gc.freeze()

    def _bulk_load(self, cis, relationships) -> None:
        node, succ, pred = self._g._node, self._g._succ, self._g._pred
        # Loading into a graph that holds relationships may cover edges around its old groups too.
        had_edges = any(succ.values())
        payload_of = self._payload
        # One string object per id: the edge rows would otherwise keep millions of duplicates.
        canonical: dict = {ci_id: ci_id for ci_id in node}
        for ci_id, ci_class, min_members in cis:
            ci_id = canonical.setdefault(ci_id, ci_id)
            node[ci_id] = payload_of(ci_class, min_members)
            if ci_id not in succ:
                succ[ci_id] = {}
                pred[ci_id] = {}
        types = self._types
        plan = {}  # type -> (flips, its single-type dict, carries membership)
        # Members that relate to something besides a group, noted while their out-edges are at
        # hand: the only CIs whose edges coverage may touch. A pass over every group's members
        # afterwards would cost a second (a million CIs), one cache miss per member.
        wide = []
        no_class = payload_of(None, None)
        for source, target, type_name in relationships:
            how = plan.get(type_name)
            if how is None:
                one = types.single(type_name)
                how = plan[type_name] = (_flips(types, type_name), one, bool(one[KIND_KEY] & MEMBER))
            flip, one, member = how
            u, v = (target, source) if flip else (source, target)
            cu = canonical.get(u)
            if cu is None:
                cu = canonical[u] = u
                node[u], succ[u], pred[u] = no_class, {}, {}
            cv = canonical.get(v)
            if cv is None:
                cv = canonical[v] = v
                node[v], succ[v], pred[v] = no_class, {}, {}
            nbrs = succ[cu]
            data = nbrs.get(cv)
            data = one if data is None else types.with_type(data, type_name)
            nbrs[cv] = data
            pred[cv][cu] = data
            if member:
                if len(nbrs) > 1:
                    wide.append(cu)
            elif len(nbrs) == 2:  # a second out-edge: is the other one a membership?
                for other in nbrs.values():
                    if other[KIND_KEY] & MEMBER:
                        wide.append(cu)
                        break
        self._cover_members(self._members() if had_edges else dict.fromkeys(wide))
        self._cache_changed()

    def upsert_ci(self, ci_id, ci_class: str | None, min_members: int | None = None) -> None:
        ci_id = _one_copy(ci_id)
        with self._lock:
            g = self._g
            g._node[ci_id] = self._payload(ci_class, min_members)
            self._group_changed(ci_id)
            self._touch(ci_id)
            if ci_id not in g._succ:
                g._succ[ci_id] = {}
                g._pred[ci_id] = {}
                self._cache_changed()

    def remove_ci(self, ci_id) -> bool:
        """Remove a CI and all its relationships; False if it was not there."""
        with self._lock:
            if ci_id not in self._g._node:
                return False
            for group in self._g._succ[ci_id]:
                self._group_changed(group)
            self._group_changed(ci_id)
            around = list(self._covered_through(ci_id))
            for provider in self._g._pred[ci_id]:
                self._touch(provider)
            self._touch(ci_id)
            self._g.remove_node(ci_id)
            for member, dependent in around:
                self._decide(member, dependent)
            self._cache_changed()
            return True

    def add_relationship(self, source_id, target_id, type_name: str) -> bool:
        """Add one typed relationship; False if it was already there. Unknown ends become CIs
        without a class (the service normally creates them first)."""
        source_id, target_id = _one_copy(source_id), _one_copy(target_id)
        with self._lock:
            for ci_id in (source_id, target_id):
                if ci_id not in self._g._node:
                    self.upsert_ci(ci_id, None, None)
            return self._link(source_id, target_id, type_name)

    def remove_relationship(self, source_id, target_id, type_name: str) -> bool:
        """Remove one typed relationship, leaving other types between the pair; False if absent."""
        with self._lock:
            u, v = self._impact_ends(source_id, target_id, type_name)
            old = self._g._succ.get(u, {}).get(v)
            if old is None or type_name not in old[TYPES_KEY]:
                return False
            data = self._types.without_type(old, type_name)
            self._group_changed(v)
            self._touch(u)
            if data is None:
                del self._g._succ[u][v]
                del self._g._pred[v][u]
            else:
                self._g._succ[u][v] = data
                self._g._pred[v][u] = data
            self._kind_changed(u, v, old, data)
            self._cache_changed()
            return True

    def apply_changes(self, changes: list[tuple]) -> None:
        """Apply (operation, *arguments) changes in order, each operation one of graph.view_changes.OPERATIONS
        (upsert_ci, remove_ci, add_relationship, remove_relationship: these methods). Before the dicts of a
        graph started view first are laid out, to its view alone, and kept for the dicts."""
        changes = list(changes)  # (read twice below: by the view's code, then kept for a lay-out under way)
        with self._lock:
            if self._dicts_due is None:
                for operation, *arguments in changes:
                    getattr(self, operation)(*arguments)
                return
            from graph import view_changes

            if self._view is None:
                raise DictsNotLaidOut("the graph's compiled view was lost before its dicts were laid out")
            try:
                view_changes.apply(self._view, self._g._node, self, changes)
            except BaseException:  # the view and the payloads may each hold part of the changes: neither is trusted
                self._drop_view()
                raise
            if self._replay is not None:  # a lay-out of the dicts under way: they get these too
                self._replay.extend(changes)

    def start_view_first(self, view) -> None:
        """Answer from `view` (graph.compact, exact for this graph's CIs as `_node` holds them) with no succ and
        pred dicts: changes go to the view alone, and lay_out_dicts lays the dicts out from it if they are
        ever needed (a change of semantics)."""
        with self._lock:
            self._drop_view()
            self._view = view
            self._g._succ = self._g._pred = NotLaidOut()
            self._dicts_due, self._replay = True, None

    def lay_out_dicts(self) -> bool:
        """Lay out the succ and pred dicts of a graph started view first from its view: the view made fresh
        (CompactView.rebased) under the graph's lock, the dicts laid out from its arrays outside it (~4 s at
        1,000,000 CIs), then, under it again, every change applied since applied to them too; both answer from
        then on. Whether this call laid them out (False: there was nothing to do, another thread did it, or
        the graph was let go meanwhile). If it raises, the graph stays as it was (view only), and a later
        call tries again. A graph whose view was lost (`broken`) raises DictsNotLaidOut: let it go."""
        from graph import view_changes

        with self._laying_out:
            with self._lock:
                if self._dicts_due is None:
                    return False
                if self._view is None:
                    raise DictsNotLaidOut("the graph's compiled view was lost before its dicts were laid out")
                view = self._rebased(self._view)  # (if it raises, nothing was changed)
                node = self._g._node.copy()  # the payloads as the view's rows stand (a dict, or graph.id_table's)
                due = self._dicts_due = object()  # this lay-out's mark: a load or new semantics replace it
                self._view = view
                self._replay = []
            try:
                g = view_changes.lay_out(view, node, self, stop=lambda: self._dicts_due is not due)
            except LayOutGivenUp:  # the graph was let go meanwhile
                return False
            except BaseException:
                with self._lock:
                    if self._dicts_due is due:
                        self._dicts_due, self._replay = True, None
                raise
            with self._lock:
                if self._dicts_due is not due:  # dropped meanwhile (a load, new semantics)
                    return False
                try:
                    ImpactGraph.over(self, g._node, g._succ, g._pred, set()).apply_changes(self._replay)
                except BaseException:
                    self._dicts_due, self._replay = True, None
                    raise
                self._g = g
                self._dicts_due, self._replay = None, None
                if self._view is not None:  # kept current by the dicts' changes from now on
                    self._sinks.append(self._view.pending)
                return True

    # ---- analyses -----------------------------------------------------------------------------

    def impact(self, failed_ids: Iterable, max_depth: int | None = None, types: Iterable[str] | None = None):
        """What the failed CIs, taken together, put down, degrade or put at risk."""
        with self._lock:
            kind_key = self._types.kind_key(types)
            view = self._current_view()
            if view is None:
                return propagation.impact(self._g, failed_ids, kind_key, max_depth, self._spares_for(kind_key))
            failed, unknown = propagation.split_known(self._g._node, failed_ids)
            return propagation.ImpactResult(failed, unknown, view.propagate(failed, kind_key, max_depth))

    # ---- the compiled view (graph.compact) -------------------------------------------------------

    @property
    def compacted(self) -> bool:
        """Whether impact questions are answered by the compiled loop over the integer-indexed view."""
        return self._view is not None

    def compact_overlay_rows(self) -> int | None:
        """How many CIs' rows the compiled view reads from its overlay (changed since it was built); None
        when there is no view."""
        view = self._view
        return None if view is None else view.rows

    def build_compact(self, slice_size: int | None = None, between=None) -> bool:
        """Build the integer-indexed view in this thread, the lock taken a slice of CIs at a time, and
        answer impact questions from it from then on; False if a load or a change of semantics
        overtook the build (nothing installed)."""
        from graph import compact

        return compact.build(self._g, self._lock, self._sinks, lambda: self._epoch, self._install_view,
                             slice_size or compact.SLICE, between) is not None

    def _install_view(self, view) -> None:  # under the lock, the view exact
        if self._view is not None:
            self._drop_sink(self._view.pending)
        self._view = view

    def _drop_sink(self, sink: set) -> None:  # under the lock
        self._sinks[:] = [s for s in self._sinks if s is not sink]  # by identity: two empty sets are equal

    def adopt_compact(self, make) -> threading.Thread | None:
        """Install the view `make(pending)` returns (graph.compact.from_snapshot: a snapshot's arrays, as
        the dicts were when the file was read), in a thread of its own once the loops are compiled; every
        CI changed from this call on is read into its overlay first. The Python loop answers until then,
        and if making it fails, until the next maybe_compact builds one from the dicts. The thread (None
        if a build is under way already)."""
        with self._lock:
            if self._building:
                return None
            self._building = True
            tracked: set = set()
            self._sinks.append(tracked)
            epoch = self._epoch

        def adopt() -> None:
            installed = False
            try:
                view = make(tracked)
                from graph import compact  # imported by make

                for step in (compact.warm_up, view.predecessors):  # the base's pred side sorted without the lock
                    if self._epoch != epoch:  # dropped (a load, a change of semantics, a graph let go): give up
                        return
                    step()
                with self._lock:
                    if self._epoch == epoch:
                        view.refresh(self._g)
                        self._install_view(view)
                        installed = True
            except Exception:  # the dicts keep answering; the next maybe_compact builds a view from them
                log.exception("the impact graph's compact view from its snapshot failed; the Python loop answers")
            finally:
                with self._lock:
                    if not installed:
                        self._drop_sink(tracked)
                    self._building = False

        thread = self._adopting = threading.Thread(target=adopt, name="karta-graph-compact", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the dicts answer, and maybe_compact tries later
            log.exception("no thread for the impact graph's compact view from its snapshot")
            with self._lock:
                self._drop_sink(tracked)
                self._building = False
            self._adopting = None
            return None
        return thread

    def wait_compact(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for a view being adopted (adopt_compact) to go in; whether the
        graph has a view then."""
        thread = self._adopting
        if thread is not None:
            thread.join(timeout)
        return self.compacted

    def drop_compact(self) -> None:
        """Forget the view, and give up a build in progress (a graph being let go: nothing keeps it alive), or
        the dicts' lay-out of a graph started view first."""
        with self._lock:
            self._drop_view()
            self._dicts_due, self._replay = None, None

    def maybe_compact(self) -> bool:
        """Build (or build again, when its overlay grew stale) the view in a thread of its own, when
        the graph is large enough; True if a build was started."""
        with self._lock:
            view = self._view
            if (self._building or self._dicts_due is not None or self.compact_min_cis is None
                    or len(self) < self.compact_min_cis
                    or (view is not None and not view.stale)
                    or (self._compact_failed is not None
                        and time.monotonic() - self._compact_failed < COMPACT_RETRY_SECONDS)):
                return False
            self._building = True
        threading.Thread(target=self._build_compact, name="karta-graph-compact", daemon=True).start()
        return True

    def _build_compact(self) -> None:
        try:
            from graph import compact

            compact.warm_up()  # compiled (or loaded from numba's cache) before the first question waits on it
            started = time.perf_counter()
            if self.build_compact():
                log.info("impact graph: compact view of %d CIs built in %.1f s", len(self._view or ()),
                         time.perf_counter() - started)
        except Exception:  # the dicts keep answering
            self._compact_failed = time.monotonic()
            log.exception("building the impact graph's compact view failed; the Python loop answers, and the "
                          "build is tried again in %d s", COMPACT_RETRY_SECONDS)
        finally:
            with self._lock:
                self._building = False

    def _current_view(self):
        """The compiled view with every change read into it (under the lock), a build asked for when its
        overlay grew stale; None without one."""
        view = self._view
        if view is not None:
            view.refresh(self._g)
            if view.stale:
                if self._dicts_due is not None:  # no dicts to build one from: the view made fresh from itself
                    try:
                        view = self._view = self._rebased(view)
                    except ValueError:  # a row naming a CI the graph no longer holds: nothing left to trust (broken)
                        self._drop_view()
                        raise
                else:
                    self.maybe_compact()
        return view

    def _rebased(self, view):
        """view.rebased() (CompactView: made fresh from itself, under the lock); when it numbered the CIs again
        into a new table of ids, the payloads' table (graph.id_table.NodeTable) made over it too, so that it
        reads the view's positions again (and the old table, maybe a shared base's, is let go)."""
        fresh = view.rebased(self._g._node)
        if fresh.kept is not None:
            node = self._g._node
            if hasattr(node, "rebased") and node.table is view.ids:  # (else it keeps reading by id: slower)
                self._g._node = node.rebased(fresh.ids, fresh.kept)
            fresh.kept = None
        return fresh

    def _touch(self, ci_id) -> None:
        for sink in self._sinks:
            sink.add(ci_id)

    def _drop_view(self) -> None:
        self._view = None
        self._sinks.clear()
        self._epoch += 1

    def root_cause(self, symptom_ids: Iterable, limit: int = 10, extra_cap: int | None = None):
        """CIs whose single failure best explains the symptoms being down, best first; with
        `extra_cap`, extra CIs down are counted no further than that (graph.causes)."""
        with self._lock:
            kind_key = self._types.kind_key(None)
            return causes.root_cause(self._g, symptom_ids, limit, kind_key, self._spares_for(kind_key), extra_cap,
                                     self._current_view())

    def spof(self, ci_id) -> list:
        """CIs whose single failure takes `ci_id` down, nearest first; [] for an unknown CI."""
        with self._lock:
            kind_key = self._types.kind_key(None)
            return causes.spof(self._g, ci_id, kind_key, self._spares_for(kind_key), self._current_view())

    def providers(self, ci_id) -> set:
        """The CIs `ci_id` depends on, transitively, along impact edges (graph.providers); set() for an
        unknown CI."""
        with self._lock:
            if ci_id not in self._g._node:
                return set()
            view = self._current_view()
            if view is not None:  # the same walk, compiled (graph.compact)
                return view.providers(ci_id, KIND_KEY)
            return providers.walk(self._g._pred, ci_id)

    def neighborhood(self, ci_id, depth: int = 1, direction: str = "both", types: Iterable[str] | None = None):
        """CIs within `depth` hops of `ci_id` and the relationships among them.

        direction: "up" follows providers (what it depends on), "down" dependents (what it
        impacts), "both" either way. Edges come back as (source, target, type) as the
        relationships were recorded, one per type; `types` keeps only those relationship types.
        Returns (set of CI ids, sorted list of edges); an unknown CI gives (set(), []).
        """
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be up, down or both, not {direction!r}")
        depth = operator.index(depth)  # a whole number of hops (1.5 would be read as 2 by one walk, 1 by the other)
        allowed = None if types is None else frozenset(types)
        with self._lock:
            if ci_id not in self._g._node:
                return set(), []
            view = self._current_view()
            if view is not None:  # the same walk, compiled (graph.compact)
                seen, among = view.neighborhood(ci_id, depth, direction != "up", direction != "down", allowed,
                                                TYPES_KEY)
            else:
                seen, among = self._neighborhood_walk(ci_id, depth, direction, allowed)
            return seen, self._edges_allowed(among, allowed)

    def _neighborhood_walk(self, ci_id, depth: int, direction: str, allowed: frozenset | None) -> tuple[set, dict]:
        """neighborhood's walk over the dicts (under the lock, `ci_id` a CI of the graph): the CIs, and
        {u: {v: data}} for the edges among them."""
        succ, pred = self._g._succ, self._g._pred
        sides = {"up": (pred,), "down": (succ,), "both": (succ, pred)}[direction]
        seen = {ci_id}
        frontier = deque([(ci_id, 0)])
        while frontier:
            u, d = frontier.popleft()
            if d >= depth:
                continue
            for adj in sides:
                for v, data in adj[u].items():
                    if v not in seen and (allowed is None or not allowed.isdisjoint(data[TYPES_KEY])):
                        seen.add(v)
                        frontier.append((v, d + 1))
        return seen, {u: {v: d for v, d in succ[u].items() if v in seen} for u in seen}

    def _edges_allowed(self, among: dict, allowed: frozenset | None) -> list:
        """The relationships of the adjacency `among` as (source, target, type), of the types `allowed`
        (every type: None), sorted."""
        return sorted(e for e in self._relationships(among) if allowed is None or e[2] in allowed)

    def edges_among(self, ci_ids: Iterable) -> list:
        """The relationships whose two ends are both in `ci_ids`, as (source, target, type), sorted:
        the edges of an answer's subgraph, for drawing it."""
        with self._lock:
            node = self._g._node
            if self._dicts_due is not None:  # no dicts: read off the compiled view
                among = self._view_or_refuse().among(ci_id for ci_id in ci_ids if ci_id in node)
            else:
                succ = self._g._succ
                keep = {ci_id for ci_id in ci_ids if ci_id in node}
                among = {u: {v: data for v, data in succ[u].items() if v in keep} for u in keep}
            return sorted(self._relationships(among))

    def upstream_part(self, starts: Iterable) -> dict:
        """graph.reach.upstream_part of this graph: node -> its successors within the part from which one of
        `starts` (those the graph holds) can be reached, `starts` included; read off the compiled view when
        the dicts are not laid out (the same part, each node's successors in the same order)."""
        with self._lock:
            if self._dicts_due is None:
                return reach.upstream_part(self._g, starts)
            node = self._g._node
            return self._view_or_refuse().upstream_part(ci_id for ci_id in starts if ci_id in node)

    def _view_or_refuse(self):
        """The current view of a graph without dicts (under the lock); DictsNotLaidOut if it lost it."""
        view = self._current_view()
        if view is None:
            raise DictsNotLaidOut("the graph's compiled view was lost before its dicts were laid out")
        return view

    def view_rows(self) -> tuple | None:
        """(the CI ids, indptr, heads as positions among them, data rows, the edge data table) of a graph
        without dicts, every row as it stands (CompactView.current_rows): what a snapshot of it holds. None
        when the dicts are laid out. Under the graph's lock."""
        with self._lock:
            if self._dicts_due is None:
                return None
            view = self._view_or_refuse()
            return (*view.current_rows(self._g._node), view.table)

    def relationships(self):
        """Every relationship as (source, target, type), as recorded."""
        with self._lock:
            return list(self._relationships(self._g._succ))

    # ---- internals -----------------------------------------------------------------------------

    def _payload(self, ci_class, min_members) -> dict:
        key = (ci_class, min_members)
        payload = self._payloads.get(key)
        if payload is None:
            ci_class = sys.intern(ci_class) if isinstance(ci_class, str) else ci_class
            payload = self._payloads[key] = {CLASS_KEY: ci_class, MIN_MEMBERS_KEY: min_members}
        return payload

    def _impact_ends(self, source_id, target_id, type_name):
        return (target_id, source_id) if _flips(self._types, type_name) else (source_id, target_id)

    def _link(self, source_id, target_id, type_name) -> bool:
        u, v = self._impact_ends(source_id, target_id, type_name)
        succ, pred = self._g._succ, self._g._pred
        old = succ[u].get(v)
        new = self._types.with_type(old, type_name)
        if new is old:
            return False
        succ[u][v] = new
        pred[v][u] = new
        self._group_changed(v)
        self._touch(u)
        if old is None:
            self._decide(u, v)
        self._kind_changed(u, v, old, new)
        self._cache_changed()
        return True

    def _relationships(self, adjacency: dict):
        types = self._types
        for u, nbrs in adjacency.items():
            for v, data in nbrs.items():
                for type_name in data[TYPES_KEY]:
                    if _flips(types, type_name):
                        yield v, u, type_name
                    else:
                        yield u, v, type_name

    def _relink_edge_data(self) -> dict:
        """Point every edge at the new type-set table's dicts (same types, fresh kinds, not
        covered); the members found on the way, for `_cover_members`."""
        succ, pred = self._g._succ, self._g._pred
        of = self._types.of
        members = {}
        for u, nbrs in succ.items():
            for v, data in nbrs.items():
                data = nbrs[v] = pred[v][u] = of(data[TYPES_KEY])
                if data[KIND_KEY] & MEMBER:
                    members[u] = None
        return members

    # ---- covered dependencies (graph.semantics) ---------------------------------------------

    def _members(self) -> list:
        """Every CI with a membership out-edge and another out-edge (a pass over all edges)."""
        return [m for m, nbrs in self._g._succ.items()
                if len(nbrs) > 1 and any(data[KIND_KEY] & MEMBER for data in nbrs.values())]

    def _cover_members(self, members: Iterable) -> None:
        """Cover every edge m -> a of these members whose dependent a depends on a group m is a
        member of. Only ever adds coverage: for a graph whose edges are all uncovered, or that only
        gained edges and types since it was exact (a load), it leaves every edge exact if `members`
        holds every member with another out-edge. Cost: per membership, the smaller of the
        member's out-edges and the group's."""
        succ, pred, types = self._g._succ, self._g._pred, self._types
        raw_kind, covered = types.raw_kind, types.covered
        for member in members:
            mine = succ[member]
            if len(mine) < 2:
                continue
            for group, data in mine.items():
                if group == member or not data[KIND_KEY] & MEMBER:
                    continue
                around = succ[group]
                for a in (mine if len(mine) <= len(around) else around):
                    if a == member or a == group:
                        continue
                    edge, up = mine.get(a), around.get(a)
                    if edge is not None and up is not None and not edge[COVERED_KEY] and raw_kind(up) & ORDINARY:
                        mine[a] = pred[a][member] = covered(edge[TYPES_KEY])
                        self._touch(member)

    def _covers(self, m, a) -> bool:
        """Whether an edge m -> a is covered: a depends on a group m is a member of."""
        if m == a:
            return False
        out, into, raw_kind = self._g._succ[m], self._g._pred[a], self._types.raw_kind
        if len(out) <= len(into):
            for g, data in out.items():
                if data[KIND_KEY] & MEMBER and g != a and g != m:
                    up = into.get(g)
                    if up is not None and raw_kind(up) & ORDINARY:
                        return True
        else:
            for g, up in into.items():
                if g != m and g != a and raw_kind(up) & ORDINARY:
                    data = out.get(g)
                    if data is not None and data[KIND_KEY] & MEMBER:
                        return True
        return False

    def _decide(self, m, a) -> None:
        """Make the edge m -> a, if there is one, covered exactly when the rule says so. Coverage
        never touches a membership bit, so no group's cached spare count goes stale."""
        data = self._g._succ[m].get(a)
        if data is not None:
            new = self._types.variant(data, self._covers(m, a))
            if new is not data:
                self._g._succ[m][a] = self._g._pred[a][m] = new
                self._touch(m)

    def _kind_changed(self, u, v, old: dict | None, new: dict | None) -> None:
        """Re-decide the edges whose coverage rests on u -> v, whose data went old -> new (None:
        no edge). The edge's own coverage rests on other edges only."""
        raw_kind = self._types.raw_kind
        flipped = (0 if old is None else raw_kind(old)) ^ (0 if new is None else raw_kind(new))
        if u == v or not flipped & (MEMBER | ORDINARY):
            return
        succ, pred = self._g._succ, self._g._pred
        if flipped & MEMBER:  # u joined or left group v: u's edges to v's dependents
            for a in _common(succ[u], succ[v]):
                if a != u and a != v:
                    self._decide(u, a)
        if flipped & ORDINARY:  # v's dependency on (group) u appeared or went: u's members' edges to v
            for m in _common(pred[u], pred[v]):
                if m != u and m != v:
                    self._decide(m, v)

    def _covered_through(self, g):
        """The edges member -> dependent whose coverage may rest on group g (before removing g)."""
        succ, pred = self._g._succ, self._g._pred
        for m, data in pred[g].items():
            if m != g and data[KIND_KEY] & MEMBER:
                for a in _common(succ[m], succ[g]):
                    if a != m and a != g:
                        yield m, a

    def _spares_for(self, kind_key: str) -> dict:
        spares = self._spares.get(kind_key)
        if spares is None:
            if len(self._spares) >= EdgeTypeSets.MAX_FILTERS:
                self._spares.clear()
            spares = self._spares[kind_key] = {}
        return spares

    def _group_changed(self, ci_id) -> None:
        for spares in self._spares.values():
            spares.pop(ci_id, None)

    def _cache_changed(self) -> None:
        cache = getattr(self._g, "__networkx_cache__", None)
        if cache:
            cache.clear()


class LayOutGivenUp(Exception):
    """A graph's dicts were being laid out when the graph was let go (graph.snapshot stops between slices)."""


class DictsNotLaidOut(RuntimeError):
    """A graph started view first was asked what only its dicts answer before they were laid out."""


class NotLaidOut:
    """Stands in for the succ and pred dicts of a graph started view first until they are laid out: any use
    raises DictsNotLaidOut (an answer from empty dicts would be wrong without a word)."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise DictsNotLaidOut("the graph's relationships are still being laid out; only its compiled view answers")

    __getitem__ = __setitem__ = __delitem__ = __iter__ = __len__ = __contains__ = __bool__ = _refuse

    def __getattr__(self, name):
        self._refuse()


def _common(a: dict, b: dict) -> list:
    """The keys of two adjacency dicts that are in both, walking the smaller."""
    if len(a) > len(b):
        a, b = b, a
    return [k for k in a if k in b]


def _interned_strings_are_mortal() -> bool:
    """Whether an interned string is freed once nothing else holds it (CPython 3.11, and 3.12.6 on):
    3.12.0 to 3.12.5 keep every interned string for the life of the process, and a worker would keep
    the id of every CI it ever applied a change to."""
    probe = sys.intern("".join(("karta-", "mortal-", "probe")))
    return sys.getrefcount(probe) < 1 << 30


_INTERN = _interned_strings_are_mortal()


def _one_copy(ci_id):
    """One string object per id, however many relationships name it (sys.intern): a change applied one by
    one brings its ids as new strings (decoded from its record), and each relationship kept its own copies
    of both ends in the adjacency dicts, two more ~85-byte strings per relationship for as long as it
    lasts (about 480,000 more objects in a worker whose 100,000-CI graph grew during a load). A graph
    loaded whole (bulk_load, a snapshot) shares one object per id already, not the interned one: the
    relationships caught up after add at most one more per id. A worker's heap strewn with the copies
    also made every later request slower (BENCHMARKS.md, "Service maps: one copy of each id"). Ids of
    other types (tests use ints) are kept as given; so is every id where interned strings are never freed."""
    return sys.intern(ci_id) if _INTERN and type(ci_id) is str else ci_id


def _flips(types: EdgeTypeSets, type_name: str) -> bool:
    """Whether a relationship of this type is stored target -> source (impact flows that way)."""
    return types.semantics_of(type_name).impact == "target_to_source"
