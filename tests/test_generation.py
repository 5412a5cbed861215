"""Tests for trie-constrained beam search and exact item scoring."""

import pytest
import torch
from torch import nn

from recbole_flexcode.model.generation import (
    constrained_beam_search,
    exact_item_scores,
    last_position,
    scatter_item_scores,
)
from recbole_flexcode.tokenizer.ids import PrefixTrie, append_disambiguation, resolve_collisions

V = 20
T = 3


class TinyAR(nn.Module):
    """Random autoregressive 'model': log p(t_j | t_<j, user) from a position-aware running sum of
    token embeddings plus a user embedding, through a tanh layer and a log_softmax."""

    def __init__(self, n_users, vocab, max_len, dim=16, seed=0, temperature=3.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.user = nn.Parameter(torch.randn(n_users, dim, generator=g))
        self.tok = nn.Parameter(torch.randn(max_len, vocab, dim, generator=g))
        self.hid = nn.Parameter(torch.randn(dim, dim, generator=g) / dim**0.5)
        self.out = nn.Parameter(torch.randn(dim, vocab, generator=g) * temperature / dim**0.5)

    def all_positions(self, users):
        """f(prefix [B, M, k]) -> [B, M, k+1, V] for the given users (the closure's context)."""
        u = self.user[users]  # [B, D]

        def f(prefix):
            b, m, k = prefix.shape
            assert b == u.shape[0]
            pos = torch.arange(k).view(1, 1, k)
            emb = self.tok[pos.expand(b, m, k), prefix]  # [B, M, k, D]
            run = torch.cat([emb.new_zeros(b, m, 1, emb.shape[-1]), emb.cumsum(2)], dim=2)
            h = torch.tanh((run + u[:, None, None, :]) @ self.hid)
            return torch.log_softmax(h @ self.out, dim=-1)

        return f


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 6, (50, T - 1), generator=g)
    disamb, stats = resolve_collisions(codes)
    assert stats["n_colliding_items"] > 0  # the last level really disambiguates
    seqs = append_disambiguation(codes, disamb, offset=6)
    assert int(seqs.max()) < V
    item_ids = torch.randperm(50, generator=g)  # row r is item item_ids[r]
    trie = PrefixTrie(seqs, item_ids)
    model = TinyAR(n_users=6, vocab=V, max_len=T).eval()
    users = torch.arange(6)
    with torch.no_grad():
        f = model.all_positions(users)
        exact_rows = exact_item_scores(f, seqs, batch_size=6)  # [B, N] by row
    exact = torch.empty_like(exact_rows)
    exact[:, item_ids] = exact_rows  # by item id
    return dict(seqs=seqs, item_ids=item_ids, trie=trie, model=model, users=users, exact=exact)


def _search(s, beam, users=None):
    users = s["users"] if users is None else users
    with torch.no_grad():
        g = last_position(s["model"].all_positions(users))
        return constrained_beam_search(g, s["trie"], len(users), beam, "cpu")


def test_exact_scores_are_normalised_and_chunk_invariant(setup):
    s = setup
    f = s["model"].all_positions(s["users"])
    with torch.no_grad():
        a = exact_item_scores(f, s["seqs"], 6)
        b = exact_item_scores(f, s["seqs"], 6, item_chunk=7)
        # brute force: every sequence of the full V^T space sums to probability 1
        space = torch.cartesian_prod(*[torch.arange(V)] * T)
        full = exact_item_scores(f, space, 6, item_chunk=1000)
    assert a.shape == (6, 50)
    assert torch.allclose(a, b)
    assert torch.allclose(full.exp().sum(1), torch.ones(6), atol=1e-4)
    # spot-check one entry token by token with the next-token function
    seq = s["seqs"][3]
    g = last_position(f)
    manual = torch.zeros(6)
    for k in range(T):
        lp = g(seq[:k].view(1, 1, k).expand(6, 1, k))[:, 0]
        manual += lp[:, seq[k]]
    assert torch.allclose(manual, a[:, 3], atol=1e-5)


def test_beam_results_valid_distinct_sorted(setup):
    s = setup
    items, scores = _search(s, beam=8)
    assert items.shape == (6, 8) and scores.shape == (6, 8)
    valid_ids = set(s["item_ids"].tolist())
    for b in range(6):
        row = items[b].tolist()
        assert all(i in valid_ids for i in row)
        assert len(set(row)) == len(row)
        assert torch.all(scores[b, 1:] <= scores[b, :-1])
        assert torch.isfinite(scores[b]).all()


def test_small_beam_scores_equal_exact_scores(setup):
    s = setup
    for beam in (1, 3, 8):
        items, scores = _search(s, beam)
        assert torch.allclose(scores, s["exact"].gather(1, items), atol=1e-5)
        # the best beam can never beat the best item
        assert torch.all(scores[:, 0] <= s["exact"].max(1).values + 1e-5)


@pytest.mark.parametrize("beam", [50, 64])
def test_full_beam_equals_exact_top_items(setup, beam):
    s = setup
    items, scores = _search(s, beam)
    top = torch.topk(s["exact"], 50, dim=1)
    assert torch.equal(items[:, :50], top.indices)
    assert torch.allclose(scores[:, :50], top.values, atol=1e-5)
    # padding beyond the catalogue
    assert torch.all(items[:, 50:] == -1)
    assert torch.all(scores[:, 50:] == float("-inf"))


def test_batched_equals_per_user(setup):
    s = setup
    items, scores = _search(s, beam=7)
    for u in range(6):
        i1, s1 = _search(s, beam=7, users=torch.tensor([u]))
        assert torch.equal(i1[0], items[u])
        assert torch.allclose(s1[0], scores[u], atol=1e-6)
    # a permuted batch gives permuted results
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    ip, sp = _search(s, beam=7, users=perm)
    assert torch.equal(ip, items[perm])
    assert torch.allclose(sp, scores[perm], atol=1e-6)


def test_beam_search_finds_best_item_when_model_is_peaked():
    # A model that strongly prefers one specific item per user: beam 1 must find it.
    seqs = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 2], [4, 0, 0], [4, 1, 9]])
    trie = PrefixTrie(seqs, torch.tensor([10, 11, 12, 13, 14]))
    targets = torch.tensor([[4, 1, 9], [0, 2, 2]])

    def f(prefix):
        b, m, k = prefix.shape
        out = torch.full((b, m, k + 1, V), -10.0)
        out.scatter_(-1, targets[:, None, : k + 1, None].expand(b, m, k + 1, 1), 0.0)
        return torch.log_softmax(out, -1)

    items, scores = constrained_beam_search(last_position(f), trie, 2, 1, "cpu")
    assert items[:, 0].tolist() == [14, 12]
    exact = exact_item_scores(f, seqs, 2)
    assert torch.allclose(scores[:, 0], exact[:, [4, 2]].diagonal(), atol=1e-5)


def test_zero_probability_items_rank_before_padding():
    seqs = torch.tensor([[0, 1], [0, 2], [1, 1], [2, 0]])
    trie = PrefixTrie(seqs, torch.arange(4))

    def g(prefix):  # token 0 impossible at position 0
        b, w, k = prefix.shape
        lp = torch.log_softmax(torch.arange(V, dtype=torch.float).expand(b, w, V) * 0.1, -1).clone()
        if k == 0:
            lp[..., 0] = float("-inf")
        return lp

    items, scores = constrained_beam_search(g, trie, 3, 6, "cpu")
    for b in range(3):
        assert set(items[b, :4].tolist()) == {0, 1, 2, 3}
        assert items[b, :2].tolist() == [3, 2]  # finite scores first
        assert items[b, 4:].tolist() == [-1, -1]
        assert torch.isinf(scores[b, 2:]).all() and torch.isfinite(scores[b, :2]).all()


def test_depth_one_trie_and_first_step_shape():
    seqs = torch.tensor([[5], [2], [7]])
    trie = PrefixTrie(seqs, torch.tensor([0, 1, 2]))
    seen = []
    logits = torch.randn(4, V, generator=torch.Generator().manual_seed(0))

    def g(prefix):
        seen.append(tuple(prefix.shape))
        return torch.log_softmax(logits, -1)[:, None, :].expand(-1, prefix.shape[1], -1)

    items, scores = constrained_beam_search(g, trie, 4, 2, "cpu")
    assert seen == [(4, 1, 0)]
    lp = torch.log_softmax(logits, -1)[:, [5, 2, 7]]
    top = torch.topk(lp, 2, dim=1)
    assert torch.equal(items, top.indices)
    assert torch.allclose(scores, top.values)


def test_scatter_item_scores():
    ids = torch.tensor([[2, 0, -1], [1, -1, -1]])
    sc = torch.tensor([[-0.5, -1.0, float("-inf")], [-0.25, float("-inf"), float("-inf")]])
    out = scatter_item_scores(ids, sc, 4)
    ninf = float("-inf")
    assert out.tolist() == [[-1.0, ninf, -0.5, ninf], [ninf, -0.25, ninf, ninf]]
    out0 = scatter_item_scores(ids, sc, 4, fill=0.0)
    assert out0[1].tolist() == [0.0, -0.25, 0.0, 0.0]
    with pytest.raises(ValueError):
        scatter_item_scores(torch.tensor([[4]]), torch.tensor([[0.0]]), 4)


def test_scatter_round_trip_with_beam(setup):
    s = setup
    items, scores = _search(s, beam=10)
    dense = scatter_item_scores(items, scores, 50)
    assert dense.shape == (6, 50)
    assert torch.equal(torch.isfinite(dense).sum(1), torch.full((6,), 10))
    assert torch.equal(torch.topk(dense, 10, dim=1).indices, items)
