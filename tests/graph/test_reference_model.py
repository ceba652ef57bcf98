"""The fast algorithms against a slow, literal reading of the rules on random graphs.

The reference recomputes every CI's state from all its providers until nothing changes (the least
fixed point), with no work queue, counters or early exits. Random graphs bring cycles, groups
with any k, several types between one pair and no-impact relationships.
"""

import random
from collections import Counter, deque

import pytest

from graph import causes
from tests.graph.conftest import SEMANTICS, build

STATES = {0: None, 1: "at_risk", 2: "degraded", 3: "down"}
TYPES = sorted(SEMANTICS)


def random_graph(seed):
    rng = random.Random(seed)
    n = rng.randint(6, 22)
    cis = [(f"c{i}", "x", rng.choice([None, None, 1, 2, 3])) for i in range(n)]
    rels = set()
    for _ in range(rng.randint(n, 3 * n)):
        s, t = rng.sample(range(n), 2)
        rels.add((f"c{s}", f"c{t}", rng.choice(TYPES)))
    return cis, sorted(rels)


def impact_edges(rels, types=None):
    """(provider, dependent, is_membership) straight from the relationship list. An ordinary edge
    M -> A is left out when A depends on a group G that M is a member of (covered, decided on all
    types whatever `types` keeps)."""
    every = []
    for s, t, name in rels:
        sem = SEMANTICS[name]
        if sem.impact != "none":
            u, v = (t, s) if sem.impact == "target_to_source" else (s, t)
            every.append((u, v, sem.membership, name))
    member = {(u, v) for u, v, m, _ in every if m}
    ordinary = {(u, v) for u, v, m, _ in every if not m}
    covered = {(m, a) for m, a in ordinary for g in {v for _, v in member}
               if len({m, g, a}) == 3 and (m, g) in member and (g, a) in ordinary}
    return [(u, v, m) for u, v, m, name in every
            if (types is None or name in types) and (m or (u, v) not in covered)]


def reference_impact(cis, rels, failed, types=None, max_depth=None):
    k = {ci: (1 if mm is None else mm) for ci, _, mm in cis}
    edges = impact_edges(rels, types)
    dist = dict.fromkeys(failed, 0)
    queue = deque(failed)
    while queue:
        u = queue.popleft()
        for a, b, _ in edges:
            if a == u and b not in dist and (max_depth is None or dist[u] < max_depth):
                dist[b] = dist[u] + 1
                queue.append(b)
    edges = [e for e in edges if e[0] in dist and e[1] in dist]
    state = {ci: (3 if ci in failed else 0) for ci in dist}
    for _ in range(4 * len(cis) + 4):
        new = dict(state)
        for v in dist:
            if v in failed:
                continue
            worst = 0
            members = [u for u, b, m in edges if b == v and m]
            members += [u for u, b, m in impact_edges(rels, types) if b == v and m and u not in dist]
            lost = sum(1 for u in members if state.get(u, 0) == 3)
            if lost:
                worst = 3 if len(members) - lost < k[v] else 2
            elif any(state.get(u, 0) for u in members):
                worst = 1
            for u, b, m in edges:
                if b == v and not m and state[u]:
                    worst = max(worst, 3 if state[u] == 3 else 1)
            new[v] = max(worst, state[v])
        if new == state:
            break
        state = new
    return {v: STATES[s] for v, s in state.items() if v not in failed}, dist


@pytest.mark.parametrize("seed", range(150))
def test_impact_matches_the_reference(seed):
    cis, rels = random_graph(seed)
    g = build(cis, rels)
    rng = random.Random(seed * 7 + 1)
    names = [ci for ci, _, _ in cis]
    for _ in range(4):
        failed = rng.sample(names, rng.randint(1, 3))
        types = rng.choice([None, None, rng.sample(TYPES, 3)])
        max_depth = rng.choice([None, None, 1, 2, 3])
        result = g.impact(failed, max_depth=max_depth, types=types)
        expected, dist = reference_impact(cis, rels, failed, types, max_depth)
        assert result.states() == expected
        edges = {(u, v) for u, v, _ in impact_edges(rels, types)}
        for ci, hit in result.impacted.items():
            assert hit.distance == dist[ci]
            assert hit.path[0] in failed and hit.path[-1] == ci and len(hit.path) == hit.distance + 1
            assert all(step in edges for step in zip(hit.path, hit.path[1:]))


@pytest.mark.parametrize("cheap", [20_000, 0], ids=["exact", "bounded"])
@pytest.mark.parametrize("seed", range(60))
def test_root_cause_and_spof_match_the_reference(seed, cheap, monkeypatch):
    # cheap=0: extra counts are only walked as far as the ranking needs.
    monkeypatch.setattr(causes, "CHEAP_EXTRA", cheap)
    cis, rels = random_graph(seed)
    g = build(cis, rels)
    names = [ci for ci, _, _ in cis]
    down_of = {c: {v for v, s in reference_impact(cis, rels, [c])[0].items() if s == "down"} for c in names}
    for x in names[:5]:
        assert set(g.spof(x)) == {c for c in names if x in down_of[c]}
    rng = random.Random(seed)
    symptoms = rng.sample(names, 3)
    expected = []
    for c in names:
        explains = [s for s in symptoms if s == c or s in down_of[c]]
        if explains:
            extra = len(({c} | down_of[c]) - set(symptoms))
            expected.append((-len(explains), extra, c, explains))
    expected.sort()
    for limit in (1, 3, 10):
        ranked = g.root_cause(symptoms, limit=limit)
        assert [(-len(r.explains), r.ci_id, r.explains) for r in ranked] == [(n, c, e) for n, _, c, e in expected[:limit]]
        for r, (_, extra, _, _) in zip(ranked, expected):
            assert r.extra_down == extra if r.extra_exact else r.extra_down <= extra


@pytest.mark.parametrize("cheap", [20_000, 0], ids=["exact", "bounded"])
@pytest.mark.parametrize("cap", [0, 1, 3])
@pytest.mark.parametrize("seed", range(30))
def test_root_cause_with_an_extra_cap_ranks_past_the_cap_by_id(seed, cap, cheap, monkeypatch):
    # Within the cap the order is exact; past it, after the rest of the level and by id, never
    # walked further than the cap (the count shown is a lower bound past it).
    monkeypatch.setattr(causes, "CHEAP_EXTRA", cheap)
    cis, rels = random_graph(seed)
    g = build(cis, rels)
    names = [ci for ci, _, _ in cis]
    down_of = {c: {v for v, s in reference_impact(cis, rels, [c])[0].items() if s == "down"} for c in names}
    symptoms = random.Random(seed).sample(names, 3)
    expected = []
    for c in names:
        explains = [s for s in symptoms if s == c or s in down_of[c]]
        if explains:
            extra = len(({c} | down_of[c]) - set(symptoms))
            expected.append((-len(explains), extra if extra <= cap else cap + 1, c, explains, extra))
    expected.sort()
    ranked = g.root_cause(symptoms, limit=10, extra_cap=cap)
    assert [(r.ci_id, r.explains) for r in ranked] == [(c, e) for _, _, c, e, _ in expected[:10]]
    for r, (_, _, _, _, extra) in zip(ranked, expected):
        assert r.extra_down == extra if r.extra_exact else r.extra_down <= extra
        if cheap and extra <= cap:  # walking is cheap: within the cap every count is exact
            assert r.extra_exact


@pytest.mark.parametrize("seed", range(40))
def test_a_graph_kept_current_by_changes_answers_like_one_built_afresh(seed):
    # Answers leave cached group sizes behind; every change must drop the ones it makes stale.
    cis, rels = random_graph(seed)
    cis, rels = {ci: (cls, k) for ci, cls, k in cis}, set(rels)
    g = build([(ci, *rest) for ci, rest in cis.items()], sorted(rels))
    rng = random.Random(seed)
    for step in range(40):
        names = sorted(cis)
        roll = rng.random()
        if roll < 0.3 and len(names) > 1:
            rel = (*rng.sample(names, 2), rng.choice(TYPES))
            g.add_relationship(*rel)
            rels.add(rel)
        elif roll < 0.55 and rels:
            rel = rng.choice(sorted(rels))
            g.remove_relationship(*rel)
            rels.discard(rel)
        elif roll < 0.8:
            ci = rng.choice(names)
            cis[ci] = ("x", rng.choice([None, 1, 2, 3]))
            g.upsert_ci(ci, *cis[ci])
        elif roll < 0.9 and len(names) > 3:
            ci = rng.choice(names)
            g.remove_ci(ci)
            del cis[ci]
            rels = {r for r in rels if ci not in r[:2]}
        else:
            ci = f"n{step}"
            cis[ci] = ("x", None)
            g.upsert_ci(ci, "x", None)
        fresh = build([(ci, *rest) for ci, rest in cis.items()], sorted(rels))
        failed = rng.sample(sorted(cis), min(2, len(cis)))
        types = rng.choice([None, ["member_of", "depends_on"]])
        got, want = g.impact(failed, types=types), fresh.impact(failed, types=types)
        # Paths may differ where several are shortest: adjacency order follows history.
        assert {ci: hit[:2] for ci, hit in got.impacted.items()} == {ci: hit[:2] for ci, hit in want.impacted.items()}
        target = rng.choice(sorted(cis))
        assert g.spof(target) == fresh.spof(target)
        assert g.root_cause(failed) == fresh.root_cause(failed)


@pytest.mark.parametrize("seed", range(30))
def test_distances_and_classes_agree_with_the_full_answer(seed):
    # An incident names only the nearest CIs: distances() and classes() stand in for every path.
    cis, rels = random_graph(seed)
    g = build(cis, rels)
    failed = random.Random(seed).sample([ci for ci, _, _ in cis], 2)
    result = g.impact(failed)
    impacted = result.impacted
    assert result.distances() == {ci: hit.distance for ci, hit in impacted.items()}
    assert g.classes(list(impacted) + ["not-in-the-graph"]) == {ci: cls for ci, cls, _ in cis if ci in impacted}


@pytest.mark.parametrize("seed", range(30))
def test_what_an_incident_reads_of_an_answer_agrees_with_the_full_answer(seed):
    # nearest() reads the discovery order instead of ranking every CI; tally() and count_by_state()
    # count without building a dict per CI; states_of() reads states without paths.
    cis, rels = random_graph(seed)
    rng = random.Random(seed)
    cis = [(ci, rng.choice(["x", "service", "app"]), k) for ci, _, k in cis]
    g = build(cis, rels)
    result = g.impact(rng.sample([ci for ci, _, _ in cis], rng.randint(1, 3)))
    full = dict(result.impacted.items())
    by_distance = sorted(full, key=lambda ci: (full[ci].distance, ci))
    for n in (0, 1, 2, 3, 5, 8, 13, len(full) - 1, len(full), len(full) + 1):
        assert result.nearest(n) == by_distance[:max(0, n)], n
    states = Counter(hit.state for hit in full.values())
    assert result.count_by_state() == {state: states.get(state, 0) for state in ("down", "degraded", "at_risk")}
    assert result.states_of(list(full)[::-1]) == [hit.state for hit in full.values()][::-1]
    with pytest.raises(KeyError):
        result.states_of(result.failed)
    classes = {ci: cls for ci, cls, _ in cis}
    picked = {"service", "app"}
    ids = [*full, "not-in-the-graph"]
    assert g.tally(ids, picked) == (Counter(classes.get(ci) for ci in ids), [ci for ci in ids if classes.get(ci) in picked])
