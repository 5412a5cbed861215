"""Dual codebook tokenizer with cross-codebook alignment (FlexCode §4.1, §4.2) and split paths (§4.4)."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.tokenizer.dual import DualCodebookTokenizer, standardize
from recbole_flexcode.tokenizer.ids import PrefixTrie
from recbole_flexcode.tokenizer.vocab import TokenLayout, all_split_paths, split_paths

N_ITEMS, SEM_DIM, CF_DIM = 300, 32, 16
TOK_KWARGS = dict(
    sem_dim=SEM_DIM, cf_dim=CF_DIM, n_levels=3, codebook_size=16, code_dim=8, hidden_dims=[32],
    align_temperature=0.1, proj_dim=16,
)


def correlated_views(n=N_ITEMS, seed=0):
    """Semantic and collaborative views of the same items: shared latent + view-specific noise."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=gen)
    a, b = torch.randn(6, SEM_DIM, generator=gen), torch.randn(6, CF_DIM, generator=gen)
    sem = torch.tanh(z @ a / 2) + 0.1 * torch.randn(n, SEM_DIM, generator=gen)
    cf = z @ b + 0.3 * torch.randn(n, CF_DIM, generator=gen)
    return standardize(sem), standardize(cf)


@torch.no_grad()
def retrieval_accuracy(tok, sem, cf) -> float:
    """Top-1 match of cos(g_s(ŝ_i), g_c(ĉ_j)) over all items: how often item i retrieves itself."""
    tok.eval()
    zs = F.normalize(tok.alignment.g_s(tok.semantic(sem).recon), dim=-1)
    zc = F.normalize(tok.alignment.g_c(tok.collaborative(cf).recon), dim=-1)
    return float(((zs @ zc.t()).argmax(1) == torch.arange(len(sem))).float().mean())


@pytest.fixture(scope="module")
def fitted():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test single-thread fixture
    try:
        sem, cf = correlated_views()
        torch.manual_seed(0)
        tok = DualCodebookTokenizer(align_weight=1.0, **TOK_KWARGS)
        before = {"stats": tok.stats(sem, cf), "acc": retrieval_accuracy(tok, sem, cf)}
        history = tok.fit(sem, cf, epochs=40, batch_size=100, lr=3e-3, seed=0, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    return tok, sem, cf, before, history


def test_fit_lowers_both_reconstruction_errors(fitted):
    tok, sem, cf, before, history = fitted
    after = tok.stats(sem, cf)
    for name in ("semantic", "collaborative"):
        assert after[name]["recon_mse"] < 0.5 * before["stats"][name]["recon_mse"], name
        # standardised inputs: predicting zero would give mse 1; the codes carry real information
        assert after[name]["recon_mse"] < 0.6, name
        assert len(after[name]["levels"]) == 3
        assert all(1 <= lv["used_codes"] <= 16 for lv in after[name]["levels"])
    assert history["sem"][-1] < 0.7 * history["sem"][0]
    assert history["cf"][-1] < 0.7 * history["cf"][0]
    assert len(history["loss"]) == 40


def test_alignment_loss_falls_and_retrieval_beats_chance(fitted):
    tok, sem, cf, before, history = fitted
    align = history["align"]
    assert align[0] > 0
    assert align[-1] < 0.6 * align[0], (align[0], align[-1])
    acc = retrieval_accuracy(tok, sem, cf)
    chance = 1.0 / N_ITEMS
    assert acc > 20 * chance, acc
    assert acc > before["acc"] + 0.05, (before["acc"], acc)


def test_no_alignment_weight_leaves_heads_untouched():
    sem, cf = correlated_views(n=120, seed=1)
    torch.manual_seed(0)
    tok = DualCodebookTokenizer(align_weight=0.0, **TOK_KWARGS)
    heads = {k: v.clone() for k, v in tok.alignment.state_dict().items()}
    history = tok.fit(sem, cf, epochs=3, batch_size=60, lr=3e-3, seed=0, show_progress=False)
    assert history["align"] == [0.0, 0.0, 0.0]
    for k, v in tok.alignment.state_dict().items():
        assert torch.equal(v, heads[k]), k
    out = tok.loss(sem[:10], cf[:10])
    torch.testing.assert_close(out["total"], out["sem"] + out["cf"])


def test_encode_shapes_and_ranges(fitted):
    tok, sem, cf, _, _ = fitted
    s_codes, c_codes = tok.encode(sem, cf)
    assert s_codes.shape == c_codes.shape == (N_ITEMS, 3)
    assert s_codes.dtype == c_codes.dtype == torch.long
    for codes in (s_codes, c_codes):
        assert int(codes.min()) >= 0 and int(codes.max()) < 16
    # encoding is deterministic
    s2, c2 = tok.encode(sem, cf)
    assert torch.equal(s_codes, s2) and torch.equal(c_codes, c2)


def test_fit_rejects_mismatched_inputs():
    tok = DualCodebookTokenizer(align_weight=0.1, **TOK_KWARGS)
    with pytest.raises(ValueError):
        tok.fit(torch.zeros(5, SEM_DIM), torch.zeros(4, CF_DIM), epochs=1, show_progress=False)


# ----------------------------------------------------------------------------- split paths


def test_all_split_paths_unique_after_disambiguation(fitted):
    tok, sem, cf, _, _ = fitted
    s_codes, c_codes = tok.encode(sem, cf)
    paths, layout, stats = all_split_paths(c_codes, s_codes, 16, min_disamb=4)
    assert paths.shape == (4, N_ITEMS, 4)
    assert layout.path_length == 4 and layout.n_disamb >= 4
    for s in range(4):
        assert torch.unique(paths[s], dim=0).shape[0] == N_ITEMS, s
        PrefixTrie(paths[s])  # refuses duplicates
        assert stats[s]["split"] == s
        assert layout.n_disamb >= stats[s]["max_group_size"]
    # paths of different splits never coincide either
    assert torch.unique(paths.reshape(-1, 4), dim=0).shape[0] == 4 * N_ITEMS
    assert int(paths.min()) >= 1 and int(paths.max()) < layout.vocab_size  # BOS (0) is never a target


def test_all_split_paths_crafted_collisions():
    k = 4
    cf = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 1], [1, 1], [1, 1]])
    sem = torch.tensor([[2, 2], [3, 3], [2, 2], [0, 0], [0, 0], [1, 0]])
    paths, layout, stats = all_split_paths(cf, sem, k, min_disamb=1)
    assert layout == TokenLayout(2, k, 3)
    assert (layout.cf_offset, layout.sem_offset, layout.disamb_offset, layout.vocab_size) == (1, 9, 17, 20)
    # split 0 = semantic codes only: rows {0, 2} and {3, 4} collide
    assert stats[0] == {
        "split": 0, "collision_rate": 4 / 6, "n_colliding_items": 4, "max_group_size": 2, "n_groups_with_collisions": 2,
    }
    # split 1 = (cf_1, sem_1): the same two groups
    assert stats[1] == {
        "split": 1, "collision_rate": 4 / 6, "n_colliding_items": 4, "max_group_size": 2, "n_groups_with_collisions": 2,
    }
    # split 2 = collaborative codes only: rows {0, 1} and {3, 4, 5}
    assert stats[2] == {
        "split": 2, "collision_rate": 5 / 6, "n_colliding_items": 5, "max_group_size": 3, "n_groups_with_collisions": 2,
    }
    expected = torch.tensor(
        [
            # split 0: (sem_1, sem_2, disamb)
            [[11, 15, 17], [12, 16, 17], [11, 15, 18], [9, 13, 17], [9, 13, 18], [10, 13, 17]],
            # split 1: (cf_1, sem_1, disamb)
            [[1, 11, 17], [1, 12, 17], [1, 11, 18], [2, 9, 17], [2, 9, 18], [2, 10, 17]],
            # split 2: (cf_1, cf_2, disamb)
            [[1, 5, 17], [1, 5, 18], [1, 6, 17], [2, 6, 17], [2, 6, 18], [2, 6, 19]],
        ]
    )
    assert torch.equal(paths, expected)
    for s in range(3):
        assert torch.unique(paths[s], dim=0).shape[0] == 6
    # the disambiguation vocabulary has at least min_disamb tokens
    _, wide, _ = all_split_paths(cf, sem, k, min_disamb=5)
    assert wide.n_disamb == 5 and wide.vocab_size == 22
    # level_tokens / split_paths agree with the layout
    cf_tok = layout.level_tokens(cf, semantic=False)
    sem_tok = layout.level_tokens(sem, semantic=True)
    assert torch.equal(split_paths(cf_tok, sem_tok, 1), paths[1, :, :2])


def test_all_split_paths_no_collisions():
    cf = torch.tensor([[0, 1], [1, 0], [2, 2]])
    sem = torch.tensor([[0, 0], [1, 1], [2, 2]])
    paths, layout, stats = all_split_paths(cf, sem, 3, min_disamb=1)
    assert layout.n_disamb == 1
    assert all(st["collision_rate"] == 0.0 and st["max_group_size"] == 1 for st in stats)
    assert torch.all(paths[:, :, -1] == layout.disamb_offset)
