"""Tests for semantic-ID collision resolution and the tensorised prefix trie."""

import itertools
import time

import pytest
import torch

from recbole_flexcode.tokenizer.ids import PrefixTrie, append_disambiguation, resolve_collisions


def _unique_table(n, n_codes, levels, seed):
    """Random codes [n, levels] in [0, n_codes), made unique with a disambiguation column."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, n_codes, (n, levels), generator=g)
    disamb, _ = resolve_collisions(codes)
    return append_disambiguation(codes, disamb, offset=n_codes)


def _brute_next(table_rows, prefix):
    k = len(prefix)
    return sorted({r[k] for r in table_rows if list(r[:k]) == list(prefix)})


# ----------------------------------------------------------------- resolve_collisions


def test_resolve_collisions_crafted():
    codes = torch.tensor(
        [[1, 2], [3, 4], [1, 2], [5, 6], [1, 2], [3, 4], [7, 8], [2, 1]]
    )
    disamb, stats = resolve_collisions(codes)
    assert disamb.tolist() == [0, 0, 1, 0, 2, 1, 0, 0]
    assert stats["n_colliding_items"] == 5  # rows 0,1,2,4,5
    assert stats["collision_rate"] == pytest.approx(5 / 8)
    assert stats["max_group_size"] == 3
    assert stats["n_groups_with_collisions"] == 2


def test_resolve_collisions_no_collision_and_empty():
    disamb, stats = resolve_collisions(torch.tensor([[0, 1], [1, 0], [1, 1]]))
    assert disamb.tolist() == [0, 0, 0]
    assert stats == {
        "collision_rate": 0.0,
        "n_colliding_items": 0,
        "max_group_size": 1,
        "n_groups_with_collisions": 0,
    }
    disamb, stats = resolve_collisions(torch.zeros(0, 3, dtype=torch.long))
    assert disamb.shape == (0,)
    assert stats["collision_rate"] == 0.0


def test_resolve_collisions_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 4, (500, 2), generator=g)
    disamb, stats = resolve_collisions(codes)
    seen = {}
    expected = []
    for row in map(tuple, codes.tolist()):
        expected.append(seen.get(row, 0))
        seen[row] = seen.get(row, 0) + 1
    assert disamb.tolist() == expected
    counts = {}
    for row in map(tuple, codes.tolist()):
        counts[row] = counts.get(row, 0) + 1
    n_coll = sum(c for c in counts.values() if c > 1)
    assert stats["n_colliding_items"] == n_coll
    assert stats["collision_rate"] == pytest.approx(n_coll / 500)
    assert stats["max_group_size"] == max(counts.values())
    assert stats["n_groups_with_collisions"] == sum(c > 1 for c in counts.values())


def test_append_disambiguation_makes_rows_unique():
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 3, (200, 2), generator=g)  # 9 cells -> many collisions
    disamb, stats = resolve_collisions(codes)
    assert stats["collision_rate"] > 0.9
    out = append_disambiguation(codes, disamb, offset=3)
    assert out.shape == (200, 3)
    assert torch.equal(out[:, :2], codes)
    assert torch.equal(out[:, 2], disamb + 3)
    assert torch.unique(out, dim=0).shape[0] == 200
    _, stats2 = resolve_collisions(out)
    assert stats2["collision_rate"] == 0.0


# ----------------------------------------------------------------- PrefixTrie


@pytest.fixture(scope="module")
def table():
    seqs = _unique_table(300, 5, 3, seed=2)  # [300, 4], heavy branching overlap
    g = torch.Generator().manual_seed(3)
    item_ids = torch.randperm(300, generator=g) + 10  # ids need not be row indices
    return seqs, item_ids


def test_trie_contains_exactly_the_items(table):
    seqs, item_ids = table
    trie = PrefixTrie(seqs, item_ids)
    assert trie.depth == 4 and trie.n_items == 300 and len(trie) == 300
    rows = [tuple(r) for r in seqs.tolist()]
    row_set = set(rows)
    for r, i in zip(rows, item_ids.tolist()):
        assert trie.contains(r)
        assert trie.item_of(r) == i
        assert trie.item_of(torch.tensor(r)) == i
    # every sequence differing from an item in one token is accepted iff it is itself an item
    vocab = int(seqs.max()) + 2
    n_checked = 0
    for r in rows[:60]:
        for pos in range(4):
            for tok in range(vocab):
                if tok == r[pos]:
                    continue
                s = r[:pos] + (tok,) + r[pos + 1 :]
                assert trie.contains(s) == (s in row_set)
                n_checked += not (s in row_set)
    assert n_checked > 500
    # random sequences
    g = torch.Generator().manual_seed(4)
    rand = torch.randint(0, vocab, (2000, 4), generator=g)
    for s in map(tuple, rand.tolist()):
        assert trie.contains(s) == (s in row_set)
        assert (trie.item_of(s) is None) == (s not in row_set)
    # wrong lengths and negative tokens
    assert not trie.contains(rows[0][:3])
    assert not trie.contains(rows[0] + (0,))
    assert not trie.contains((-1,) + rows[0][1:])


def test_trie_next_tokens_matches_brute_force(table):
    seqs, item_ids = table
    trie = PrefixTrie(seqs, item_ids)
    rows = [tuple(r) for r in seqs.tolist()]
    prefixes = {r[:k] for r in rows for k in range(4)}
    for p in prefixes:
        assert trie.next_tokens(p) == _brute_next(rows, p), p
    # prefixes not in the trie -> no continuation; full sequences -> none either
    vocab = int(seqs.max()) + 2
    for k in range(1, 4):
        for p in itertools.product(range(vocab), repeat=k):
            if p not in prefixes:
                assert trie.next_tokens(p) == []
    assert trie.next_tokens(rows[0]) == []


def test_trie_sibling_tokens_match_next_tokens(table):
    seqs, item_ids = table
    trie = PrefixTrie(seqs, item_ids)
    siblings = trie.sibling_tokens(seqs)
    assert len(siblings) == 4
    rows = [tuple(r) for r in seqs.tolist()]
    for k, allowed in enumerate(siblings):
        assert allowed.shape == (300, trie.max_children[k])
        for r, a in zip(rows, allowed.tolist()):
            assert [t for t in a if t >= 0] == _brute_next(rows, r[:k])
    bad = seqs[:3].clone()
    bad[1, 2] = int(seqs.max()) + 1  # a token never used at that depth
    with pytest.raises(ValueError, match="sequence 1 .* not a path"):
        trie.sibling_tokens(bad)
    with pytest.raises(ValueError, match="length 4"):
        trie.sibling_tokens(seqs[:, :3])


def test_trie_tensor_layout(table):
    seqs, item_ids = table
    trie = PrefixTrie(seqs, item_ids)
    rows = [tuple(r) for r in seqs.tolist()]
    assert trie.n_nodes == [1] + [len({r[:k] for r in rows}) for k in range(1, 5)]
    assert trie.n_nodes[-1] == 300
    for k in range(4):
        ct, cn = trie.children_tokens[k], trie.children_nodes[k]
        assert ct.shape == cn.shape and ct.shape[0] == trie.n_nodes[k]
        valid = ct >= 0
        assert torch.equal(valid, cn >= 0)
        # pads only at the end of a row, tokens strictly ascending
        assert torch.all(valid[:, :-1] | ~valid[:, 1:])
        big = torch.where(valid, ct, torch.iinfo(torch.long).max)
        assert torch.all((big[:, 1:] > big[:, :-1]) | ~valid[:, 1:])
        # every node at depth k+1 appears exactly once, in lexicographic order
        assert torch.equal(cn[valid], torch.arange(trie.n_nodes[k + 1]))
        assert valid.sum(1).min() >= 1
    # leaves in lexicographic order of the sequences
    sorted_rows = sorted(zip(rows, item_ids.tolist()))
    assert trie.leaf_items.tolist() == [i for _, i in sorted_rows]
    assert trie.to("cpu") is trie
    moved = trie.to(torch.device("cpu"))
    assert moved.item_of(rows[5]) == item_ids[5].item()


def test_trie_default_item_ids_and_depth_one():
    trie = PrefixTrie(torch.tensor([[3], [0], [7]]))
    assert trie.depth == 1
    assert trie.next_tokens([]) == [0, 3, 7]
    assert trie.item_of([3]) == 0 and trie.item_of([7]) == 2 and trie.item_of([1]) is None


def test_trie_rejects_bad_input():
    with pytest.raises(ValueError, match="duplicate"):
        PrefixTrie(torch.tensor([[1, 2, 3], [1, 2, 4], [1, 2, 3]]), torch.arange(3))
    with pytest.raises(ValueError):
        PrefixTrie(torch.zeros(3, 0, dtype=torch.long), torch.arange(3))
    with pytest.raises(ValueError):
        PrefixTrie(torch.tensor([[1, -1]]), torch.arange(1))
    with pytest.raises(ValueError):
        PrefixTrie(torch.tensor([[1, 2]]), torch.arange(2))
    with pytest.raises(ValueError):
        PrefixTrie(torch.tensor([[1.0, 2.0]]))


def test_trie_builds_large_catalogue_fast():
    n = 200_000
    t0 = time.perf_counter()
    seqs = _unique_table(n, 256, 3, seed=5)
    trie = PrefixTrie(seqs, torch.arange(n))
    elapsed = time.perf_counter() - t0
    assert elapsed < 8.0, f"building took {elapsed:.2f}s"
    assert trie.n_items == n and trie.n_nodes[-1] == n
    g = torch.Generator().manual_seed(6)
    for i in torch.randint(0, n, (50,), generator=g).tolist():
        assert trie.item_of(seqs[i].tolist()) == i
