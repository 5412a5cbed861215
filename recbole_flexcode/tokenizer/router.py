"""Popularity-aware token allocation (PATA), FlexCode §4.3.

A shallow MLP reads each item's popularity features ``x_i = [log(1+f_i), age_i, sparsity_i,
uncertainty_i]`` and outputs a temperature-scaled softmax ``p_i(s)`` over the ``L + 1`` ways to
split the fixed budget ``L`` (``s = n_cf`` collaborative tokens, ``L - s`` semantic ones).  The
collaborative share is its mean, ``α_i = Σ_s p_i(s) s / L``.  The paper's soft masks
``m^cf_k = σ((n_cf − k)/τ_m)`` are replaced by their exact counterpart under ``p_i``,
``m^cf_k = P(s ≥ k)`` (docs/design.md, "router"); the hard split used at inference is
``argmax_s p_i(s)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PopularityRouter(nn.Module):
    """MLP router over the ``L + 1`` budget splits (FlexCode §4.3, "routing decision").

    Args:
        n_features: size of ``x_i`` (4 in the paper).
        budget: token budget ``L``.
        hidden_size: width of the hidden layer.
        temperature: softmax temperature of the routing probabilities.
    """

    def __init__(self, n_features: int, budget: int, hidden_size: int = 32, temperature: float = 1.0):
        super().__init__()
        if budget < 1:
            raise ValueError("budget must be >= 1")
        self.budget = budget
        self.temperature = temperature
        self.mlp = nn.Sequential(
            nn.Linear(n_features, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, budget + 1),
        )
        # start from a uniform split distribution: every split gets trained at first
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Split probabilities ``p_i(s)``, shape ``[N, L+1]``."""
        return F.softmax(self.mlp(features) / self.temperature, dim=-1)

    def alpha(self, probs: torch.Tensor) -> torch.Tensor:
        """Collaborative share ``α_i = E[s] / L``."""
        splits = torch.arange(self.budget + 1, device=probs.device, dtype=probs.dtype)
        return (probs * splits).sum(-1) / self.budget

    @staticmethod
    def hard_split(probs: torch.Tensor) -> torch.Tensor:
        """Inference split ``n_cf = argmax_s p_i(s)`` (the paper rounds ``α_i L``; see design.md)."""
        return probs.argmax(dim=-1)


def level_masks(probs: torch.Tensor, budget: int, straight_through: bool = True):
    """Per-level masks of both codebooks, each ``[N, L]`` (FlexCode §4.3, "soft selection").

    Soft masks are the marginals of the split distribution: ``m^cf_k = P(s ≥ k)`` and
    ``m^sem_k = P(L − s ≥ k)``.  With ``straight_through`` the forward value is the hard mask of
    the argmax split (what inference sees) while gradients flow through the soft one.
    """
    n, n_splits = probs.shape
    levels = torch.arange(1, budget + 1, device=probs.device)
    splits = torch.arange(n_splits, device=probs.device)
    cf_table = (splits.unsqueeze(1) >= levels.unsqueeze(0)).to(probs.dtype)  # [L+1, L]
    sem_table = ((budget - splits).unsqueeze(1) >= levels.unsqueeze(0)).to(probs.dtype)
    soft_cf, soft_sem = probs @ cf_table, probs @ sem_table
    if not straight_through:
        return soft_cf, soft_sem
    hard = probs.argmax(dim=-1)
    hard_cf, hard_sem = cf_table[hard], sem_table[hard]
    return hard_cf + soft_cf - soft_cf.detach(), hard_sem + soft_sem - soft_sem.detach()


def stratified_load_balance(probs: torch.Tensor, strata: torch.Tensor, n_strata: int) -> torch.Tensor:
    """``L_lb``: inside each popularity stratum, KL(mean split distribution ‖ uniform).

    The paper names "stratified load balancing over popularity bins" without a formula.  Ours
    keeps every stratum from collapsing onto a single split (the MoE failure mode) while leaving
    strata free to prefer different splits; it is zero when a stratum uses all splits equally.
    """
    n_splits = probs.shape[1]
    sums = torch.zeros(n_strata, n_splits, device=probs.device, dtype=probs.dtype)
    sums.index_add_(0, strata, probs)
    counts = torch.bincount(strata, minlength=n_strata).to(probs.dtype).unsqueeze(1)
    present = counts.squeeze(1) > 0
    mean = sums[present] / counts[present]
    kl = (mean * (mean.clamp_min(1e-12).log() + torch.log(torch.tensor(float(n_splits))))).sum(-1)
    return kl.mean()


def popularity_smoothness(alpha: torch.Tensor, popularity_order: torch.Tensor) -> torch.Tensor:
    """``L_smooth``: squared difference of ``α`` between neighbours in popularity order.

    ``popularity_order`` lists item ids sorted by popularity; neighbours in that order should
    get similar budgets, so the allocation varies smoothly along the popularity axis.
    """
    a = alpha[popularity_order]
    if a.numel() < 2:
        return alpha.sum() * 0.0
    return (a[1:] - a[:-1]).pow(2).mean()
