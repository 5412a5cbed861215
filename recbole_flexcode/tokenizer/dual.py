"""The dual codebook tokenizer: semantic and collaborative RQ-VAEs plus their alignment.

FlexCode §4.1 (dual codebook construction) and §4.2 (cross-codebook alignment) as one
object with ``fit`` / ``encode``; :class:`recbole_flexcode.tokenizer.item_tokenizer.ItemTokenizer` owns it
and saves it within its one artefact.  Fitting minimises
``L_SC + L_CC + λ_align L_align`` jointly over mini-batches of items; with ``λ_align = 0`` the
two codebooks are independent (the "w/o alignment" ablation).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from recbole_flexcode.tokenizer.alignment import CrossCodebookAlignment
from recbole_flexcode.tokenizer.rqvae import RQVAE, Plateau


def standardize(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Centre the rows and divide by one global scale (keeps the embedding geometry)."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    x = x - x.mean(dim=0, keepdim=True)
    scale = x.pow(2).sum(dim=1).mean().sqrt().clamp_min(1e-8)
    return x / scale


class DualCodebookTokenizer(nn.Module):
    """Semantic RQ-VAE (§4.1.1) + collaborative RQ-VAE (§4.1.2) + alignment (§4.2).

    Args:
        sem_dim, cf_dim: input dimensions of the text and SASRec item embeddings.
        n_levels: levels ``L`` of each codebook (= the token budget of an item).
        codebook_size: codes ``K`` per level.  code_dim: code vector dimension ``d``.
        hidden_dims: RQ-VAE encoder widths.  beta: commitment weight ``β``.
        align_weight: ``λ_align``.  align_temperature: InfoNCE ``τ``.  proj_dim: ``g_s``/``g_c`` width.
    """

    def __init__(
        self,
        sem_dim: int,
        cf_dim: int,
        n_levels: int = 3,
        codebook_size: int = 256,
        code_dim: int = 64,
        hidden_dims=(256, 128),
        beta: float = 0.25,
        align_weight: float = 0.1,
        align_temperature: float = 0.1,
        proj_dim: int = 64,
    ):
        super().__init__()
        self.n_levels = int(n_levels)
        self.codebook_size = int(codebook_size)
        self.align_weight = float(align_weight)
        self.semantic = RQVAE(sem_dim, code_dim, n_levels, codebook_size, hidden_dims, beta)
        self.collaborative = RQVAE(cf_dim, code_dim, n_levels, codebook_size, hidden_dims, beta)
        self.alignment = CrossCodebookAlignment(sem_dim, cf_dim, proj_dim, align_temperature)

    def loss(self, sem_x: torch.Tensor, cf_x: torch.Tensor) -> dict:
        """``L_SC + L_CC + λ_align L_align`` on one mini-batch of items (§4.5 tokenizer terms)."""
        sem_out = self.semantic(sem_x)
        cf_out = self.collaborative(cf_x)
        align = (
            self.alignment(sem_out.recon, cf_out.recon)
            if self.align_weight > 0 and len(sem_x) > 1
            else sem_out.loss.new_zeros(())
        )
        total = sem_out.loss + cf_out.loss + self.align_weight * align
        return {"total": total, "sem": sem_out.loss, "cf": cf_out.loss, "align": align, "sem_out": sem_out, "cf_out": cf_out}

    def fit(self, sem_x, cf_x, epochs=200, batch_size=1024, lr=1e-3, seed=0, show_progress=True, logger=None,
            patience=0) -> dict:
        """Jointly fit both codebooks and the alignment heads; k-means initialises each codebook.

        At most ``epochs`` epochs; with ``patience`` > 0 it stops once the summed reconstruction error
        of both RQ-VAEs has stopped improving (:class:`~recbole_flexcode.tokenizer.rqvae.Plateau`)."""
        log = logger or logging.getLogger(__name__)
        sem_x = torch.as_tensor(sem_x, dtype=torch.float32)
        cf_x = torch.as_tensor(cf_x, dtype=torch.float32)
        n = len(sem_x)
        if n != len(cf_x) or n == 0:
            raise ValueError("semantic and collaborative inputs must have the same, non-zero, number of rows")
        for model, x, offset in ((self.semantic, sem_x, 0), (self.collaborative, cf_x, 100)):
            if not bool(model.initialized):
                model.kmeans_init(x, seed=seed + offset)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        history = {"loss": [], "sem": [], "cf": [], "align": [], "dead_codes_reset": []}
        plateau = Plateau(patience)
        self.train()
        bar = tqdm(range(epochs), desc="tokenizer (dual RQ-VAE)", disable=not show_progress, leave=False)
        for epoch in bar:
            usage = {m: torch.zeros(self.n_levels, self.codebook_size, dtype=torch.long) for m in ("sem", "cf")}
            sums = dict.fromkeys(("loss", "sem", "cf", "align"), 0.0)
            recon_sum = 0.0
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                out = self.loss(sem_x[idx], cf_x[idx])
                opt.zero_grad(set_to_none=True)
                out["total"].backward()
                opt.step()
                for key, name in (("loss", "total"), ("sem", "sem"), ("cf", "cf"), ("align", "align")):
                    sums[key] += float(out[name].detach()) * len(idx)
                recon_sum += float((out["sem_out"].recon_loss + out["cf_out"].recon_loss).detach()) * len(idx)
                for m in ("sem", "cf"):
                    codes = out[f"{m}_out"].codes.cpu()
                    for level in range(self.n_levels):
                        usage[m][level] += torch.bincount(codes[:, level], minlength=self.codebook_size)
            reset = 0
            for m, model, x in (("sem", self.semantic, sem_x), ("cf", self.collaborative, cf_x)):
                dead = usage[m] == 0
                n_reset = model.reset_dead_codes(x, usage[m], generator=gen)
                if n_reset:
                    model._clear_adam_rows(opt, dead)
                reset += n_reset
            for key in sums:
                history[key].append(sums[key] / n)
            history["dead_codes_reset"].append(reset)
            bar.set_postfix(loss=f"{sums['loss'] / n:.4f}", align=f"{sums['align'] / n:.3f}", reset=reset)
            converged = plateau(recon_sum / n)  # both reconstructions: whether the codebooks still learn
            if (epoch + 1) % max(1, epochs // 5) == 0 or epoch + 1 == epochs or converged:
                log.info(
                    "tokenizer epoch %d/%d: loss %.4f (semantic %.4f, collaborative %.4f, align %.4f), dead codes reset %d%s",
                    epoch + 1, epochs, sums["loss"] / n, sums["sem"] / n, sums["cf"] / n, sums["align"] / n, reset,
                    " (converged)" if converged else "",
                )
            if converged:
                break
        self.eval()
        return history

    @torch.no_grad()
    def encode(self, sem_x, cf_x) -> tuple[torch.Tensor, torch.Tensor]:
        """Code tuples ``(s_i1..s_iL)`` and ``(c_i1..c_iL)``, each ``[N, L]``."""
        return self.semantic.encode(sem_x), self.collaborative.encode(cf_x)

    @torch.no_grad()
    def stats(self, sem_x, cf_x) -> dict:
        """Per-level code usage and reconstruction error of both codebooks (issue #3 item 3)."""
        return {"semantic": self.semantic.level_stats(sem_x), "collaborative": self.collaborative.level_stats(cf_x)}
