"""PATA router (FlexCode §4.3): split distribution, masks, load balancing and smoothness."""

from __future__ import annotations

import math

import pytest
import torch

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.tokenizer.router import (
    PopularityRouter,
    level_masks,
    popularity_smoothness,
    stratified_load_balance,
)

L = 3


def _random_probs(n=40, budget=L, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, budget + 1, generator=gen) * 2.0
    probs = torch.softmax(logits, dim=-1)
    return probs.requires_grad_(requires_grad)


# ----------------------------------------------------------------------------- router


def test_router_outputs_distribution_over_splits():
    torch.manual_seed(0)
    router = PopularityRouter(4, L, hidden_size=16)
    feats = torch.rand(50, 4)
    probs = router(feats)
    assert probs.shape == (50, L + 1)
    assert torch.all(probs >= 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(50))
    # zero-initialised last layer: every split starts equally likely, α = 1/2 for all items
    torch.testing.assert_close(probs, torch.full_like(probs, 1.0 / (L + 1)))
    torch.testing.assert_close(router.alpha(probs), torch.full((50,), 0.5))
    assert PopularityRouter.hard_split(probs).shape == (50,)


def test_router_temperature_sharpens():
    torch.manual_seed(0)
    feats = torch.rand(30, 4)
    hot = PopularityRouter(4, L, hidden_size=16, temperature=1.0)
    with torch.no_grad():
        hot.mlp[-1].weight.normal_()
    cold = PopularityRouter(4, L, hidden_size=16, temperature=0.1)
    cold.load_state_dict(hot.state_dict())
    ent = lambda p: -(p * p.clamp_min(1e-12).log()).sum(-1).mean()  # noqa: E731
    assert ent(cold(feats)) < ent(hot(feats))


def test_router_alpha_follows_popularity_feature():
    """Rewarding more CF tokens for popular items (feature 0) makes α increase with feature 0."""
    torch.manual_seed(0)
    router = PopularityRouter(4, L, hidden_size=16)
    feats = torch.rand(256, 4)
    splits = torch.arange(L + 1, dtype=torch.float32)
    # cost of split s for item i: CF tokens are rewarded for popular items (feature 0 > 1/2)
    # and penalised for unpopular ones; the other features are noise
    cost = -(splits.unsqueeze(0) / L) * (2.0 * feats[:, :1] - 1.0)
    opt = torch.optim.Adam(router.parameters(), lr=1e-2)
    before = router.alpha(router(feats)).detach()
    assert float(before.std()) < 1e-6  # uniform at start: the features play no role yet
    for _ in range(300):
        loss = (router(feats) * cost).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        alpha = router.alpha(router(feats))
        pop = feats[:, 0]
        corr = torch.corrcoef(torch.stack([alpha, pop]))[0, 1]
        assert corr > 0.75, corr
        assert alpha[pop > 0.8].mean() > 0.8 and alpha[pop < 0.2].mean() < 0.2
        # the hard split follows too: popular items get more CF tokens than unpopular ones
        hard = PopularityRouter.hard_split(router(feats)).float()
        assert hard[pop > 0.8].mean() > hard[pop < 0.2].mean() + 2.0
        # α depends on feature 0: moving only that feature moves α
        lo, hi = feats.clone(), feats.clone()
        lo[:, 0], hi[:, 0] = 0.05, 0.95
        assert torch.all(router.alpha(router(hi)) > router.alpha(router(lo)))


# ----------------------------------------------------------------------------- level masks


def test_level_masks_hard_forward_values_are_argmax_masks():
    probs = _random_probs(requires_grad=True)
    cf, sem = level_masks(probs, L, straight_through=True)
    assert cf.shape == sem.shape == (probs.shape[0], L)
    hard = probs.argmax(-1)
    levels = torch.arange(1, L + 1)
    expect_cf = (hard.unsqueeze(1) >= levels).float()
    expect_sem = ((L - hard).unsqueeze(1) >= levels).float()
    torch.testing.assert_close(cf.detach(), expect_cf)
    torch.testing.assert_close(sem.detach(), expect_sem)
    # budget: every item uses exactly L tokens, split between the codebooks
    torch.testing.assert_close((cf + sem).detach().sum(-1), torch.full((probs.shape[0],), float(L)))


def test_level_masks_straight_through_gradients_reach_probs():
    probs = _random_probs(requires_grad=True)
    gen = torch.Generator().manual_seed(1)
    w_cf, w_sem = torch.randn(probs.shape[0], L, generator=gen), torch.randn(probs.shape[0], L, generator=gen)
    cf, sem = level_masks(probs, L, straight_through=True)
    (cf * w_cf + sem * w_sem).sum().backward()
    assert probs.grad is not None and probs.grad.abs().sum() > 0
    # the gradient is that of the soft masks (straight-through estimator)
    probs2 = probs.detach().clone().requires_grad_(True)
    soft_cf, soft_sem = level_masks(probs2, L, straight_through=False)
    (soft_cf * w_cf + soft_sem * w_sem).sum().backward()
    torch.testing.assert_close(probs.grad, probs2.grad)


def test_level_masks_soft_values_are_tail_probabilities():
    probs = _random_probs()
    cf, sem = level_masks(probs, L, straight_through=False)
    for k in range(1, L + 1):
        torch.testing.assert_close(cf[:, k - 1], probs[:, k:].sum(-1))  # P(s >= k)
        torch.testing.assert_close(sem[:, k - 1], probs[:, : L - k + 1].sum(-1))  # P(L - s >= k)
    # expected number of CF tokens = Σ_k P(s >= k) = E[s]
    torch.testing.assert_close(cf.sum(-1), (probs * torch.arange(L + 1)).sum(-1))


# ----------------------------------------------------------------------------- losses


def test_stratified_load_balance_zero_when_uniform_per_stratum():
    n_splits = L + 1
    strata = torch.tensor([0] * 8 + [1] * 8 + [2] * 4)
    uniform = torch.full((20, n_splits), 1.0 / n_splits)
    assert float(stratified_load_balance(uniform, strata, 3)) == pytest.approx(0.0, abs=1e-6)
    # individually peaked items whose *stratum mean* is uniform are balanced too
    onehot = torch.eye(n_splits)[torch.arange(20) % n_splits]
    assert float(stratified_load_balance(onehot, strata, 3)) == pytest.approx(0.0, abs=1e-6)
    # an empty stratum is ignored
    assert float(stratified_load_balance(onehot, strata, 5)) == pytest.approx(0.0, abs=1e-6)


def test_stratified_load_balance_positive_when_a_stratum_collapses():
    n_splits = L + 1
    strata = torch.tensor([0] * 8 + [1] * 8)
    probs = torch.full((16, n_splits), 1.0 / n_splits)
    probs[8:] = 0.0
    probs[8:, 2] = 1.0  # stratum 1 always picks split 2
    lb = float(stratified_load_balance(probs, strata, 2))
    assert lb > 0.1
    # KL(one-hot ‖ uniform) = log(L+1) for the collapsed stratum, 0 for the other; mean over strata
    assert lb == pytest.approx(math.log(n_splits) / 2, rel=1e-5)
    # partial collapse is penalised less than full collapse
    probs_half = probs.clone()
    probs_half[8:] = 0.5 * probs[8:] + 0.5 / n_splits
    assert 0 < float(stratified_load_balance(probs_half, strata, 2)) < lb


def test_stratified_load_balance_has_gradient():
    probs = _random_probs(requires_grad=True)
    strata = torch.arange(probs.shape[0]) % 3
    stratified_load_balance(probs, strata, 3).backward()
    assert probs.grad.abs().sum() > 0


def test_popularity_smoothness():
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    const = torch.full((30,), 0.4)
    assert float(popularity_smoothness(const, order)) == pytest.approx(0.0, abs=1e-12)
    # ramp along the popularity order: small steps
    ramp = torch.empty(30)
    ramp[order] = torch.linspace(0, 1, 30)
    # jagged along the popularity order: neighbours alternate between 0 and 1
    jagged = torch.empty(30)
    jagged[order] = (torch.arange(30) % 2).float()
    s_ramp, s_jag = float(popularity_smoothness(ramp, order)), float(popularity_smoothness(jagged, order))
    assert s_ramp == pytest.approx((1 / 29) ** 2, rel=1e-4)
    assert s_jag == pytest.approx(1.0)
    assert s_jag > 100 * s_ramp
    # it is the order that matters: the ramp looked at in another order is no longer smooth
    assert float(popularity_smoothness(ramp, torch.arange(30))) > 10 * s_ramp
    # a single item has nothing to be smooth with
    assert float(popularity_smoothness(torch.tensor([0.3]), torch.tensor([0]))) == 0.0
