"""Evaluation beyond RecBole's evaluator: metrics by item popularity group (SPEC §3).

Items are ranked by their interaction count in the *training split*; the 20% most popular are
**head**, the rest **tail**.  Test users are grouped by whether their target item is head or
tail, and Recall@K / NDCG@K are computed inside each group from the same full-ranking scores
RecBole's evaluator sees (one positive per user under leave-one-out).

The same ranks are also split more finely by what the training split knows of the target item
(:func:`target_strata`): how often it was interacted with, and how many days before the target's own
interaction it was last interacted with. Validation and test targets are each user's second-to-last
and last items, so the two splits can draw on these strata in different proportions;
:func:`at_mix` separates that from a change within the strata.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from recbole_flexcode.data.popularity import DAY, training_item_counts

#: lower edges of the training-count strata of a target item: never seen, 1-4, 5-9, 10-19, 20-49, 50+
COUNT_EDGES = (0, 1, 5, 10, 20, 50)
#: lower edges (days) of the strata by the time from the target item's latest training interaction to
#: the target's own; items that are never a training target (so have no training time) form a stratum
#: of their own, "never"
GAP_EDGES_DAYS = (0, 30, 180, 365)
#: the coarser strata crossed in :func:`cross_strata`: training count never, 1-9, 10-49, 50+, and days since
#: the item's latest training interaction never, 0-30, 30+ (coarse so that each cell holds hundreds of users;
#: docs/design.md, "Targets by what training knows of them")
CROSS_COUNT_EDGES = (0, 1, 10, 50)
CROSS_GAP_EDGES_DAYS = (0, 30)


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


def target_times(eval_data) -> np.ndarray | None:
    """The time of each evaluation user's target interaction, in :func:`target_ranks`' order (``None``
    when the dataset has no time field). Reads the loader once more, without the model."""
    time_field = eval_data._dataset.time_field
    times = []
    for interaction, _, positive_u, _ in eval_data:
        if time_field is None or time_field not in interaction.interaction:
            return None
        times.append(interaction[time_field][positive_u.to(interaction[time_field].device)].cpu().numpy())
    return np.concatenate(times).astype(np.float64) if times else np.zeros(0)


def last_training_time(train_dataset) -> np.ndarray | None:
    """Per item id, the latest time it is a training target (NaN if never; ``None`` without a time field).
    A user's first item is history only, so it has no time of its own here."""
    time_field = train_dataset.time_field
    inter = train_dataset.inter_feat
    if time_field is None or time_field not in inter.columns:
        return None
    last = np.full(train_dataset.item_num, np.nan)
    np.fmax.at(last, inter[train_dataset.iid_field].numpy(), inter[time_field].numpy().astype(np.float64))
    return last


def _strata_rows(ranks, labels, names, ks) -> list[dict]:
    rows = []
    for index, name in enumerate(names):
        mask = labels == index
        row = {"stratum": name, "users": int(mask.sum()), "share": float(mask.mean()) if len(mask) else float("nan")}
        row.update(metrics_from_ranks(ranks[mask], ks) if mask.any() else {})
        rows.append(row)
    return rows


def _edge_labels(values: np.ndarray, edges) -> tuple[np.ndarray, list[str]]:
    """The stratum of each value among lower ``edges`` (integer ranges ``lo-hi``, the last ``lo+``)."""
    names = [f"{lo}-{hi - 1}" if hi - 1 > lo else str(lo) for lo, hi in zip(edges, edges[1:])]
    names.append(f"{edges[-1]}+")
    return np.searchsorted(edges, values, side="right") - 1, names


def _gap_labels(gap: np.ndarray, edges) -> tuple[np.ndarray, list[str]]:
    """The stratum of each gap in days among lower ``edges``; NaN (no training time) is ``"never"``."""
    # a target before its item's latest training time (another user's later training row) counts as 0 days
    labels = np.searchsorted(edges, np.maximum(np.nan_to_num(gap), 0.0), side="right") - 1
    names = ["never"] + [f"{lo}-{hi} d" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+ d"]
    return np.where(np.isnan(gap), 0, labels + 1), names


def cross_strata(target_counts: np.ndarray, gap_days: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each target's stratum of :data:`CROSS_COUNT_EDGES` x :data:`CROSS_GAP_EDGES_DAYS` (``"1-9 · 30+ d"``):
    whether a rare target is also a stale one, where the two one-way tables cannot tell."""
    count_labels, count_names = _edge_labels(np.asarray(target_counts), CROSS_COUNT_EDGES)
    gap_labels, gap_names = _gap_labels(np.asarray(gap_days, dtype=np.float64), CROSS_GAP_EDGES_DAYS)
    names = [f"{c} · {g}" for c in count_names for g in gap_names]
    return count_labels * len(gap_names) + gap_labels, names


def target_strata(ranks: np.ndarray, targets: np.ndarray, counts: np.ndarray, times: np.ndarray | None = None,
                  last_train_time: np.ndarray | None = None, ks=(10,)) -> dict:
    """Recall/NDCG@K per stratum of the target item's training count (:data:`COUNT_EDGES`) and, given
    each target's time and every item's latest training time, per stratum of the days between the two
    (:data:`GAP_EDGES_DAYS`; an item with no training time, NaN, is ``"never"``) and of both at once
    (:func:`cross_strata`). Each stratum also reports its share of the users, so two splits' mixes can be
    compared (:func:`at_mix`)."""
    ranks, targets = np.asarray(ranks), np.asarray(targets)
    has_times = times is not None and last_train_time is not None
    gap = (np.asarray(times) - np.asarray(last_train_time)[targets]) / DAY if has_times else None
    rows = {"ranks": ranks, "train_count": np.asarray(counts)[targets], "gap_days": gap, "has_times": has_times}
    return _strata_of_rows(rows, ks)


def at_mix(rows: list[dict], mix: list[dict], metric: str = "ndcg@10") -> float:
    """``metric`` of the strata ``rows`` reweighted to the users' shares in ``mix`` (the same strata of
    another split): what the split would score with the other's mix of targets. Strata empty in
    ``rows`` but not in ``mix`` make it undefined (NaN)."""
    total = 0.0
    for row, other in zip(rows, mix):
        if other["share"] > 0:
            if metric not in row:
                return float("nan")
            total += other["share"] * row[metric]
    return total


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


def evaluation_rows(model, eval_data, train_dataset, device) -> dict:
    """One entry per evaluation row (a user, in the loader's order): the target's rank under ``model``
    (:func:`target_ranks`), the target, its training count and the days from its latest training
    interaction to the target's own (NaN: never a training target, or no time field). Two models'
    rows of one split pair up row by row (:mod:`recbole_flexcode.analysis.paired`)."""
    counts = training_item_counts(train_dataset)
    ranks, targets = target_ranks(model, eval_data, device)
    times, last = target_times(eval_data), last_training_time(train_dataset)
    gap = (times - last[targets]) / DAY if times is not None and last is not None else np.full(len(targets), np.nan)
    return {"ranks": ranks, "targets": targets, "train_count": counts[targets], "gap_days": gap,
            "has_times": times is not None and last is not None}


def popularity_group_metrics(model, eval_data, train_dataset, device, head_fraction=0.2, ks=(10,)) -> dict:
    """Recall/NDCG@K over the users whose target is a head item vs a tail item, and in ``strata`` by
    :func:`target_strata`."""
    return group_metrics(evaluation_rows(model, eval_data, train_dataset, device), train_dataset, head_fraction, ks)


def group_metrics(rows: dict, train_dataset, head_fraction=0.2, ks=(10,)) -> dict:
    """:func:`popularity_group_metrics` of rows already ranked (:func:`evaluation_rows`)."""
    counts = training_item_counts(train_dataset)
    head = head_item_mask(counts, head_fraction)
    ranks, targets = rows["ranks"], rows["targets"]
    is_head = head[targets]
    result = {"head_fraction": head_fraction, "n_head_items": int(head.sum())}
    for name, mask in (("head", is_head), ("tail", ~is_head)):
        group = metrics_from_ranks(ranks[mask], ks)
        group["users"] = int(mask.sum())
        result[name] = group
    result["all"] = metrics_from_ranks(ranks, ks)
    result["all"]["users"] = int(len(ranks))
    result["strata"] = _strata_of_rows(rows, ks)
    return result


def _strata_of_rows(rows: dict, ks) -> dict:
    """:func:`target_strata` from per-row training counts and gaps."""
    ranks, c, gap = rows["ranks"], rows["train_count"], rows["gap_days"]
    out = {"by_train_count": _strata_rows(ranks, *_edge_labels(c, COUNT_EDGES), ks)}
    if rows["has_times"]:
        out["by_days_since_last_train"] = _strata_rows(ranks, *_gap_labels(gap, GAP_EDGES_DAYS), ks)
        out["by_count_and_days"] = _strata_rows(ranks, *cross_strata(c, gap), ks)
    return out
