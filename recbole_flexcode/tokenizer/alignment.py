"""Cross-codebook alignment (CCA), FlexCode §4.2.

Projection heads ``g_s`` and ``g_c`` map the *reconstructed* semantic and collaborative
embeddings ``ŝ_i``, ``ĉ_i`` into a shared space, and an InfoNCE loss over the batch pulls an
item's two views together and pushes other items' views apart:
``L_align = −(1/B) Σ_i log( exp(cos(g_s ŝ_i, g_c ĉ_i)/τ) / Σ_j exp(cos(g_s ŝ_i, g_c ĉ_j)/τ) )``.
Aligning the reconstructions (not the raw inputs) makes the loss act on what the codebooks keep.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CrossCodebookAlignment(nn.Module):
    """Projection heads and the InfoNCE loss of FlexCode §4.2.

    Args:
        sem_dim: dimension of ``ŝ_i``; cf_dim: dimension of ``ĉ_i``.
        proj_dim: shared space dimension.
        temperature: ``τ`` of the InfoNCE loss.
        symmetric: also add the collaborative→semantic direction (the paper writes one).
    """

    def __init__(self, sem_dim: int, cf_dim: int, proj_dim: int = 64, temperature: float = 0.1, symmetric: bool = False):
        super().__init__()
        self.g_s = nn.Sequential(nn.Linear(sem_dim, proj_dim), nn.ReLU(), nn.Linear(proj_dim, proj_dim))
        self.g_c = nn.Sequential(nn.Linear(cf_dim, proj_dim), nn.ReLU(), nn.Linear(proj_dim, proj_dim))
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, sem_recon: torch.Tensor, cf_recon: torch.Tensor) -> torch.Tensor:
        zs = F.normalize(self.g_s(sem_recon), dim=-1)
        zc = F.normalize(self.g_c(cf_recon), dim=-1)
        logits = zs @ zc.t() / self.temperature
        target = torch.arange(len(zs), device=zs.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.t(), target))
        return loss
