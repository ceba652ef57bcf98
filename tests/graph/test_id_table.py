"""graph.id_table: the ids of a view as a table and the payloads over it answer as the list and dicts they stand
for, entry for entry, under random changes (a list and a dict doing the same are the reference)."""

import random
import uuid

import numpy as np
import pytest

from graph import id_table
from graph.id_table import IdTable, NodeTable

ODD = ["", "é", "ü-ö", "a" * 64, "漢字", "a", "ab", "b", "a b", "Z"]


def some_ids(rng: random.Random, n: int) -> list:
    ids = {str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)}
    ids.update(rng.sample(ODD, rng.randint(0, len(ODD))))
    out = list(ids)
    rng.shuffle(out)
    return out


def strangers(rng: random.Random, known) -> list:
    """Ids a table may be asked about that it does not hold."""
    out = ["nowhere", "a" * 65, "a\0", "\udc80", 7, None, ("t",), str(uuid.UUID(int=rng.getrandbits(128)))]
    return [x for x in out if x not in known]


@pytest.mark.parametrize("seed", range(12))
def test_a_table_answers_as_its_list_and_dict(seed):
    rng = random.Random(seed)
    ids = some_ids(rng, rng.choice([0, 1, 5, 40, 300]))
    table = IdTable.of(ids)
    assert table is not None and table.base_n == len(ids)
    model = list(ids)
    for _ in range(rng.randint(0, 20)):  # CIs appended (CompactView._append): wider ones and others too
        new = rng.choice([str(uuid.uuid4()), "w" * 80, 10 ** 6 + len(model), "ñ" + str(len(model))])
        if new in model:
            continue
        table.append(new)
        table.index[new] = len(model)
        model.append(new)
        with pytest.raises(ValueError):
            table.append(new)
    index = {ci: i for i, ci in enumerate(model)}
    n = len(model)
    assert len(table) == len(table.index) == n and list(table) == model
    for i in range(-n, n):
        assert table[i] == model[i]
    for bad in (n, -n - 1):
        with pytest.raises(IndexError):
            table[bad]
    for _ in range(30):
        a, b = rng.randint(-n - 2, n + 2), rng.randint(-n - 2, n + 2)
        step = rng.choice([None, None, 1, 2, -1])
        assert table[a:b:step] == model[a:b:step]
    positions = np.array([rng.randrange(n) for _ in range(rng.randint(0, 50))] if n else [], np.int64)
    assert table.names(positions) == [model[i] for i in positions.tolist()]
    assert id_table.names_at(table, positions) == id_table.names_at(model, positions)
    asked = model + strangers(rng, index)
    rng.shuffle(asked)
    for ci in asked:
        assert (ci in table.index) == (ci in index)
        assert table.index.get(ci, "none") == index.get(ci, "none") and table.find(ci) == index.get(ci, -1)
        if ci not in index:
            with pytest.raises(KeyError):
                table.index[ci]
    assert table.positions(asked).tolist() == [index.get(ci, -1) for ci in asked]  # (64 and more: at once)
    assert table.positions(asked[:5]).tolist() == [index.get(ci, -1) for ci in asked[:5]]
    if n:
        with pytest.raises(ValueError):
            table.index[model[0]] = n  # a position other than its own


@pytest.mark.parametrize("seed", range(12))
def test_a_subset_is_the_table_of_the_ids_kept(seed):
    rng = random.Random(100 + seed)
    ids = some_ids(rng, rng.choice([1, 30, 200]))
    table = IdTable.of(ids)
    model = list(ids)
    if rng.random() < 0.5:  # appended ones among them: kept as base CIs of the new table
        for j in range(rng.randint(1, 5)):
            table.append(f"added-{j}")
            model.append(f"added-{j}")
    keep = np.array(sorted(rng.sample(range(len(model)), rng.randint(0, len(model)))), np.int64)
    sub = table.subset(keep)
    kept = [model[i] for i in keep.tolist()]
    assert sub is not None and sub.base_n == len(kept) and list(sub) == kept
    assert all(sub.index[ci] == i for i, ci in enumerate(kept))
    assert id_table.problem(sub.keys, sub.ranks, sub.order, id_table.encoded(kept, sub.width)) is None
    # An appended id wider than the table: the table widened (up to MAX_WIDTH); wider still, no table (the
    # caller keeps what it had).
    wide = "w" * (table.width + 1)
    table.append(wide)
    widened = table.subset(np.arange(len(table)))
    if table.width + 1 <= id_table.MAX_WIDTH:
        assert widened is not None and widened.width == table.width + 1 and list(widened) == model + [wide]
        assert all(widened.index[ci] == i for i, ci in enumerate(model + [wide]))
    table.append("v" * (id_table.MAX_WIDTH + 1))
    assert table.subset(np.arange(len(table))) is None


@pytest.mark.parametrize("seed", range(8))
def test_keys_from_a_files_bytes_are_the_encoded_ids(seed):
    rng = random.Random(200 + seed)
    ids = some_ids(rng, rng.choice([1, 3, 50]))
    if seed % 2:  # all one width (the quick way) or not
        ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(40)]
    blob = "\0".join(ids).encode()
    keys = id_table.keys_of(blob, len(ids))
    expected = id_table.encoded(ids)
    assert keys.dtype == expected.dtype and keys.tolist() == expected.tolist()
    assert [k.decode() for k in keys.tolist()] == ids
    assert id_table.keys_of(b"", 0).shape == (0,)
    assert id_table.keys_of("\0".join(ids + ["x" * 65]).encode(), len(ids) + 1) is None  # too wide: no table
    assert id_table.encoded(ids + ["x" * 65]) is None and id_table.encoded(ids + [3]) is None
    with pytest.raises(ValueError):
        id_table.keys_of(blob, len(ids) + 1)


def test_a_table_that_is_not_the_ids_has_a_problem():
    ids = [f"ci-{i:03d}" for i in range(50)][::-1]
    mine = id_table.encoded(ids)
    keys, ranks, order = id_table.sorted_parts(mine)
    assert id_table.problem(keys, ranks, order, mine) is None
    assert id_table.sorted_parts(id_table.encoded(ids + [ids[3]])) is None  # an id twice: no table
    swapped = ranks.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    cases = {
        "id table sizes": (keys[:-1], ranks, order),
        "id table ranges": (keys, np.where(ranks == 0, 50, ranks).astype(np.int32), order),
        "id table order": (keys[::-1].copy(), ranks, order),
        "id table ranks": (keys, swapped, order),
        "id table ids": (np.concatenate((keys[:-1], np.array([b"ci-zzz"], keys.dtype))), ranks, order),
    }
    for reason, (k, r, o) in cases.items():
        assert id_table.problem(k, r, o, mine) == reason


@pytest.mark.parametrize("seed", range(16))
def test_node_table_is_the_dict_it_stands_for(seed):
    """Payloads swapped, CIs removed, added, removed and added again, in a dict's order; a copy is its own."""
    rng = random.Random(300 + seed)
    ids = some_ids(rng, rng.choice([0, 1, 20, 150]))
    table = IdTable.of(ids)
    payloads = [{"ci_class": c, "min_members": k} for c in ("a", "b", None) for k in (None, 2)]
    rows = np.array([rng.randrange(len(payloads)) for _ in ids], np.uint8)
    nodes = NodeTable(table, rows, payloads)
    model = {ci: payloads[r] for ci, r in zip(ids, rows.tolist())}
    known = list(ids) + [f"new-{j}" for j in range(10)] + ["w" * 90]
    copies = []
    for step in range(rng.randint(1, 80)):
        ci = rng.choice(known)
        what = rng.random()
        if what < 0.35:
            nodes[ci] = model[ci] = rng.choice(payloads)
        elif what < 0.7:
            if ci in model:
                del nodes[ci], model[ci]
            else:
                with pytest.raises(KeyError):
                    del nodes[ci]
        elif what < 0.8 and rng.random() < 0.5:  # the table grows under it (the view appends a new CI)
            if table.find(ci) < 0:
                table.append(ci)
        elif what < 0.9:
            copies.append((nodes.copy(), dict(model)))
        assert len(nodes) == len(model) and (ci in nodes) == (ci in model)
        assert nodes.get(ci, "none") is model.get(ci, "none")
    assert list(nodes) == list(model) and list(nodes.items()) == list(model.items())
    for ci in known + ["nowhere", 5]:
        assert (ci in nodes) == (ci in model) and nodes.get(ci) is model.get(ci)
        if ci not in model:
            with pytest.raises(KeyError):
                nodes[ci]
    for copied, then in copies:  # the changes since the copy did not reach it
        assert list(copied.items()) == list(then.items())
    with pytest.raises(ValueError):
        nodes["x"] = None


@pytest.mark.parametrize("seed", range(12))
def test_what_a_capture_takes_off_the_tables_is_the_ids_and_payloads(seed):
    """id_table.Taken (a snapshot's capture off a view whose ids are a table): slices, the NUL-joined bytes, the
    payloads of a slice; as the list and dict would give them, under changes, KeyError for a CI removed."""
    rng = random.Random(400 + seed)
    if seed % 2:
        ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(rng.choice([1, 60, 500]))]  # one width
    else:
        ids = some_ids(rng, rng.choice([1, 60, 500]))
    table = IdTable.of(ids)
    payloads = [{"ci_class": c} for c in "abcd"]
    nodes = NodeTable(table, np.array([rng.randrange(4) for _ in ids], np.uint8), payloads)
    model = dict(zip(ids, (nodes[ci] for ci in ids)))
    names = list(ids)
    for _ in range(rng.randint(0, 30)):
        ci = rng.choice(names)
        if rng.random() < 0.2 and seed % 3 == 0:  # a CI the view appended (then every payload one by one)
            new = f"new-{len(names)}"
            table.append(new)
            names.append(new)
            nodes[new] = model[new] = rng.choice(payloads)
        elif ci in model:
            nodes[ci] = model[ci] = rng.choice(payloads)
    gone = set(rng.sample(names, rng.randint(0, min(3, len(names) - 1))))
    keep = np.array([i for i, ci in enumerate(names) if ci not in gone], np.int64)
    taken = id_table.Taken(table, keep)
    kept = [names[i] for i in keep.tolist()]
    assert len(taken) == len(kept) and taken[:] == kept and taken[3:9] == kept[3:9]
    assert taken.joined() == "\0".join(kept).encode()
    for start in range(0, len(kept), 7):
        assert taken.payloads(nodes, start, start + 7) == [model[ci] for ci in kept[start:start + 7]]
        assert taken.payloads(dict(model), start, start + 7) == [model[ci] for ci in kept[start:start + 7]]
    if gone:  # a CI of the capture removed meanwhile: the capture is no longer consistent
        victim = rng.choice(kept)
        del nodes[victim]
        with pytest.raises(KeyError):
            taken.payloads(nodes, 0, len(kept))
    # Another table (the view rebased with a drop): the payloads by id.
    other = table.subset(keep)
    if other is not None:
        survivors = [ci for ci in kept if ci in nodes]
        at = np.array([other.find(ci) for ci in survivors], np.int64)
        assert nodes.payloads_at(other, at) == [model[ci] for ci in survivors]


@pytest.mark.parametrize("seed", range(8))
def test_payloads_of_many_ids_at_once_are_each_ones(seed):
    rng = random.Random(500 + seed)
    ids = some_ids(rng, rng.choice([10, 200]))
    table = IdTable.of(ids)
    payloads = [{"ci_class": c} for c in "abc"]
    nodes = NodeTable(table, np.array([rng.randrange(3) for _ in ids], np.uint8), payloads)
    for _ in range(rng.randint(0, 40)):  # swapped, removed, added, removed and added again
        ci = rng.choice(ids + [f"new-{j}" for j in range(5)])
        if rng.random() < 0.4 and ci in nodes:
            del nodes[ci]
        else:
            nodes[ci] = rng.choice(payloads)
            if rng.random() < 0.3 and table.find(ci) < 0:
                table.append(ci)
    asked = ids + [f"new-{j}" for j in range(5)] + ["nowhere", 3]
    rng.shuffle(asked)
    for part in (asked, asked[:10]):  # (64 and more: one search for them all)
        assert nodes.payloads_of(part) == [nodes.get(ci) for ci in part]


@pytest.mark.parametrize("seed", range(12))
def test_payloads_by_position_through_every_kind_of_change(seed):
    """NodeTable.payloads_at / held_at (a capture's slices, the dicts' lay-out, a row's ends) and NodeTable.rebased
    (a view numbered again), against a dict doing the same: payloads swapped and swapped back, CIs removed, removed
    and set again, appended to the table."""
    rng = random.Random(600 + seed)
    ids = some_ids(rng, rng.choice([5, 80, 300]))
    table = IdTable.of(ids)
    payloads = [{"ci_class": c} for c in "abc"]
    rows = np.array([rng.randrange(3) for _ in ids], np.uint8)
    nodes = NodeTable(table, rows, payloads)
    model = {ci: payloads[r] for ci, r in zip(ids, rows.tolist())}
    names = list(ids)
    for _ in range(rng.randint(1, 60)):
        roll = rng.random()
        ci = rng.choice(names)
        if roll < 0.3 and ci in model:
            del nodes[ci], model[ci]
        elif roll < 0.5:  # a CI the view appends
            new = f"new-{len(names)}"
            table.append(new)
            names.append(new)
            nodes[new] = model[new] = rng.choice(payloads)
        else:  # swapped, swapped back to its row's own, or set again after a removal
            nodes[ci] = model[ci] = rng.choice(payloads)
    # A payload set back to its row's is not kept as a change.
    assert all(payload is not payloads[rows[i]] for i, payload in nodes._swapped.items())
    positions = np.arange(len(names), dtype=np.int64)
    assert nodes.payloads_at(table, positions, strict=False) == [model.get(ci) for ci in names]
    assert nodes.held_at(table, positions).tolist() == [ci in model for ci in names]
    held = np.array([i for i, ci in enumerate(names) if ci in model], np.int64)
    assert nodes.payloads_at(table, held) == [model[names[i]] for i in held.tolist()]
    if len(held) < len(names):
        with pytest.raises(KeyError):
            nodes.payloads_at(table, positions)
    # Numbered again: the CIs held, in their order, a new table; the payloads' table follows it.
    other = table.subset(held)
    assert other is not None and list(other) == [names[i] for i in held.tolist()]
    moved = nodes.rebased(other, held)
    assert dict(moved.items()) == model and len(moved) == len(model)
    assert moved.payloads_at(other, np.arange(len(held), dtype=np.int64)) == [model[ci] for ci in other]
    assert not moved._out and not moved._swapped and not moved._extra
    # Every CI kept in its place, those no longer held too (a view keeps the CIs gone): the appended folded in.
    folded_ids = table.subset(positions)
    folded = nodes.rebased(folded_ids, positions)
    assert dict(folded.items()) == model and len(folded) == len(model) and not folded._extra
    assert folded.payloads_at(folded_ids, positions, strict=False) == [model.get(ci) for ci in names]
