"""Tests for the RQ-VAE tokenizer (FlexCode §4.1.1, L_SC / L_CC; RQ-VAE, Lee et al. 2022)."""

import logging

import pytest
import torch

from recbole_flexcode.tokenizer.rqvae import RQVAE, RQVAEOutput

IN_DIM, CODE_DIM, LEVELS, K = 32, 8, 3, 16
SMALL = dict(code_dim=CODE_DIM, n_levels=LEVELS, codebook_size=K, hidden_dims=(64, 32))


def gaussian_mixture(n=600, d=IN_DIM, n_clusters=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(n_clusters, d, generator=g)
    labels = torch.randint(0, n_clusters, (n,), generator=g)
    return centers[labels] + 0.5 * torch.randn(n, d, generator=g)


def new_model(seed=0, **kw):
    torch.manual_seed(seed)
    return RQVAE(IN_DIM, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def x():
    return gaussian_mixture()


@pytest.fixture(scope="module")
def fitted(x):
    model = new_model()
    model.kmeans_init(x, seed=0)
    init_stats = model.level_stats(x)
    history = model.fit(x, epochs=25, batch_size=128, lr=3e-3, seed=0, show_progress=False)
    return model, history, init_stats


def test_forward_output_and_straight_through(x):
    model = new_model()
    model.kmeans_init(x)
    out = model(x[:50])
    assert isinstance(out, RQVAEOutput)
    assert out.recon.shape == (50, IN_DIM)
    assert out.codes.shape == (50, LEVELS) and out.codes.dtype == torch.long
    assert out.quantized.shape == (50, CODE_DIM)
    assert torch.allclose(out.loss, out.recon_loss + out.quant_loss)
    # quant_loss = (1 + beta) * sum_l mean ||r_l - e_l||^2 in value
    z = model.encoder(x[:50])
    r, expected = z, 0.0
    for level in range(LEVELS):
        e = model.codebooks[level].weight[out.codes[:, level]]
        expected += (1 + model.beta) * (r - e).pow(2).sum(1).mean()
        r = r - e
    assert torch.allclose(out.quant_loss, expected, rtol=1e-5)
    # quantized carries the code sum forward
    q = sum(model.codebooks[l].weight[out.codes[:, l]] for l in range(LEVELS))
    assert torch.allclose(out.quantized, q, atol=1e-5)
    # the reconstruction gradient reaches the encoder (straight-through) ...
    model.zero_grad()
    out.recon_loss.backward(retain_graph=True)
    assert model.encoder[0].weight.grad.abs().sum() > 0
    # ... and does not move the codebooks; the codebook term does
    assert model.codebooks[0].weight.grad is None or model.codebooks[0].weight.grad.abs().sum() == 0
    model.zero_grad()
    out.quant_loss.backward()
    assert model.codebooks[0].weight.grad.abs().sum() > 0


def test_fit_reduces_reconstruction(fitted, x):
    model, history, init_stats = fitted
    assert set(history) == {"loss", "recon_loss", "dead_codes_reset"}
    assert all(len(v) == 25 for v in history.values())
    after = model.level_stats(x)["recon_mse"]
    assert after < 0.5 * init_stats["recon_mse"]
    assert history["recon_loss"][-1] < 0.5 * history["recon_loss"][0]
    assert history["loss"][-1] < history["loss"][0]


def test_kmeans_init_gives_high_level1_usage(x):
    random_init = new_model()
    km = new_model()
    km.kmeans_init(x, seed=0)
    used_random = random_init.level_stats(x)["levels"][0]["used_codes"]
    used_km = km.level_stats(x)["levels"][0]["used_codes"]
    assert used_km >= int(0.9 * K)
    assert used_km > used_random
    assert bool(km.initialized) and not bool(random_init.initialized)


def test_kmeans_init_with_fewer_points_than_codes():
    model = new_model()
    tiny = gaussian_mixture(n=5)
    model.kmeans_init(torch.cat([tiny, tiny]))  # 10 rows, 5 distinct, K=16
    for cb in model.codebooks:
        assert torch.isfinite(cb.weight).all()
    codes = model.encode(tiny)
    assert codes.shape == (5, LEVELS)


def test_encode_shape_range_and_determinism(fitted, x):
    model, _, _ = fitted
    codes = model.encode(x)
    assert codes.shape == (x.shape[0], LEVELS) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < K
    assert torch.equal(codes, model.encode(x, batch_size=7))  # batching is invisible
    model.train()
    assert torch.equal(codes, model.encode(x)) and model.training
    # eval-mode decode of the codes is exactly the eval-mode reconstruction
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.decode_codes(codes), model.reconstruct(x), atol=1e-5)


def test_same_seed_same_codes(x):
    runs = []
    for _ in range(2):
        m = new_model(seed=1, dropout=0.1)
        m.fit(x, epochs=3, batch_size=128, seed=5, show_progress=False)
        runs.append(m.encode(x))
    assert torch.equal(runs[0], runs[1])
    other = new_model(seed=1, dropout=0.1)
    other.fit(x, epochs=3, batch_size=128, seed=6, show_progress=False)
    assert not torch.equal(runs[0], other.encode(x))


def test_dead_code_reset(x):
    model = new_model()
    model.kmeans_init(x)
    dead = torch.tensor([0, 3, 7, 11])
    with torch.no_grad():
        model.codebooks[0].weight[dead] += 1e4  # far from every residual: never chosen
    codes = model.encode(x)
    assert not torch.isin(codes[:, 0], dead).any()
    usage = torch.stack([torch.bincount(codes[:, l], minlength=K) for l in range(LEVELS)])
    n_dead = int((usage == 0).sum())
    assert n_dead >= 4
    n_reset = model.reset_dead_codes(x, usage)
    assert n_reset == n_dead
    assert model.codebooks[0].weight[dead].abs().max() < 100
    used = torch.unique(model.encode(x)[:, 0])
    assert torch.isin(dead, used).all()
    # nothing dead, nothing reset
    full = torch.ones(LEVELS, K, dtype=torch.long)
    assert model.reset_dead_codes(x, full) == 0


def test_fit_resets_dead_codes(x):
    model = new_model()
    model.kmeans_init(x)
    dead = torch.tensor([2, 5, 9])
    with torch.no_grad():
        model.codebooks[0].weight[dead] = 1e4
    history = model.fit(x, epochs=1, batch_size=128, show_progress=False)
    assert history["dead_codes_reset"][0] >= 3
    assert torch.isin(dead, torch.unique(model.encode(x)[:, 0])).all()
    # a model that is already initialised is not re-initialised by fit
    before = model.codebooks[1].weight.detach().clone()
    model.fit(x, epochs=0, show_progress=False)
    assert torch.equal(before, model.codebooks[1].weight)


def test_fit_logs(x, caplog):
    model = new_model()
    logger = logging.getLogger("test_rqvae")
    with caplog.at_level(logging.INFO, logger="test_rqvae"):
        model.fit(x[:200], epochs=2, batch_size=100, show_progress=False, logger=logger)
    assert any("RQ-VAE epoch 2/2" in r.message for r in caplog.records)


def test_level_stats(fitted, x):
    model, _, _ = fitted
    stats = model.level_stats(x)
    levels = stats["levels"]
    assert [s["level"] for s in levels] == list(range(LEVELS))
    for s in levels:
        assert isinstance(s["used_codes"], int) and 1 <= s["used_codes"] <= K
        assert s["usage"] == pytest.approx(s["used_codes"] / K)
        assert 1.0 <= s["perplexity"] <= s["used_codes"] + 1e-6
    mses = [s["residual_mse"] for s in levels]
    assert all(a > b for a, b in zip(mses, mses[1:]))
    with torch.no_grad():
        assert mses[0] < model.encoder(x).pow(2).sum(1).mean().item()
    assert stats["recon_mse"] > 0
    assert 0.0 <= stats["collision_rate"] <= 1.0

    # crafted input: 20 rows with pairwise-distinct code tuples, then 5 of them repeated
    codes = model.encode(x)
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    unique_rows = torch.nonzero(counts[inverse] == 1).squeeze(1)[:20]
    assert unique_rows.numel() == 20
    distinct = x[unique_rows]
    assert model.level_stats(distinct)["collision_rate"] == 0.0
    dup = torch.cat([distinct, distinct[:5]])
    assert model.level_stats(dup)["collision_rate"] == pytest.approx(10 / 25)


def test_patience_stops_a_converged_fit_and_zero_keeps_the_epoch_count():
    """``patience`` > 0 ends the fit once the reconstruction stops improving; 0 runs exactly ``epochs``."""
    import torch

    from recbole_flexcode.tokenizer.rqvae import RQVAE, Plateau

    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    fixed = RQVAE(8, code_dim=4, n_levels=2, codebook_size=4, hidden_dims=(16,)).fit(x, epochs=60, batch_size=64, show_progress=False)
    assert len(fixed["loss"]) == 60
    torch.manual_seed(0)
    early = RQVAE(8, code_dim=4, n_levels=2, codebook_size=4, hidden_dims=(16,)).fit(
        x, epochs=5000, batch_size=64, lr=1e-2, show_progress=False, patience=10)
    n = len(early["recon_loss"])
    assert 10 < n < 5000
    best = min(early["recon_loss"][: n - 10])
    assert all(v >= best * (1 - 1e-3) for v in early["recon_loss"][n - 10:])  # the last 10 epochs did not improve it
    plateau = Plateau(patience=2, min_delta=0.0)
    assert [plateau(v) for v in (3.0, 2.0, 2.0, 2.5)] == [False, False, False, True]
