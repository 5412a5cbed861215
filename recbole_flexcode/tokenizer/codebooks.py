"""Codebook backends of the item tokenizer: how item embeddings become code tuples.

A backend quantises one or two *sources* (``semantic``: text embeddings, ``collaborative``: SASRec
item embeddings; FlexCode §4.1) into ``L`` codes of ``K`` per level and says how well it did. It
knows nothing of token paths, splits or the vocabulary (:mod:`recbole_flexcode.tokenizer.item_tokenizer`
owns those). Two backends, chosen by the ``tokenizer`` setting:

* ``rqvae`` — :class:`RQVAECodebooks`: an RQ-VAE per source (FlexCode §4.1.1) and, for two sources,
  the cross-codebook InfoNCE alignment trained jointly with them (§4.2);
* ``rkmeans`` — :class:`ResidualKMeansCodebooks`: residual k-means with faiss, no training
  (one ``faiss.Kmeans`` per level on the previous level's residuals; GRID reports it at least as
  good as an RQ-VAE, SPEC §6). It has no alignment term.

Both take and return dicts keyed by source name and are ``nn.Module`` s, so their state travels in
the tokenizer's safetensors file.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from recbole_flexcode.tokenizer.dual import DualCodebookTokenizer
from recbole_flexcode.tokenizer.rqvae import RQVAE, _faiss_kmeans, _sq_dist, code_statistics

SEMANTIC, COLLABORATIVE = "semantic", "collaborative"


class RQVAECodebooks(nn.Module):
    """RQ-VAE codebooks (FlexCode §4.1.1); with both sources also the alignment of §4.2.

    Args:
        dims: input width per source (``{'semantic': 384, 'collaborative': 64}`` or one source).
        n_levels, codebook_size, code_dim, hidden_dims, beta: RQ-VAE shape (``L``, ``K``, ``d``).
        align_weight, align_temperature, proj_dim: ``λ_align``, InfoNCE ``τ`` and the projection width.
    """

    kind = "rqvae"
    trainable = True  # joint training (§4.5) can keep training it with the generator

    def __init__(self, dims: dict, n_levels: int, codebook_size: int, code_dim: int, hidden_dims, beta: float,
                 align_weight: float = 0.0, align_temperature: float = 0.1, proj_dim: int = 64):
        super().__init__()
        self.sources = list(dims)
        if set(self.sources) == {SEMANTIC, COLLABORATIVE}:
            self.dual = DualCodebookTokenizer(
                dims[SEMANTIC], dims[COLLABORATIVE], n_levels, codebook_size, code_dim, hidden_dims, beta,
                align_weight, align_temperature, proj_dim,
            )
        elif len(self.sources) == 1:
            if align_weight > 0:
                raise ValueError("alignment needs two sources")
            self.single = RQVAE(dims[self.sources[0]], code_dim, n_levels, codebook_size, hidden_dims, beta)
        else:
            raise ValueError(f"RQVAECodebooks: sources must be one of them or both of {SEMANTIC}, {COLLABORATIVE}")

    def fit(self, x: dict, epochs: int, batch_size: int, lr: float, seed: int, show_progress=True, logger=None,
            patience: int = 0) -> dict:
        """At most ``epochs`` epochs; ``patience`` > 0 stops at convergence (:class:`~recbole_flexcode.tokenizer.rqvae.Plateau`)."""
        if len(self.sources) == 1:
            return self.single.fit(x[self.sources[0]], epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                   show_progress=show_progress, logger=logger, patience=patience)
        return self.dual.fit(x[SEMANTIC], x[COLLABORATIVE], epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             show_progress=show_progress, logger=logger, patience=patience)

    @torch.no_grad()
    def encode(self, x: dict) -> dict:
        if len(self.sources) == 1:
            return {self.sources[0]: self.single.encode(x[self.sources[0]])}
        sem, cf = self.dual.encode(x[SEMANTIC], x[COLLABORATIVE])
        return {SEMANTIC: sem, COLLABORATIVE: cf}

    @torch.no_grad()
    def stats(self, x: dict) -> dict:
        if len(self.sources) == 1:
            return {self.sources[0]: self.single.level_stats(x[self.sources[0]])}
        return self.dual.stats(x[SEMANTIC], x[COLLABORATIVE])

    def code_vectors(self) -> dict:
        """Code vectors per source, ``[L, K, code_dim]`` (each level's RQ-VAE codebook)."""
        if len(self.sources) == 1:
            return {self.sources[0]: torch.stack([cb.weight for cb in self.single.codebooks])}
        return {name: torch.stack([cb.weight for cb in getattr(self.dual, name).codebooks]) for name in (SEMANTIC, COLLABORATIVE)}

    def loss(self, x: dict) -> torch.Tensor:
        """``L_SC + L_CC + λ_align L_align`` on a batch of items (joint training, §4.5)."""
        if len(self.sources) == 1:
            return self.single(x[self.sources[0]]).loss
        return self.dual.loss(x[SEMANTIC], x[COLLABORATIVE])["total"]


class ResidualKMeansCodebooks(nn.Module):
    """Residual k-means (no training): level ``l``'s codebook is k-means on the residuals ``r_l``.

    ``r_1 = x``, ``r_{l+1} = r_l - e_l`` with ``e_l`` the nearest centroid of level ``l`` (the
    quantiser of RQ-VAE without the encoder and decoder). Centroids are fitted by faiss, seeded.
    """

    kind = "rkmeans"
    trainable = False

    def __init__(self, dims: dict, n_levels: int, codebook_size: int, kmeans_iterations: int = 20):
        super().__init__()
        self.sources = list(dims)
        self.n_levels, self.codebook_size, self.kmeans_iterations = int(n_levels), int(codebook_size), int(kmeans_iterations)
        for name, dim in dims.items():
            self.register_buffer(f"centroids_{name}", torch.zeros(self.n_levels, self.codebook_size, int(dim)))

    def _residual_pass(self, name: str, x: torch.Tensor):
        centroids = getattr(self, f"centroids_{name}")
        r, codes, residuals = x, [], []
        for level in range(self.n_levels):
            code = _sq_dist(r, centroids[level]).argmin(1)
            r = r - centroids[level][code]
            codes.append(code)
            residuals.append(r)
        return torch.stack(codes, 1), residuals

    def fit(self, x: dict, seed: int, logger=None, **_unused) -> dict:
        log = logger or logging.getLogger(__name__)
        for offset, name in enumerate(self.sources):
            r = torch.as_tensor(x[name], dtype=torch.float32)
            centroids = getattr(self, f"centroids_{name}")
            for level in range(self.n_levels):
                centroids[level] = _faiss_kmeans(r, self.codebook_size, seed + 100 * offset + level, self.kmeans_iterations)
                r = r - centroids[level][_sq_dist(r, centroids[level]).argmin(1)]
            log.info("residual k-means (%s): %d levels of %d centroids, residual mse %.4f",
                     name, self.n_levels, self.codebook_size, float(r.pow(2).sum(1).mean()))
        return {}

    @torch.no_grad()
    def encode(self, x: dict) -> dict:
        return {name: self._residual_pass(name, torch.as_tensor(x[name], dtype=torch.float32))[0] for name in self.sources}

    @torch.no_grad()
    def stats(self, x: dict) -> dict:
        out = {}
        for name in self.sources:
            data = torch.as_tensor(x[name], dtype=torch.float32)
            codes, residuals = self._residual_pass(name, data)
            # no decoder: the reconstruction is the sum of the chosen centroids, its error the last residual
            out[name] = code_statistics(codes, residuals, self.codebook_size, float(residuals[-1].pow(2).sum(1).mean()))
        return out

    def code_vectors(self) -> dict:
        """Centroids per source, ``[L, K, d]`` (in the standardised input space)."""
        return {name: getattr(self, f"centroids_{name}") for name in self.sources}

    def loss(self, x: dict) -> torch.Tensor:
        raise RuntimeError("residual k-means has no training loss: use training_mode=staged")
