"""The item tokenizer (recbole_flexcode.tokenizer.item_tokenizer) on small synthetic embeddings.

Both backends (``rqvae``: RQ-VAE codebooks, a few epochs; ``rkmeans``: residual k-means, no
training), two sources (FlexCode: every budget split) and one source of two parts (SOLID):
paths, encode, trie, statistics, persistence and what a damaged artefact does on load.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.tokenizer.codebooks import COLLABORATIVE, SEMANTIC
from recbole_flexcode.tokenizer.item_tokenizer import SPEC_FILE, WEIGHTS_FILE, DamagedArtefact, ItemTokenizer
from recbole_flexcode.tokenizer.vocab import TokenLayout

N_ITEMS = 121  # RecBole ids: 0 = padding, 120 real items
SEM_DIM, CF_DIM, L, K = 12, 8, 2, 8

RQVAE = dict(kind="rqvae", codebook={"code_dim": 4, "hidden_dims": [16], "beta": 0.25, "align_weight": 0.1,
                                     "align_temperature": 0.1, "proj_dim": 8},
             fit={"epochs": 3, "batch_size": 64, "lr": 1e-3})
RKMEANS = dict(kind="rkmeans", codebook={"kmeans_iterations": 10}, fit={})
BACKENDS = {"rqvae": RQVAE, "rkmeans": RKMEANS}


def embeddings(seed=0, n=N_ITEMS):
    """Two views of ``n - 1`` items with a shared latent; row 0 is the padding item (zeros)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    sem = z @ rng.normal(size=(4, SEM_DIM)) + 0.3 * rng.normal(size=(n, SEM_DIM))
    cf = z @ rng.normal(size=(4, CF_DIM)) + 0.5 * rng.normal(size=(n, CF_DIM))
    sem[0], cf[0] = 0.0, 0.0
    return sem.astype(np.float32), cf.astype(np.float32)


def fit(kind, sources="two", n_levels=L, seed=0, **kw):
    sem, cf = embeddings()
    emb = {SEMANTIC: [sem], COLLABORATIVE: [cf]} if sources == "two" else {SEMANTIC: [sem, cf]}
    settings = dict(BACKENDS[kind])
    if sources != "two" and kind == "rqvae":  # one source: no alignment
        settings["codebook"] = {**settings["codebook"], "align_weight": 0.0}
    return ItemTokenizer.fit(emb, n_levels=n_levels, codebook_size=K, seed=seed, min_disamb=2,
                             show_progress=False, **settings, **kw)


@pytest.fixture(scope="module", params=[("rqvae", "two"), ("rkmeans", "two"), ("rkmeans", "one"), ("rqvae", "one")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def tok(request):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test single-thread fixture
    try:
        return fit(*request.param)
    finally:
        torch.set_num_threads(threads)


def _split_sources(tok, split):
    """Which source and level fill each of the ``L`` code positions under ``split``."""
    if not tok.two_sources:
        return [(tok.sources[0], level) for level in range(tok.n_levels)]
    return [(COLLABORATIVE, p) if p < split else (SEMANTIC, p - split) for p in range(tok.n_levels)]


# ----------------------------------------------------------------------------- paths


def test_every_item_has_a_unique_well_formed_path_under_every_split(tok):
    layout = tok.layout
    assert isinstance(layout, TokenLayout) and (layout.n_levels, layout.codebook_size) == (L, K)
    assert tok.paths.shape == (tok.n_splits, N_ITEMS, L + 1)
    assert tok.n_splits == (L + 1 if tok.two_sources else 1)
    assert layout.n_disamb >= 2  # min_disamb
    assert tok.vocab_size == layout.vocab_size == 1 + 2 * L * K + layout.n_disamb
    for split in range(tok.n_splits):
        paths = tok.paths[split, 1:]
        assert torch.unique(paths, dim=0).shape[0] == N_ITEMS - 1, split
        for pos, (source, level) in enumerate(_split_sources(tok, split)):
            base = (layout.sem_offset if source == SEMANTIC else layout.cf_offset) + level * K
            assert bool(((paths[:, pos] >= base) & (paths[:, pos] < base + K)).all()), (split, pos)
            # the token is the item's code of that source and level
            assert torch.equal(paths[:, pos], tok.level_tokens(source)[1:, level]), (split, pos)
            assert torch.equal(paths[:, pos] - base, tok.codes(source)[1:, level])
        disamb = tok.paths[split, :, -1] - layout.disamb_offset
        assert int(disamb.min()) >= 0 and int(disamb.max()) < layout.n_disamb
        # rows that share all L code tokens are numbered 0, 1, ... by the disambiguation token (the
        # padding row, codes 0, takes part: no real item's path is the padding's)
        _, group = torch.unique(tok.paths[split, :, :-1], dim=0, return_inverse=True)
        for g in torch.unique(group):
            ranks = sorted(disamb[group == g].tolist())
            assert ranks == list(range(len(ranks)))
    if tok.two_sources:  # paths of different splits never coincide
        flat = tok.paths[:, 1:].reshape(-1, L + 1)
        assert torch.unique(flat, dim=0).shape[0] == tok.n_splits * (N_ITEMS - 1)
    assert len(tok.spec["collisions"]) == tok.n_splits


def test_encode_gives_the_paths(tok):
    gen = torch.Generator().manual_seed(1)
    items = torch.randint(1, N_ITEMS, (5, 7), generator=gen)
    splits = torch.randint(0, tok.n_splits, (5, 7), generator=gen)
    out = tok.encode(items, splits)
    assert out.shape == (5, 7, L + 1)
    for b in range(5):
        for t in range(7):
            assert torch.equal(out[b, t], tok.paths[splits[b, t], items[b, t]])
    last = tok.n_splits - 1
    assert torch.equal(tok.encode(items, last), tok.paths[last][items])


def test_trie_accepts_exactly_the_inference_paths(tok):
    gen = torch.Generator().manual_seed(2)
    splits = torch.randint(0, tok.n_splits, (N_ITEMS,), generator=gen)
    trie = tok.trie(splits)
    assert len(trie) == N_ITEMS - 1 and trie.depth == L + 1
    for item in range(1, N_ITEMS):
        for split in range(tok.n_splits):
            path = tok.paths[split, item].tolist()
            found = trie.item_of(path)
            if split == int(splits[item]):
                assert found == item, (item, split)
            else:
                assert found is None, (item, split)  # a path the item does not use is never generated
    firsts = sorted({int(tok.paths[splits[i], i, 0]) for i in range(1, N_ITEMS)})
    assert trie.next_tokens([]) == firsts
    assert all(trie.item_of(tok.paths[s, 0].tolist()) is None for s in range(tok.n_splits))  # padding is no item
    # new splits, new trie
    if tok.n_splits > 1:
        other = (splits + 1) % tok.n_splits
        trie2 = tok.trie(other)
        assert trie2 is not trie
        assert all(trie2.item_of(tok.paths[other[i], i].tolist()) == i for i in range(1, N_ITEMS))
    assert tok.trie(splits.clone()).item_of(tok.paths[splits[5], 5].tolist()) == 5


# ----------------------------------------------------------------------------- statistics


def test_stats_report_per_level_usage_and_residual_error(tok):
    stats = tok.stats()
    assert set(stats) == set(tok.sources)
    for source, st in stats.items():
        codes = tok.codes(source)[1:]
        assert [lv["level"] for lv in st["levels"]] == list(range(L))
        for lv in st["levels"]:
            assert lv["used_codes"] == len(torch.unique(codes[:, lv["level"]]))
            assert 1 <= lv["used_codes"] <= K and lv["usage"] == pytest.approx(lv["used_codes"] / K)
            assert np.isfinite(lv["residual_mse"]) and lv["residual_mse"] >= 0
        assert np.isfinite(st["recon_mse"]) and st["recon_mse"] >= 0
        assert 0.0 <= st["collision_rate"] <= 1.0
        if tok.spec["kind"] == "rkmeans":
            mses = [lv["residual_mse"] for lv in st["levels"]]
            assert all(a > b for a, b in zip(mses, mses[1:]))
            assert st["recon_mse"] == pytest.approx(mses[-1])  # no decoder: the last residual
    json.dumps(stats)  # goes into the run JSON


def test_rkmeans_residual_error_decreases_with_levels():
    one, three = fit("rkmeans", n_levels=1), fit("rkmeans", n_levels=3)
    for source in (SEMANTIC, COLLABORATIVE):
        assert torch.equal(one.codes(source)[:, 0], three.codes(source)[:, 0])  # same first level
        r1 = one.stats()[source]["recon_mse"]
        r3 = [lv["residual_mse"] for lv in three.stats()[source]["levels"]]
        assert r1 == pytest.approx(r3[0]) and r3[0] > r3[1] > r3[2]
        # standardised inputs: predicting zero would give mse 1
        assert r3[2] < 0.8 * r1 < 1.0


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", ["rkmeans", "rqvae"])
def test_fit_is_seeded_and_leaves_the_global_rng_alone(kind):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = fit(kind, seed=3)
    assert torch.equal(torch.get_rng_state(), before)  # forked: the caller's random stream is untouched
    b = fit(kind, seed=3)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    c = fit(kind, seed=4)
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items() if k.startswith("codebooks."))
    assert torch.equal(torch.get_rng_state(), before)


# ----------------------------------------------------------------------------- persistence


def _assert_same(a, b):
    assert a.spec == b.spec and a.vocab_size == b.vocab_size and a.layout == b.layout
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb) and set(a.sources) == set(b.sources)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    items = torch.arange(1, N_ITEMS)
    for split in range(a.n_splits):
        assert torch.equal(a.encode(items, split), b.encode(items, split))
    for source in a.sources:
        assert a.stats()[source]["levels"] == b.stats()[source]["levels"]


def test_save_load_round_trip_and_artefact_layout(tok, tmp_path):
    folder = tmp_path / "tokenizer-x"
    assert tok.save(folder) == folder
    assert sorted(os.listdir(folder)) == sorted([WEIGHTS_FILE, SPEC_FILE])
    assert os.listdir(tmp_path) == ["tokenizer-x"]  # published as one unit: no temp folder left
    spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    assert spec["weights_sha256"] == hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert {k: v for k, v in spec.items() if k != "weights_sha256"} == json.loads(json.dumps(tok.spec))
    assert not (folder / WEIGHTS_FILE).read_bytes()[:2].startswith(b"\x80")  # safetensors, not a pickle
    loaded = ItemTokenizer.load(folder)
    assert not loaded.training
    _assert_same(tok, loaded)
    # saving again over it (a damaged entry being rebuilt) replaces it
    tok.save(folder)
    assert sorted(os.listdir(folder)) == sorted([WEIGHTS_FILE, SPEC_FILE]) and os.listdir(tmp_path) == ["tokenizer-x"]
    _assert_same(tok, ItemTokenizer.load(folder))


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _wrong_checksum(folder):
    spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    spec["weights_sha256"] = "0" * 64
    (folder / SPEC_FILE).write_text(json.dumps(spec), encoding="utf-8")


DAMAGE = {
    "flipped_weights_byte": lambda f: _flip_byte(f / WEIGHTS_FILE),
    "truncated_weights": lambda f: (f / WEIGHTS_FILE).write_bytes((f / WEIGHTS_FILE).read_bytes()[:100]),
    "truncated_spec": lambda f: (f / SPEC_FILE).write_bytes((f / SPEC_FILE).read_bytes()[:50]),
    "missing_spec": lambda f: (f / SPEC_FILE).unlink(),
    "missing_weights": lambda f: (f / WEIGHTS_FILE).unlink(),
    "wrong_checksum": _wrong_checksum,
    "garbage_spec": lambda f: (f / SPEC_FILE).write_bytes(b"\x00\xffnot json"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_artefact_raises_on_load(damage, tmp_path):
    tok = fit("rkmeans")
    folder = tok.save(tmp_path / "tok")
    ItemTokenizer.load(folder)  # intact: loads
    DAMAGE[damage](folder)
    with pytest.raises(DamagedArtefact):
        ItemTokenizer.load(folder)
    assert issubclass(DamagedArtefact, ValueError)


def test_spec_that_disagrees_with_the_weights_raises(tmp_path):
    """A json whose checksum is right but whose shape is not that of the weights."""
    folder = fit("rkmeans").save(tmp_path / "tok")
    spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    spec["n_items"] += 5
    (folder / SPEC_FILE).write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(DamagedArtefact):
        ItemTokenizer.load(folder)


def test_from_state_dict_of_a_model(tok):
    """A checkpoint reload: the tokenizer travels in its model's state dict (tensors only) under a prefix."""

    class Model(nn.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.item_embedding = nn.Embedding(N_ITEMS, 4)
            self.item_tokenizer = tokenizer

    state = Model(tok).state_dict()
    assert all(torch.is_tensor(v) for v in state.values())
    rebuilt = ItemTokenizer.from_state_dict(state, prefix="item_tokenizer.")
    _assert_same(tok, rebuilt)
    # a state dict without a tokenizer under that prefix
    with pytest.raises(DamagedArtefact):
        ItemTokenizer.from_state_dict({"item_embedding.weight": torch.zeros(N_ITEMS, 4)}, prefix="item_tokenizer.")


def test_code_vectors_are_each_backends_codebooks():
    """``ItemTokenizer.code_vectors``: RQ-VAE codebooks per level, or the k-means centroids, per source."""
    import numpy as np

    from recbole_flexcode.tokenizer.item_tokenizer import ItemTokenizer

    rng = np.random.default_rng(0)
    emb = {"semantic": [rng.normal(size=(41, 8)).astype(np.float32)], "collaborative": [rng.normal(size=(41, 4)).astype(np.float32)]}
    km = ItemTokenizer.fit(emb, kind="rkmeans", n_levels=2, codebook_size=4, codebook={"kmeans_iterations": 5}, fit={}, seed=0,
                           show_progress=False)
    vec = km.code_vectors()
    assert vec["semantic"].shape == (2, 4, 8) and vec["collaborative"].shape == (2, 4, 4)
    assert torch.equal(vec["semantic"], km.codebooks.centroids_semantic)
    rq = ItemTokenizer.fit(emb, kind="rqvae", n_levels=2, codebook_size=4, seed=0, show_progress=False,
                           codebook={"code_dim": 3, "hidden_dims": [8], "beta": 0.25, "align_weight": 0.0,
                                     "align_temperature": 0.1, "proj_dim": 4},
                           fit={"epochs": 2, "batch_size": 64, "lr": 1e-3, "patience": 0})
    vec = rq.code_vectors()
    assert vec["semantic"].shape == (2, 4, 3)
    assert torch.equal(vec["collaborative"][1], rq.codebooks.dual.collaborative.codebooks[1].weight)
