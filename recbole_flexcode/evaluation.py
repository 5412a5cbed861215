"""Evaluation beyond RecBole's evaluator: metrics by item popularity group (SPEC §3).

Items are ranked by their interaction count in the *training split*; the 20% most popular are
**head**, the rest **tail**.  Test users are grouped by whether their target item is head or
tail, and Recall@K / NDCG@K are computed inside each group from the same full-ranking scores
RecBole's evaluator sees (one positive per user under leave-one-out).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from recbole_flexcode.data.popularity import training_item_counts


def head_item_mask(counts: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """Boolean mask over item ids: True for the ``head_fraction`` most popular real items.

    Ties at the boundary are broken by item id so the head has exactly ``ceil(f * n)`` items.
    """
    n_real = len(counts) - 1
    n_head = int(math.ceil(head_fraction * n_real))
    order = np.lexsort((np.arange(1, len(counts)), -counts[1:])) + 1
    mask = np.zeros(len(counts), dtype=bool)
    mask[order[:n_head]] = True
    return mask


@torch.no_grad()
def target_ranks(model, eval_data, device) -> tuple[np.ndarray, np.ndarray]:
    """1-based rank of each evaluation user's target item under ``full_sort_predict``.

    Ties are resolved pessimistically only against strictly higher scores (as a sort would
    place the target among equals at random, we count items scored strictly higher + 1).
    """
    model.eval()
    ranks, targets = [], []
    for batch in eval_data:
        interaction, history_index, positive_u, positive_i = batch
        scores = model.full_sort_predict(interaction.to(device)).view(-1, eval_data._dataset.item_num)
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        positive_u = positive_u.to(scores.device)
        positive_i = positive_i.to(scores.device)
        target_scores = scores[positive_u, positive_i]
        higher = (scores[positive_u] > target_scores.unsqueeze(1)).sum(dim=1)
        # a target scored -inf (outside the beam) is never retrieved
        higher = torch.where(torch.isinf(target_scores), torch.full_like(higher, scores.shape[1]), higher)
        ranks.append((higher + 1).cpu().numpy())
        targets.append(positive_i.cpu().numpy())
    return np.concatenate(ranks), np.concatenate(targets)


def capped_interactions(data, max_rows: int | None = None):
    """The interactions of a RecBole loader (training or full-sort), stopping after ``max_rows`` rows.

    Full-sort loaders yield ``(interaction, history_index, positive_u, positive_i)``; only the
    interaction is kept. The last batch is cut to size.
    """
    rows = 0
    for batch in data:
        interaction = batch[0] if isinstance(batch, tuple) else batch
        if max_rows is not None:
            if rows >= max_rows:
                return
            if len(interaction) > max_rows - rows:
                interaction = interaction[torch.arange(max_rows - rows)]
        rows += len(interaction)
        yield interaction


def metrics_from_ranks(ranks: np.ndarray, ks=(5, 10)) -> dict:
    """Recall@K and NDCG@K for one positive per user."""
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean()) if len(ranks) else float("nan")
        gains = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
        out[f"ndcg@{k}"] = float(gains.mean()) if len(ranks) else float("nan")
    return out


def popularity_group_metrics(model, eval_data, train_dataset, device, head_fraction=0.2, ks=(10,)) -> dict:
    """Recall/NDCG@K over the users whose target is a head item vs a tail item."""
    counts = training_item_counts(train_dataset)
    head = head_item_mask(counts, head_fraction)
    ranks, targets = target_ranks(model, eval_data, device)
    is_head = head[targets]
    result = {"head_fraction": head_fraction, "n_head_items": int(head.sum())}
    for name, mask in (("head", is_head), ("tail", ~is_head)):
        group = metrics_from_ranks(ranks[mask], ks)
        group["users"] = int(mask.sum())
        result[name] = group
    result["all"] = metrics_from_ranks(ranks, ks)
    result["all"]["users"] = int(len(ranks))
    return result
