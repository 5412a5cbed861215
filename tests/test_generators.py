"""Generator options (recbole_flexcode.model.generator, t5_generator, history): generator × history encoding.

Unit checks on a synthetic vocabulary (tiny sizes) for every combination, then FlexCode end to end on
the tiny ml-100k slice of tests/test_flexcode.py.
"""

from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn as nn

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.model.generator import (
    SemanticIDGenerator,
    build_generator,
    codebook_projection,
    init_token_embeddings_from_codebooks,
)
from recbole_flexcode.model.history import PooledHistory, TokenHistory, TokenTable
from recbole_flexcode.tokenizer.router import level_masks
from recbole_flexcode.tokenizer.vocab import all_split_paths
from conftest import FixedRouter, tiny_config

L, K, N_ITEMS, S = 3, 5, 30, 6
COMBOS = [("transformer", "pooled"), ("transformer", "tokens"), ("t5", "pooled"), ("t5", "tokens")]
IDS = [f"{g}-{h}" for g, h in COMBOS]
SIZES = dict(hidden_size=16, n_heads=2, inner_size=32, n_encoder_layers=2, n_decoder_layers=2, dropout=0.1)


def generator_class(kind):
    if kind == "t5":
        from recbole_flexcode.model.t5_generator import T5SemanticIDGenerator

        return T5SemanticIDGenerator
    return SemanticIDGenerator


@pytest.fixture(scope="module")
def vocab():
    """Codes, paths (collisions resolved) and straight-through masks of ``N_ITEMS`` items over all splits."""
    gen = torch.Generator().manual_seed(0)
    cf_codes = torch.randint(0, K, (N_ITEMS, L), generator=gen)
    sem_codes = torch.randint(0, K, (N_ITEMS, L), generator=gen)
    cf_codes[0] = sem_codes[0] = 0
    cf_codes[2], sem_codes[2] = cf_codes[1], sem_codes[1]  # a collision: only the disambiguation token differs
    paths, layout, _ = all_split_paths(cf_codes, sem_codes, K, min_disamb=2)
    probs = torch.softmax(3 * torch.randn(N_ITEMS, L + 1, generator=gen), -1).requires_grad_(True)
    return types.SimpleNamespace(
        layout=layout, paths=paths, probs=probs, splits=probs.argmax(-1),
        cf=layout.level_tokens(cf_codes, semantic=False), sem=layout.level_tokens(sem_codes, semantic=True),
        source=types.SimpleNamespace(paths=paths),
    )


def make(kind, history, vocab, seed=0, **overrides):
    torch.manual_seed(seed)
    cls = generator_class(kind)
    return cls(vocab.layout.vocab_size, L + 1, S, **{**SIZES, **overrides}, history_encoding=history,
               path_source=vocab.source)


def histories(seed=1, batch=4):
    gen = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N_ITEMS, (batch, S), generator=gen)
    lengths = torch.tensor([S, 1, 3, S - 1][:batch])
    seq[torch.arange(S).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return seq, lengths


def encode(g, vocab, seq, lengths, probs=None):
    cf_mask, sem_mask = level_masks(vocab.probs if probs is None else probs, L, straight_through=True)
    return g.encode_history(g.item_table(vocab.cf, vocab.sem, cf_mask, sem_mask), seq, lengths)


def target_paths(vocab, seq, m=3, seed=2):
    gen = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS, (len(seq), m), generator=gen)
    splits = torch.randint(0, L + 1, (len(seq), m), generator=gen)
    return vocab.paths[splits, items]  # [B, M, T]


# ----------------------------------------------------------------------------- both generators, both histories


@pytest.mark.parametrize("kind, history", COMBOS, ids=IDS)
def test_sequence_nll_is_the_sum_of_stepwise_log_probs(kind, history, vocab):
    g = make(kind, history, vocab).eval()
    seq, lengths = histories()
    paths = target_paths(vocab, seq)
    with torch.no_grad():
        memory, pad = encode(g, vocab, seq, lengths)
        nll = g.sequence_nll(memory, pad, paths)
        stepwise = torch.zeros_like(nll)
        for j in range(L + 1):  # decode token j from the growing prefix paths[..., :j]
            lp = g.decode_log_probs(memory, pad, paths[..., :j])
            assert lp.shape == (*paths.shape[:2], j + 1, vocab.layout.vocab_size)
            stepwise -= lp[..., -1, :].gather(-1, paths[..., j : j + 1]).squeeze(-1)
    assert nll.shape == paths.shape[:2] and torch.isfinite(nll).all()
    torch.testing.assert_close(nll, stepwise, atol=1e-4, rtol=1e-5)
    # log-probabilities over the vocabulary
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(lp.shape[:-1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind, history", COMBOS, ids=IDS)
def test_packed_candidates_equal_one_at_a_time(kind, history, vocab):
    g = make(kind, history, vocab).eval()
    seq, lengths = histories()
    prefix = target_paths(vocab, seq, m=7)[..., :-1]
    with torch.no_grad():
        memory, pad = encode(g, vocab, seq, lengths)
        packed = g.decode_log_probs(memory, pad, prefix)
        single = torch.cat([g.decode_log_probs(memory, pad, prefix[:, i : i + 1]) for i in range(prefix.shape[1])], 1)
        chunked = g.decode_log_probs(memory, pad, prefix, max_tokens=2 * (L + 1))  # 2 candidates per decoder pass
        user = torch.cat([g.decode_log_probs(memory[b : b + 1], pad[b : b + 1], prefix[b : b + 1]) for b in range(len(seq))])
    torch.testing.assert_close(packed, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed, chunked, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed, user, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, history", COMBOS, ids=IDS)
def test_history_padding_does_not_change_the_output(kind, history, vocab):
    g = make(kind, history, vocab).eval()
    seq, lengths = histories()
    prefix = target_paths(vocab, seq)[..., :-1]
    other = seq.clone()
    padding = torch.arange(S).unsqueeze(0) >= lengths.unsqueeze(1)
    other[padding] = torch.randint(1, N_ITEMS, (int(padding.sum()),), generator=torch.Generator().manual_seed(9))
    short = seq[:, : int(lengths.max()) - 1].clone()  # fewer padding columns (the longest history cut by one item)
    short_len = lengths.clamp(max=short.shape[1])
    with torch.no_grad():
        memory, pad = encode(g, vocab, seq, lengths)
        lp = g.decode_log_probs(memory, pad, prefix)
        memory2, pad2 = encode(g, vocab, other, lengths)
        lp2 = g.decode_log_probs(memory2, pad2, prefix)
        memory3, pad3 = encode(g, vocab, short, short_len)
        lp3 = g.decode_log_probs(memory3, pad3, prefix)
    assert torch.equal(pad, pad2)
    torch.testing.assert_close(memory[~pad], memory2[~pad2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lp, lp2, atol=1e-5, rtol=1e-5)
    same = lengths <= short.shape[1]  # users whose history fits in the narrower batch
    torch.testing.assert_close(lp[same], lp3[same], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(lp[~same], lp3[~same])  # the cut history does change the output


@pytest.mark.parametrize("kind, history", COMBOS, ids=IDS)
def test_adam_steps_reduce_the_loss(kind, history, vocab):
    g = make(kind, history, vocab)
    seq, lengths = histories()
    paths = target_paths(vocab, seq)
    probs = vocab.probs.detach().clone().requires_grad_(True)  # stands in for the router
    opt = torch.optim.Adam([*g.parameters(), probs], lr=1e-2)

    def loss_fn():
        memory, pad = encode(g, vocab, seq, lengths, probs)
        return g.sequence_nll(memory, pad, paths).mean()

    g.eval()
    with torch.no_grad():
        before = float(loss_fn())
    torch.manual_seed(0)
    for step in range(15):
        g.train()
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        if step == 0:  # the history's masks pass the gradient on to the split probabilities
            assert probs.grad is not None and probs.grad.abs().sum() > 0
        opt.step()
    g.eval()
    with torch.no_grad():
        after = float(loss_fn())
    assert after < 0.5 * before, (before, after)


# ----------------------------------------------------------------------------- the history encodings


def test_token_history_lays_out_each_items_inference_path(vocab):
    emb = nn.Embedding(vocab.layout.vocab_size, 8)
    cf_mask, sem_mask = level_masks(vocab.probs, L, straight_through=True)
    history = TokenHistory(L + 1, 8, vocab.source)
    table = history.table(emb, vocab.cf, vocab.sem, cf_mask, sem_mask)
    items = torch.arange(N_ITEMS)
    inference = vocab.paths[vocab.splits, items]  # [N, T]: codes under the hard split, then the disambiguation token
    assert table.tokens.shape == (N_ITEMS, L + 1, 8)
    torch.testing.assert_close(table.tokens, emb(inference))
    assert not torch.equal(inference[1], inference[2]) or vocab.splits[1] != vocab.splits[2]
    # positions: the items' paths one after another, each token with its level and its item's recency
    seq, lengths = histories()
    recency = nn.Embedding(S, 8)
    x, pad = history.inputs(table, seq, lengths, recency)
    assert x.shape == (len(seq), S * (L + 1), 8) and pad.shape == (len(seq), S * (L + 1))
    b, i, j = 2, 1, 3
    expected = emb(inference[seq[b, i]])[j] + history.level_embedding.weight[j] + recency.weight[int(lengths[b]) - 1 - i]
    torch.testing.assert_close(x[b, i * (L + 1) + j], expected)
    assert torch.equal(pad, (torch.arange(S).unsqueeze(0) >= lengths.unsqueeze(1)).repeat_interleave(L + 1, 1))
    # without a path source: the L code tokens only
    assert TokenHistory(L + 1, 8).table(emb, vocab.cf, vocab.sem, cf_mask, sem_mask).tokens.shape == (N_ITEMS, L, 8)


def test_token_table_takes_a_per_item_vector_on_every_position(vocab):
    emb = nn.Embedding(vocab.layout.vocab_size, 8)
    cf_mask, sem_mask = level_masks(vocab.probs, L, straight_through=True)
    history = TokenHistory(L + 1, 8, vocab.source)
    table = history.table(emb, vocab.cf, vocab.sem, cf_mask, sem_mask)
    free = torch.randn(N_ITEMS, 8)
    plus = table + free  # what FlexCode does with history_item_embedding
    assert isinstance(plus, TokenTable) and torch.equal((free + table).extra, free)
    seq, lengths = histories()
    recency = nn.Embedding(S, 8)
    x, _ = history.inputs(table, seq, lengths, recency)
    x2, _ = history.inputs(plus, seq, lengths, recency)
    torch.testing.assert_close(x2 - x, free[seq].repeat_interleave(L + 1, 1), atol=1e-6, rtol=0)


def test_pooled_history_is_the_sum_of_masked_code_embeddings(vocab):
    emb = nn.Embedding(vocab.layout.vocab_size, 8)
    cf_mask, sem_mask = level_masks(vocab.probs, L, straight_through=True)
    table = PooledHistory().table(emb, vocab.cf, vocab.sem, cf_mask, sem_mask)
    codes = vocab.paths[vocab.splits, torch.arange(N_ITEMS)][:, :L]
    torch.testing.assert_close(table, emb(codes).sum(1))
    assert list(PooledHistory().parameters()) == []


# ----------------------------------------------------------------------------- building, sizes, codebook initialisation


def fake_tokenizer(vocab, code_dim=6):
    gen = torch.Generator().manual_seed(4)
    books = types.SimpleNamespace(sources=["semantic", "collaborative"],
                                  centroids_semantic=torch.randn(L, K, code_dim, generator=gen),
                                  centroids_collaborative=3 * torch.randn(L, K, code_dim, generator=gen))
    return types.SimpleNamespace(codebooks=books, layout=vocab.layout, paths=vocab.paths,
                                 vocab_size=vocab.layout.vocab_size, path_length=L + 1,
                                 code_vectors=lambda: {n: getattr(books, f"centroids_{n}") for n in books.sources})


def config_of(**overrides):
    cfg = {"generator": "transformer", "history_encoding": "pooled", "head_size": None,
           "init_token_embeddings_from_codebooks": False, "hidden_size": 16, "n_heads": 2, "inner_size": 32,
           "n_encoder_layers": 1, "n_decoder_layers": 2, "dropout_prob": 0.1}
    cfg.update(overrides)
    return cfg


def test_default_build_is_todays_generator(vocab):
    tok = fake_tokenizer(vocab)
    torch.manual_seed(3)
    built = build_generator(config_of(), tok, S)
    torch.manual_seed(3)
    plain = SemanticIDGenerator(tok.vocab_size, L + 1, S, hidden_size=16, n_heads=2, inner_size=32,
                                n_encoder_layers=1, n_decoder_layers=2, dropout=0.1)
    assert type(built) is SemanticIDGenerator and isinstance(built.history, PooledHistory)
    a, b = built.state_dict(), plain.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    # a config without the new keys (an older checkpoint's) builds the same
    torch.manual_seed(3)
    old = build_generator({k: v for k, v in config_of().items()} | {"generator": None, "history_encoding": None,
                                                                     "init_token_embeddings_from_codebooks": None}, tok, S)
    assert all(torch.equal(old.state_dict()[k], a[k]) for k in a)


def test_t5_uses_the_configured_sizes(vocab):
    tok = fake_tokenizer(vocab)
    g = build_generator(config_of(generator="t5", hidden_size=24, n_heads=3, inner_size=40, n_encoder_layers=2,
                                  n_decoder_layers=1, dropout_prob=0.15), tok, S)
    c = g.encoder.config
    assert (c.d_model, c.num_heads, c.d_kv, c.d_ff, c.dropout_rate) == (24, 3, 8, 40, 0.15)
    assert len(g.encoder.block) == 2 and len(g.decoder.block) == 1 and g.decoder.config.is_decoder
    assert g.hidden_size == 24 and g.token_embedding.weight.shape == (tok.vocab_size, 24)
    assert g.encoder.embed_tokens is None and g.decoder.embed_tokens is None  # one token table, ours
    g = build_generator(config_of(generator="t5", hidden_size=16, n_heads=3, head_size=8), tok, S)
    assert g.encoder.block[0].layer[0].SelfAttention.q.weight.shape == (24, 16)  # 3 heads × 8 from width 16
    with pytest.raises(ValueError, match="divisible"):
        build_generator(config_of(generator="t5", hidden_size=16, n_heads=3), tok, S)
    with pytest.raises(ValueError, match="generator: unknown"):
        build_generator(config_of(generator="gpt"), tok, S)


@pytest.mark.parametrize("width", [12, 4])
def test_codebook_projection(width):
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(5))
    p = codebook_projection(x, width)
    assert p.shape == (6, width)
    if width >= 6:  # an isometry: distances between code vectors are kept
        torch.testing.assert_close((x @ p) @ (x @ p).t(), x @ x.t(), atol=1e-4, rtol=1e-4)
    else:  # least squares: no rank-4 map reconstructs the vectors better than the top singular directions
        err = (x - x @ p @ p.t()).pow(2).sum()
        q, _ = torch.linalg.qr(torch.randn(6, width, generator=torch.Generator().manual_seed(6)))
        assert err <= (x - x @ q @ q.t()).pow(2).sum()
        torch.testing.assert_close(err, torch.linalg.svdvals(x)[width:].pow(2).sum(), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("kind", ["transformer", "t5"])
def test_token_embeddings_from_codebooks(kind, vocab):
    tok = fake_tokenizer(vocab)
    torch.manual_seed(0)
    plain = build_generator(config_of(generator=kind), tok, S)
    torch.manual_seed(0)
    g = build_generator(config_of(generator=kind, init_token_embeddings_from_codebooks=True), tok, S)
    w, w0, lay = g.token_embedding.weight, plain.token_embedding.weight, tok.layout
    codes = slice(lay.cf_offset, lay.disamb_offset)
    assert not torch.equal(w[codes], w0[codes])
    assert torch.equal(w[: lay.cf_offset], w0[: lay.cf_offset]) and torch.equal(w[lay.disamb_offset :], w0[lay.disamb_offset :])
    # geometry of each source's code vectors is kept (an isometry up to one scale), at the init's scale
    for name, offset in (("semantic", lay.sem_offset), ("collaborative", lay.cf_offset)):
        vectors = getattr(tok.codebooks, f"centroids_{name}").reshape(L * K, -1)
        rows = w[offset : offset + L * K].detach()
        ratio = (rows[1:] - rows[0]).norm(dim=1) / (vectors[1:] - vectors[0]).norm(dim=1)
        torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio), atol=1e-4, rtol=1e-3)
        assert float(rows.pow(2).mean().sqrt()) == pytest.approx(float(w0.detach().std()), rel=1e-3)


# ----------------------------------------------------------------------------- FlexCode end to end


def base_config_dict(data_path, cache_dir) -> dict:
    """tests/test_flexcode.py's tiny settings (copied)."""
    return tiny_config(
        data_path,
        **{
            "cache_dir": str(cache_dir), "token_budget": L, "codebook_size": 16, "code_dim": 16,
            "rqvae_hidden_sizes": [32], "rqvae_epochs": 15, "rqvae_batch_size": 256, "align_proj_size": 16,
            "cf_epochs": 2, "cf_hidden_size": 16, "cf_inner_size": 32, "cf_n_layers": 1, "router_hidden_size": 8,
            "hidden_size": 16, "inner_size": 32, "n_encoder_layers": 1, "n_decoder_layers": 1, "dropout_prob": 0.1,
            "beam_size": 20, "train_batch_size": 128,
        },
    )


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_flexcode.config import FlexConfig

    cfg = base_config_dict(tiny_data, tmp_path_factory.mktemp("generators-cache"))
    config = FlexConfig("FlexCode", "ml-tiny", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    return dict(cfg=cfg, train=train, valid=valid, test=test)


def flexcode_model(run, **overrides):
    from recbole.utils import init_seed

    from recbole_flexcode.config import FlexConfig
    from recbole_flexcode.model.flexcode import FlexCode
    from recbole_flexcode.pipeline import prepare

    config = FlexConfig("FlexCode", "ml-tiny", config_dict={**run["cfg"], **overrides})
    prepare(config, run["train"]._dataset)
    init_seed(config["seed"], config["reproducibility"])
    return FlexCode(config, run["train"]._dataset)


END_TO_END = [(g, h, {}) for g, h in COMBOS] + [
    ("t5", "tokens", {"history_item_embedding": True, "init_token_embeddings_from_codebooks": True}),
    ("transformer", "pooled", {"init_token_embeddings_from_codebooks": True}),
]


@pytest.mark.parametrize("kind, history, extra", END_TO_END,
                         ids=[*IDS, "t5-tokens-item_emb-codebook_init", "transformer-pooled-codebook_init"])
def test_flexcode_end_to_end(kind, history, extra, tiny_run):
    m = flexcode_model(tiny_run, generator=kind, history_encoding=history, **extra)
    assert m.generator.hidden_size == 16
    m.split_policy.router = FixedRouter(torch.softmax(3 * torch.randn(m.n_items, L + 1, generator=torch.Generator().manual_seed(3)), -1))
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    for i, batch in enumerate(tiny_run["train"]):
        if i == 4:
            break
        m.train()
        loss = m.calculate_loss(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    batch = next(iter(tiny_run["test"]))[0][torch.arange(8)]
    with torch.no_grad():
        m.decode_mode, m.beam_size = "beam", 20
        beam = m.full_sort_predict(batch)
        m.beam_size = m.n_items
        full_beam = m.full_sort_predict(batch)
        m.decode_mode = "exact"
        exact = m.full_sort_predict(batch)
        pred = m.predict(batch)
    finite = torch.isfinite(beam)
    assert torch.all(finite.sum(1) == 20) and not finite[:, 0].any() and torch.all(beam[finite] <= 0)
    assert torch.isfinite(exact[:, 1:]).all() and torch.isfinite(full_beam[:, 1:]).all()
    torch.testing.assert_close(beam[finite], exact[finite], atol=1e-4, rtol=1e-4)  # a beam item's score is exact
    top_beam, top_exact = full_beam.topk(10, dim=1), exact.topk(10, dim=1)
    torch.testing.assert_close(top_beam.values, top_exact.values, atol=1e-4, rtol=1e-4)
    assert torch.equal(top_beam.indices, top_exact.indices)
    torch.testing.assert_close(pred, exact[torch.arange(8), batch["item_id"]], atol=1e-4, rtol=1e-4)
    # the analysis reads the model through the same interface
    from recbole_flexcode.analysis.flexcode import report, split_losses, token_fit

    assert report(m)
    assert split_losses(m, tiny_run["valid"])
    assert token_fit(m, tiny_run["valid"], max_rows=16, topk=5)
    # a checkpoint of this model reloads into a model built from the same config
    fresh = flexcode_model(tiny_run, generator=kind, history_encoding=history, **extra)
    fresh.split_policy.router = copy.deepcopy(m.split_policy.router)
    fresh.load_state_dict(m.state_dict())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict(batch), pred)
