"""Residual-quantisation VAE tokenizer (RQ-VAE, Lee et al. 2022, as used by TIGER).

FlexCode (§4.1.1) builds two codebooks with the same machinery:

* the *semantic* codebook, an RQ-VAE over sentence-encoder text embeddings trained with
  ``L_SC``;
* the *collaborative* codebook, an RQ-VAE over SASRec item embeddings trained with ``L_CC``.

Both losses have the form (FlexCode §4.1.1, eq. for L_SC / L_CC)::

    L = ||x - Dec(sum_l e_l)||^2 + sum_l ( ||sg[r_l] - e_l||^2 + beta * ||r_l - sg[e_l]||^2 )

with ``r_1 = Enc(x)``, ``r_{l+1} = r_l - e_l`` and ``e_l`` the nearest (L2) code vector of
level ``l`` to ``r_l`` (RQ-VAE, Lee et al. 2022, §3.1).  The decoder sees the quantised
vector through a straight-through estimator (van den Oord et al. 2017, VQ-VAE §3.2) so the
reconstruction gradient reaches the encoder.

Input normalisation is the caller's job: the model works on whatever vectors it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["RQVAEOutput", "RQVAE", "Plateau", "code_statistics"]


@dataclass
class RQVAEOutput:
    """Result of :meth:`RQVAE.forward` (FlexCode §4.1.1, L_SC / L_CC).

    Attributes:
        recon: ``[N, in_dim]`` decoder output ``Dec(sum_l e_l)``.
        codes: ``[N, n_levels]`` long, index of ``e_l`` in codebook ``l``.
        quantized: ``[N, code_dim]`` ``sum_l e_l`` with the straight-through estimator
            applied (forward value is the code sum, gradient flows to ``Enc(x)``).
        loss: scalar ``recon_loss + quant_loss``.
        recon_loss: batch mean of ``||x - Dec(sum_l e_l)||^2``.
        quant_loss: batch mean of ``sum_l ||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2``.
    """

    recon: Tensor
    codes: Tensor
    quantized: Tensor
    loss: Tensor
    recon_loss: Tensor
    quant_loss: Tensor


def _mlp(dims: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU (+ dropout) between them, none at the end.

    The last layer stays linear so the code space / reconstruction is unconstrained in sign.
    """
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _sq_dist(r: Tensor, codebook: Tensor) -> Tensor:
    """Squared L2 distances ``[N, K]`` between rows of ``r`` and of ``codebook``."""
    return (
        r.pow(2).sum(1, keepdim=True)
        - 2.0 * r @ codebook.t()
        + codebook.pow(2).sum(1).unsqueeze(0)
    )


def _faiss_kmeans(data: Tensor, k: int, seed: int, niter: int) -> Tensor:
    """k-means centroids ``[k, d]`` of ``data`` with faiss (seeded, quiet).

    faiss refuses fewer training points than centroids and produces duplicate centroids
    when there are fewer *distinct* points, so in that case we resample with replacement
    and jitter slightly; the centroids then sit on (or next to) the real points.
    """
    import faiss  # local: only needed for initialisation

    device, dtype = data.device, data.dtype
    pts = data.detach().to("cpu", torch.float32)
    n, d = pts.shape
    n_distinct = torch.unique(pts, dim=0).shape[0]
    if n_distinct < k:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, n, (max(n, 4 * k),), generator=gen)
        scale = float(pts.std()) if n > 1 else 0.0
        scale = 1e-3 * scale if scale > 0 else 1e-3
        pts = pts[idx] + scale * torch.randn(idx.shape[0], d, generator=gen)
        n = pts.shape[0]
    arr = np.ascontiguousarray(pts.numpy(), dtype=np.float32)
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=seed,
        verbose=False,
        # min 1: our datasets (item catalogues) are small relative to 39*K, and faiss only
        # uses this to print a warning; max >= n/k: train on every point, no subsampling.
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, math.ceil(n / k)),
    )
    km.train(arr)
    return torch.from_numpy(np.array(km.centroids, dtype=np.float32)).to(device, dtype)


def code_statistics(codes: Tensor, residuals: Sequence[Tensor], codebook_size: int, recon_mse: float) -> dict:
    """Per-level usage and residual error of a residual quantiser's codes ``[N, L]``.

    Returns ``{'levels': [{'level', 'used_codes', 'usage', 'perplexity', 'residual_mse'}],
    'recon_mse', 'collision_rate'}`` where ``usage = used_codes / K``, ``perplexity = exp(entropy
    of the code distribution)`` (in ``[1, K]``), ``residual_mse`` the mean of ``||r_{l+1}||^2``
    after level ``l`` and ``collision_rate`` the fraction of rows whose whole code tuple is shared
    with at least one other row.
    """
    levels = []
    for level in range(codes.shape[1]):
        counts = torch.bincount(codes[:, level], minlength=codebook_size).double()
        p = counts[counts > 0] / counts.sum().clamp_min(1)
        used = int((counts > 0).sum())
        levels.append(
            {
                "level": level,
                "used_codes": used,
                "usage": used / codebook_size,
                "perplexity": float(torch.exp(-(p * p.log()).sum())) if used else 0.0,
                "residual_mse": float(residuals[level].pow(2).sum(1).mean()),
            }
        )
    if codes.shape[0]:
        _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
        collision = float((counts[inverse] > 1).float().mean())
    else:
        collision = 0.0
    return {"levels": levels, "recon_mse": recon_mse, "collision_rate": collision}


class Plateau:
    """Convergence test of a tokenizer fit: stop once the epoch's reconstruction error has not fallen by more than
    ``min_delta`` (relative to the best so far) for ``patience`` epochs; ``patience`` 0 never stops
    (a fixed number of epochs)."""

    def __init__(self, patience: int = 0, min_delta: float = 1e-3):
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best, self.waited = float("inf"), 0

    def __call__(self, loss: float) -> bool:
        if loss < self.best * (1.0 - self.min_delta):
            self.best, self.waited = loss, 0
        else:
            self.waited += 1
        return 0 < self.patience <= self.waited


class RQVAE(nn.Module):
    """RQ-VAE tokenizer (RQ-VAE, Lee et al. 2022; TIGER; FlexCode §4.1.1).

    Args:
        in_dim: dimension of the input embeddings ``x`` (text embeddings for the semantic
            codebook, SASRec item embeddings for the collaborative one; FlexCode §4.1.1).
        code_dim: dimension of the latent ``Enc(x)`` and of each code vector ``e_l``.
        n_levels: number of residual quantisation levels ``L`` (length of a code tuple).
        codebook_size: number of code vectors ``K`` per level.
        hidden_dims: hidden widths of the encoder MLP; the decoder mirrors them.
        beta: commitment weight ``beta`` in L_SC / L_CC (VQ-VAE's 0.25 by default).
        dropout: dropout after each hidden ReLU of encoder and decoder (0 disables).
    """

    def __init__(
        self,
        in_dim: int,
        code_dim: int = 64,
        n_levels: int = 3,
        codebook_size: int = 256,
        hidden_dims: Sequence[int] = (256, 128),
        beta: float = 0.25,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_levels < 1 or codebook_size < 1:
            raise ValueError("n_levels and codebook_size must be >= 1")
        self.in_dim = int(in_dim)
        self.code_dim = int(code_dim)
        self.n_levels = int(n_levels)
        self.codebook_size = int(codebook_size)
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.beta = float(beta)
        self.dropout = float(dropout)

        self.encoder = _mlp((self.in_dim, *self.hidden_dims, self.code_dim), self.dropout)
        self.decoder = _mlp((self.code_dim, *self.hidden_dims[::-1], self.in_dim), self.dropout)
        # One codebook per level (RQ-VAE §3.1 uses separate codebooks per depth, as TIGER).
        self.codebooks = nn.ModuleList(
            nn.Embedding(self.codebook_size, self.code_dim) for _ in range(self.n_levels)
        )
        for cb in self.codebooks:
            # Placeholder until kmeans_init; small uniform as in the VQ-VAE reference code.
            nn.init.uniform_(cb.weight, -1.0 / self.codebook_size, 1.0 / self.codebook_size)
        # Persisted so a loaded model is not re-initialised by k-means on its next fit().
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ helpers
    @property
    def _device(self) -> torch.device:
        return self.codebooks[0].weight.device

    def _as_input(self, x) -> Tensor:
        return torch.as_tensor(x).to(self._device, torch.float32)

    def _assign(self, r: Tensor, level: int) -> Tensor:
        """Index of the nearest code of ``level`` for each row of ``r`` (RQ-VAE eq. 2)."""
        return _sq_dist(r.detach(), self.codebooks[level].weight.detach()).argmin(1)

    def _residual_pass(self, z: Tensor):
        """Greedy residual quantisation of ``z = r_1`` (RQ-VAE §3.1).

        Returns codes ``[N, L]``, ``sum_l e_l`` (differentiable wrt the codebooks), the
        quantisation loss and the per-level residuals ``r_{l+1}`` after each level.
        """
        r = z
        codes, residuals = [], []
        q_sum = torch.zeros_like(z)
        quant_loss = z.new_zeros(())
        for level, cb in enumerate(self.codebooks):
            idx = self._assign(r, level)
            e = cb(idx)
            # ||sg[r_l] - e_l||^2 moves the code; beta ||r_l - sg[e_l]||^2 commits the encoder.
            codebook_term = (r.detach() - e).pow(2).sum(1).mean()
            commit_term = (r - e.detach()).pow(2).sum(1).mean()
            quant_loss = quant_loss + codebook_term + self.beta * commit_term
            q_sum = q_sum + e
            # sg on e_l: codebook l is trained only by its own codebook term, not by the
            # commitment of deeper levels.
            r = r - e.detach()
            codes.append(idx)
            residuals.append(r)
        return torch.stack(codes, 1), q_sum, quant_loss, residuals

    # ------------------------------------------------------------------ model API
    def forward(self, x) -> RQVAEOutput:
        """One pass of L_SC / L_CC (FlexCode §4.1.1) on a batch ``x`` ``[N, in_dim]``."""
        x = self._as_input(x)
        z = self.encoder(x)
        codes, q_sum, quant_loss, _ = self._residual_pass(z)
        # Straight-through (VQ-VAE §3.2): forward value sum_l e_l, gradient copied to Enc(x).
        quantized = z + (q_sum - z).detach()
        recon = self.decoder(quantized)
        recon_loss = (x - recon).pow(2).sum(1).mean()
        return RQVAEOutput(
            recon=recon,
            codes=codes,
            quantized=quantized,
            loss=recon_loss + quant_loss,
            recon_loss=recon_loss,
            quant_loss=quant_loss,
        )

    @torch.no_grad()
    def encode(self, x, batch_size: int = 4096) -> Tensor:
        """Semantic / collaborative ID tuples ``[N, L]`` (long) of ``x`` (FlexCode §4.1.1).

        Runs in eval mode (no dropout) in batches of ``batch_size``; restores the mode.
        """
        x = self._as_input(x)
        was_training = self.training
        self.eval()
        try:
            out = [
                self._residual_pass(self.encoder(x[i : i + batch_size]))[0]
                for i in range(0, x.shape[0], batch_size)
            ]
        finally:
            self.train(was_training)
        if not out:
            return torch.empty(0, self.n_levels, dtype=torch.long, device=self._device)
        return torch.cat(out, 0)

    def decode_codes(self, codes: Tensor) -> Tensor:
        """``Dec(sum_l e_l)`` for given code tuples ``[N, L]`` (FlexCode §4.1.1).

        Differentiable wrt the codebooks and the decoder.
        """
        codes = torch.as_tensor(codes, device=self._device).long()
        if codes.dim() != 2 or codes.shape[1] != self.n_levels:
            raise ValueError(f"codes must be [N, {self.n_levels}], got {tuple(codes.shape)}")
        q_sum = sum(self.codebooks[l](codes[:, l]) for l in range(self.n_levels))
        return self.decoder(q_sum)

    def reconstruct(self, x) -> Tensor:
        """``Dec(sum_l e_l)`` of :meth:`forward`, differentiable (straight-through to Enc)."""
        return self.forward(x).recon

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def kmeans_init(self, x, seed: int = 0, niter: int = 20) -> None:
        """Initialise codebook ``l`` by k-means on the level-``l`` residuals of ``Enc(x)``.

        k-means on ``r_1`` gives codebook 1, ``r_2 = r_1 - nearest`` feeds codebook 2, and so
        on (RQ-VAE, Lee et al. 2022; TIGER's k-means initialisation) so that every code
        starts near data and level-1 usage is high from the first epoch.
        """
        x = self._as_input(x)
        if x.shape[0] == 0:
            raise ValueError("kmeans_init needs at least one point")
        was_training = self.training
        self.eval()
        try:
            r = self.encoder(x)
            for level, cb in enumerate(self.codebooks):
                cb.weight.copy_(_faiss_kmeans(r, self.codebook_size, seed + level, niter))
                r = r - cb(self._assign(r, level))
        finally:
            self.train(was_training)
        self.initialized.fill_(True)

    @torch.no_grad()
    def reset_dead_codes(
        self, x, usage: Tensor, generator: Optional[torch.Generator] = None
    ) -> int:
        """Re-initialise codes unused in the last epoch to random residuals of their level.

        Dead codes never receive a codebook-term gradient (FlexCode §4.1.1), so they are
        moved onto residuals ``r_l`` of randomly drawn rows of ``x``; levels are processed
        in order so level ``l+1`` samples residuals left by the *updated* level ``l``.

        Args:
            x: ``[N, in_dim]`` training inputs.
            usage: ``[L, K]`` counts of how often each code was chosen.
            generator: optional CPU generator for the row draws (``fit`` passes its own).

        Returns:
            The number of codes reset, over all levels.
        """
        x = self._as_input(x)
        usage = torch.as_tensor(usage).to(self._device)
        if usage.shape != (self.n_levels, self.codebook_size):
            raise ValueError(
                f"usage must be [{self.n_levels}, {self.codebook_size}], got {tuple(usage.shape)}"
            )
        n = x.shape[0]
        if n == 0 or not bool((usage == 0).any()):
            return 0
        was_training = self.training
        self.eval()
        n_reset = 0
        try:
            r = self.encoder(x)
            for level, cb in enumerate(self.codebooks):
                dead = (usage[level] == 0).nonzero(as_tuple=True)[0]
                if dead.numel() > 0:
                    # Without replacement when possible so reset codes are distinct.
                    if dead.numel() <= n:
                        rows = torch.randperm(n, generator=generator)[: dead.numel()]
                    else:
                        rows = torch.randint(0, n, (dead.numel(),), generator=generator)
                    cb.weight[dead] = r[rows.to(r.device)]
                    n_reset += int(dead.numel())
                r = r - cb(self._assign(r, level))
        finally:
            self.train(was_training)
        return n_reset

    # ------------------------------------------------------------------ training
    def fit(
        self,
        x: Tensor,
        epochs: int = 100,
        batch_size: int = 1024,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
        dead_code_every: int = 1,
        show_progress: bool = True,
        logger=None,
        patience: int = 0,
    ) -> dict:
        """Train on ``x`` by minimising L_SC / L_CC (FlexCode §4.1.1) with Adam.

        At most ``epochs`` epochs; with ``patience`` > 0 it stops once the reconstruction error has
        stopped improving (:class:`Plateau`), so "trained to convergence" is a setting, not a guess.

        k-means initialises the codebooks on the first call (RQ-VAE, Lee et al. 2022);
        mini-batches are reshuffled every epoch; every ``dead_code_every`` epochs (0
        disables) codes unused during that epoch are reset (:meth:`reset_dead_codes`).
        Shuffling, dropout, k-means and resets are all seeded by ``seed``; the global RNG
        state is left untouched.  Parameter initialisation happens in ``__init__`` and is
        the caller's to seed.

        Returns:
            ``{'loss': [...], 'recon_loss': [...], 'dead_codes_reset': [...]}``, one entry
            per epoch (losses are sample-weighted epoch means).
        """
        from tqdm.auto import tqdm

        x = self._as_input(x)
        n = x.shape[0]
        if n == 0:
            raise ValueError("fit needs at least one point")
        history: dict = {"loss": [], "recon_loss": [], "dead_codes_reset": []}
        if not bool(self.initialized):
            self.kmeans_init(x, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        fork_devices = [self._device] if self._device.type == "cuda" else []
        log_every = max(1, epochs // 10)
        plateau = Plateau(patience)

        was_training = self.training
        self.train()
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)  # dropout masks
            bar = tqdm(range(epochs), desc="RQ-VAE", disable=not show_progress, leave=False)
            for epoch in bar:
                usage = torch.zeros(
                    self.n_levels, self.codebook_size, dtype=torch.long, device=self._device
                )
                tot_loss = tot_recon = 0.0
                perm = torch.randperm(n, generator=gen).to(self._device)
                for start in range(0, n, batch_size):
                    xb = x[perm[start : start + batch_size]]
                    out = self.forward(xb)
                    opt.zero_grad(set_to_none=True)
                    out.loss.backward()
                    opt.step()
                    m = xb.shape[0]
                    tot_loss += float(out.loss.detach()) * m
                    tot_recon += float(out.recon_loss.detach()) * m
                    for level in range(self.n_levels):
                        usage[level] += torch.bincount(
                            out.codes[:, level], minlength=self.codebook_size
                        )
                n_reset = 0
                if dead_code_every and (epoch + 1) % dead_code_every == 0:
                    dead_mask = usage == 0
                    n_reset = self.reset_dead_codes(x, usage, generator=gen)
                    if n_reset:
                        self._clear_adam_rows(opt, dead_mask)
                history["loss"].append(tot_loss / n)
                history["recon_loss"].append(tot_recon / n)
                history["dead_codes_reset"].append(n_reset)
                bar.set_postfix(loss=f"{tot_loss / n:.4f}", recon=f"{tot_recon / n:.4f}", reset=n_reset)
                converged = plateau(tot_recon / n)  # the reconstruction, not the codebook terms, says whether it still learns
                if logger is not None and ((epoch + 1) % log_every == 0 or epoch + 1 == epochs or converged):
                    logger.info(
                        f"RQ-VAE epoch {epoch + 1}/{epochs}: loss={tot_loss / n:.5f} "
                        f"recon={tot_recon / n:.5f} dead_codes_reset={n_reset}" + (" (converged)" if converged else "")
                    )
                if converged:
                    break
            bar.close()
        self.train(was_training)
        return history

    def _clear_adam_rows(self, opt: torch.optim.Optimizer, dead_mask: Tensor) -> None:
        """Zero Adam moments of reset codes: stale momentum would drag them off the data."""
        for level, cb in enumerate(self.codebooks):
            state = opt.state.get(cb.weight)
            if not state:
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][dead_mask[level]] = 0.0

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def level_stats(self, x) -> dict:
        """Per-level code usage and residual error on ``x`` (eval mode).

        Returns:
            ``{'levels': [{'level', 'used_codes', 'usage', 'perplexity', 'residual_mse'}],
            'recon_mse', 'collision_rate'}`` where ``usage = used_codes / K``,
            ``perplexity = exp(entropy of the code distribution)`` (in ``[1, K]``),
            ``residual_mse`` is the mean of ``||r_{l+1}||^2`` after level ``l``,
            ``recon_mse`` the mean of ``||x - Dec(sum_l e_l)||^2`` (the recon term of
            L_SC / L_CC) and ``collision_rate`` the fraction of rows whose whole code tuple
            is shared with at least one other row.
        """
        x = self._as_input(x)
        was_training = self.training
        self.eval()
        try:
            z = self.encoder(x)
            codes, q_sum, _, residuals = self._residual_pass(z)
            recon = self.decoder(q_sum)
        finally:
            self.train(was_training)
        return code_statistics(codes, residuals, self.codebook_size, float((x - recon).pow(2).sum(1).mean()))
