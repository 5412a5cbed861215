"""SOLID's report for the run's JSON (variant, semantic-ID statistics, metacode pre-training)."""

from __future__ import annotations

import torch


@torch.no_grad()
def report(model) -> dict:
    """Variant, semantic-ID statistics and the metacode pre-training losses."""
    out = {"variant": model.variant, "dynamic": model.dynamic, "use_semantics": model.use_semantics}
    if model.use_semantics:
        out.update(
            clip_threshold=model.clip_threshold,
            con_weight=model.con_weight,
            freeze_codebook=model.freeze_codebook,
            semantic_ids=model.semantic_stats,
            metacode_loss=list(model.metacode_history),
            codebook_equals_metacode=bool(torch.equal(model.codebook.weight[1:].cpu(), model.metacode.cpu())),
        )
    return out
