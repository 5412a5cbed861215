"""FlexCode's reports and diagnostics, built on the model's public API (not part of the model).

* :func:`report` — tokenizer quality, collisions and the learned allocation, for the run's JSON;
* :func:`split_losses` — per popularity stratum, the target's ``L_ARG`` under every budget split
  next to the router's choice (§4.3);
* :func:`token_fit` / :func:`trie_path_scores` — where along its path a target is lost (§4.4);
* :func:`export_artifacts` — per-item popularity and split (CSV) and a plot of one against the other;
* :func:`rescore_sweep` — the item head's re-scoring weight, proposed candidates and prior chosen on
  validation after training.

The model API used: ``variant``, ``budget``, ``item_counts``, ``tokenizer`` (paths, trie, stats),
``generator``, ``forward``, ``split_probs``, ``item_splits``, ``inference_paths``. Popularity strata
are :func:`recbole_flexcode.data.popularity.popularity_strata` with ``lb_strata`` bins, the head
items :func:`recbole_flexcode.evaluation.head_item_mask` — the definitions evaluation uses.
"""

from __future__ import annotations

import csv
import itertools
import logging
import os

import numpy as np
import torch

from recbole_flexcode.data.popularity import popularity_strata
from recbole_flexcode.embeddings.cache import cache_key
from recbole_flexcode.evaluation import capped_interactions, head_item_mask
from recbole_flexcode.io import atomic_write
from recbole_flexcode.tokenizer.ids import PrefixTrie

logger = logging.getLogger(__name__)


def _strata(model) -> tuple[int, torch.Tensor]:
    """``lb_strata`` and the stratum of every real item (index ``item_id - 1``), on the model's device."""
    n_strata = int(model._config["lb_strata"])
    strata = popularity_strata(model.item_counts, n_strata)[1:]
    return n_strata, torch.as_tensor(strata, dtype=torch.long, device=model.tokenizer.paths.device)


@torch.no_grad()
def report(model) -> dict:
    """Tokenizer quality, collisions and the learned allocation (for the run's JSON)."""
    splits = model.item_splits()[1:].cpu().numpy()
    head = head_item_mask(model.item_counts)[1:]
    tok = model.tokenizer
    return {
        "variant": model.variant.name,
        "token_budget": model.budget,
        "training_mode": model.training_mode,
        "decode_mode": model.decode_mode,
        "tokenizer_type": tok.spec["kind"],
        # inputs are standardised to unit mean squared norm: each source's recon_mse is the fraction of
        # the embedding's variance the codes leave unreconstructed
        "tokenizer": tok.stats(),
        "tokenizer_fit": tok.spec.get("fit_result"),
        "collisions": tok.spec["collisions"],
        "disambiguation_tokens": tok.layout.n_disamb,
        # content fingerprints of the stage outputs: the inputs the tokenizer was fitted on (text, CF
        # embeddings; None for artefacts saved before they were recorded), its cache key, its token paths
        "stage_fingerprints": {"inputs": tok.spec["built_from"].get("fingerprints"), "tokenizer": tok.spec["cache_key"],
                               "paths": cache_key(paths=tok.paths.cpu().numpy())},
        "split_histogram": np.bincount(splits, minlength=model.budget + 1).tolist(),
        "mean_cf_tokens_head": float(splits[head].mean()) if head.any() else None,
        "mean_cf_tokens_tail": float(splits[~head].mean()) if (~head).any() else None,
    }


@torch.no_grad()
def split_losses(model, data) -> dict | None:
    """Which split does the generator predict best, per popularity stratum of the target?

    For every evaluation row the target's ``L_ARG`` under each of the ``L + 1`` splits (the
    quantity the router's expected loss trades off, §4.3), averaged per ``lb_strata`` stratum.
    Run on validation data; only for the routed variants (fixed splits train one split only).
    """
    if not model.variant.routed:
        return None
    n_strata, strata = _strata(model)
    was_training = model.training
    model.eval()
    n_splits = model.budget + 1
    sums = torch.zeros(n_strata, n_splits, dtype=torch.float64)
    counts = torch.zeros(n_strata, dtype=torch.long)
    splits = torch.arange(n_splits, device=model.tokenizer.paths.device)
    for batch in data:
        interaction = batch[0] if isinstance(batch, tuple) else batch
        interaction = interaction.to(model.tokenizer.paths.device)
        target = interaction[model.ITEM_ID]
        memory, pad = model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
        nll = model.generator.sequence_nll(memory, pad, model.tokenizer.paths[splits][:, target].permute(1, 0, 2))
        stratum = strata[target - 1].cpu()
        sums.index_add_(0, stratum, nll.double().cpu())
        counts += torch.bincount(stratum, minlength=n_strata)
    model.train(was_training)
    item_strata = strata.cpu().numpy()
    item_counts = model.item_counts[1:]
    chosen = model.item_splits()[1:].cpu().numpy()
    rows = []
    for k in range(n_strata):
        members = item_counts[item_strata == k]
        mean = (sums[k] / counts[k]).tolist() if counts[k] > 0 else [None] * n_splits
        rows.append({
            "stratum": k,
            "train_count_range": [int(members.min()), int(members.max())] if len(members) else None,
            "n_targets": int(counts[k]),
            "mean_nll_by_split": mean,
            "best_split": int(np.nanargmin(np.array(mean, dtype=float))) if counts[k] > 0 else None,
            "router_split_histogram": np.bincount(chosen[item_strata == k], minlength=n_splits).tolist(),
        })
    return {"what": "mean target L_ARG per split (index = collaborative tokens), validation rows", "strata": rows}

def trie_path_scores(log_probs: torch.Tensor, paths: torch.Tensor, trie: PrefixTrie):
    """Per-position scores of item paths under trie-constrained decoding.

    ``log_probs [B, T, V]`` are the generator's teacher-forced log-probabilities along
    ``paths [B, T]``. Returns ``(nll, above)``, both ``[B, T]``: the gold token's ``−log p``
    renormalised over the tokens the trie allows after the gold prefix (summed over the
    positions, the item's ``−log p`` under constrained decoding; these sum to one over the
    catalogue), and how many allowed tokens score strictly above the gold one.
    """
    nll, above = [], []
    for k, allowed in enumerate(trie.sibling_tokens(paths)):
        lp = log_probs[:, k].gather(1, allowed.clamp(min=0)).masked_fill(allowed < 0, float("-inf"))
        lp = torch.log_softmax(lp, dim=-1)
        gold = lp.gather(1, (allowed == paths[:, k : k + 1]).long().argmax(1, keepdim=True))  # [B, 1]
        nll.append(-gold[:, 0])
        above.append((lp > gold).sum(1))
    return torch.stack(nll, 1), torch.stack(above, 1)

@torch.no_grad()
def token_fit(model, data, max_rows: int | None = None, topk: int = 10) -> dict:
    """Where along its path is a target lost? Teacher-forced per-position fit (§4.4).

    For every row of ``data`` (up to ``max_rows``), the target's inference path (the router's
    split) is scored token by token given the history and the target's own earlier tokens.
    Per position: the mean ``−log p`` over the whole vocabulary (what ``L_ARG`` trains; the
    positions add up to it), the mean ``−log p`` renormalised over the tokens the trie allows
    there (what constrained decoding chooses among; the positions add up to ``item_nll``,
    the target's ``−log p`` as an item), and how often the gold token is the top-1 and within
    the top-``topk`` of those allowed tokens. Rows are grouped by popularity stratum
    (``lb_strata``) and the target's split, so each position has one source (CF for positions
    ``< split``, then semantic, then the disambiguation token). Run on training rows as well
    as validation rows, it separates a generator that cannot fit the tail (high loss on both)
    from one that fits it but does not generalise.
    """
    n_strata, strata = _strata(model)
    was_training = model.training
    model.eval()
    splits = model.item_splits()
    trie = model.tokenizer.trie(splits)
    T = model.tokenizer.paths.shape[-1]
    acc = {}  # (stratum, split) -> [rows, sums [5, T]]
    rows = 0
    for interaction in capped_interactions(data, max_rows):
        rows += len(interaction)
        interaction = interaction.to(model.tokenizer.paths.device)
        target = interaction[model.ITEM_ID]
        memory, pad = model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
        split = splits[target]
        path = model.tokenizer.paths[split, target]  # [B, T]
        log_probs = model.generator.decode_log_probs(memory, pad, path[:, None, :-1])[:, 0]  # [B, T, V]
        free = -log_probs.gather(-1, path.unsqueeze(-1)).squeeze(-1)  # [B, T]
        trie_nll, above = trie_path_scores(log_probs, path, trie)
        stats = torch.stack([free, trie_nll, (above == 0).to(free.dtype), (above < topk).to(free.dtype)], 0)
        stats = stats.double().cpu()  # [4, B, T]
        stratum, split = strata[target - 1].cpu(), split.cpu()
        for key in torch.unique(torch.stack([stratum, split], 1), dim=0).tolist():
            sel = (stratum == key[0]) & (split == key[1])
            entry = acc.setdefault(tuple(key), [0, torch.zeros(4, T, dtype=torch.float64)])
            entry[0] += int(sel.sum())
            entry[1] += stats[:, sel].sum(1)
    model.train(was_training)
    item_strata = strata.cpu().numpy()
    item_counts = model.item_counts[1:]
    groups = []
    for (k, s), (n, sums) in sorted(acc.items()):
        members = item_counts[item_strata == k]
        mean = (sums / n).tolist()
        groups.append({
            "stratum": k, "split": s, "n_rows": n,
            "sources": ["cf"] * s + ["sem"] * (model.budget - s) + ["disamb"],
            "train_count_range": [int(members.min()), int(members.max())] if len(members) else None,
            "mean_nll_by_position": mean[0], "mean_trie_nll_by_position": mean[1],
            "item_nll": float(sum(mean[1])),
            "top1_by_position": mean[2], f"top{topk}_by_position": mean[3],
        })
    by_stratum = []
    for k in range(n_strata):
        mine = [g for g in groups if g["stratum"] == k]
        n = sum(g["n_rows"] for g in mine)
        if n:
            by_stratum.append({"stratum": k, "train_count_range": mine[0]["train_count_range"], "n_rows": n,
                               "item_nll": sum(g["item_nll"] * g["n_rows"] for g in mine) / n})
    return {"what": "teacher-forced fit of the target's inference path, per position "
                    "(top-k among the tokens the trie allows)", "rows": rows, "topk": topk,
            "n_items": int(model.n_items - 1), "groups": groups, "item_nll_by_stratum": by_stratum}

@torch.no_grad()
def export_artifacts(model, directory: str) -> list[str]:
    """Per-item popularity and split (CSV) and a plot of the split against popularity."""
    os.makedirs(directory, exist_ok=True)
    probs = model.split_probs()[1:].cpu().numpy()
    splits = probs.argmax(1)
    alpha = (probs * np.arange(model.budget + 1)).sum(1) / model.budget
    counts = model.item_counts[1:]
    csv_path = os.path.join(directory, "item_splits.csv")

    def write_csv(path):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "train_interactions", "cf_tokens", "semantic_tokens", "alpha"])
            for i, (c, s, a) in enumerate(zip(counts, splits, alpha), start=1):
                w.writerow([i, int(c), int(s), int(model.budget - s), f"{a:.4f}"])

    atomic_write(csv_path, write_csv)
    written = [csv_path]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(np.log1p(counts), alpha, s=4, alpha=0.4, label="expected share α")
        ax.scatter(np.log1p(counts), splits / model.budget, s=4, alpha=0.4, label="inference split n_cf / L")
        ax.set_xlabel("log(1 + training interactions)")
        ax.set_ylabel("collaborative share")
        ax.set_ylim(-0.05, 1.05)  # a saturated router would otherwise get an offset axis
        ax.set_title(f"FlexCode ({model.variant.name}, L={model.budget}): budget split vs popularity")
        ax.legend(loc="best")
        png = os.path.join(directory, "split_vs_popularity.png")
        fig.tight_layout()
        atomic_write(png, lambda p: fig.savefig(p, dpi=120, format="png"))
        plt.close(fig)
        written.append(png)
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        logger.warning("matplotlib missing: no split plot")
    return written


#: the item head's inference settings a sweep varies: (attribute of ItemHead, name in the sweep's JSON, type)
SWEEP_AXES = (("rescore_weight", "weight", float), ("n_candidates", "candidates", int),
              ("prior_weight", "prior", float), ("shrink", "shrink", float))


@torch.no_grad()
def rescore_sweep(model, evaluate, valid_data, test_data, weights, valid_metric: str = "ndcg@10",
                  candidates=None, by_group=None, priors=None, shrinks=None, tail_floor=None) -> dict:
    """Choose the item head's inference settings on validation, after training (ours, issue #13).

    ``item_head_rescore`` (its weight in each item's score), ``item_head_candidates`` (how many
    of its own top items join the beam's, :meth:`~recbole_flexcode.model.item_head.ItemHead.rescore_beam`),
    ``item_head_prior`` (the popularity prior divided out) and ``item_head_shrink`` (how far a rare
    item's path score is shrunk towards the head's, :func:`~recbole_flexcode.model.item_head.credibility`)
    act at inference only, so one trained model is evaluated under every combination of ``weights`` ×
    ``candidates`` × ``priors`` × ``shrinks`` (the last three default to the model's own) on
    ``valid_data``; the combination with the best ``valid_metric`` (first on ties) is tested, and so
    is the one the model was trained with, for comparison. ``evaluate(data) -> {metric: value}`` is
    the trainer's full evaluation; ``by_group(data)``, when given, adds every setting's head/tail
    metrics on validation and each tested setting's on test
    (:func:`recbole_flexcode.evaluation.popularity_group_metrics`). The model's settings are restored.

    ``tail_floor`` (needs ``by_group``) names a second operating point, still chosen on validation
    only: the best ``valid_metric`` among the settings whose validation tail N@10 is at least the
    floor (for example a baseline's validation tail N@10), tested too (``test_at_floor``; ``None``
    where no setting reaches the floor). The shrinkage and the prior trade head for tail, so this says
    what a given tail costs overall.
    """
    if tail_floor is not None and by_group is None:
        raise ValueError("tail_floor needs by_group (the head/tail metrics of every setting)")
    head = model.item_head
    if not hasattr(head, "rescore_weight"):
        raise ValueError("the model has no item head (item_head_weight: 0)")

    def apply(setting):
        for (attr, _, _), value in zip(SWEEP_AXES, setting):
            setattr(head, attr, value)

    trained = tuple(kind(getattr(head, attr)) for attr, _, kind in SWEEP_AXES)
    values = [[float(w) for w in weights]] + [
        [trained[i]] if given is None else [SWEEP_AXES[i][2](v) for v in given]
        for i, given in ((1, candidates), (2, priors), (3, shrinks))]
    settings = list(itertools.product(*values))
    names = ["rescore_weight"] + [name for _, name, _ in SWEEP_AXES[1:]]  # a row's keys, in SWEEP_AXES order
    rows = []
    try:
        for setting in settings:
            apply(setting)
            rows.append({**dict(zip(names, setting)),
                         "valid": {m: float(v) for m, v in evaluate(valid_data).items()}})
            if by_group is not None:  # what each setting trades between head and tail, still on validation
                rows[-1]["valid_groups"] = by_group(valid_data)
            logger.info(f"sweep {len(rows)}/{len(settings)}: " + ", ".join(f"{n} {v:g}" for n, v in zip(names, setting))
                        + f": valid {valid_metric} {rows[-1]['valid'][valid_metric]:.4f}")
        best = max(rows, key=lambda r: r["valid"][valid_metric])  # max keeps the first of equal values
        chosen = tuple(best[n] for n in names)
        floor = None
        if tail_floor is not None:
            eligible = [r for r in rows if r["valid_groups"]["tail"]["ndcg@10"] >= tail_floor]
            if eligible:
                floor = tuple(max(eligible, key=lambda r: r["valid"][valid_metric])[n] for n in names)
        test = {}
        for setting in dict.fromkeys(s for s in (chosen, trained, floor) if s is not None):
            apply(setting)
            test[setting] = {m: float(v) for m, v in evaluate(test_data).items()}
            if by_group is not None:
                test[setting]["groups"] = by_group(test_data)
    finally:
        apply(trained)
    out = {"valid_metric": valid_metric}
    for which, setting in (("trained", trained), ("chosen", chosen)):
        out.update({f"{which}_{name}": value for (_, name, _), value in zip(SWEEP_AXES, setting)})
    if tail_floor is not None:
        out["tail_floor"] = float(tail_floor)
        out.update({f"floor_{name}": None if floor is None else floor[i] for i, (_, name, _) in enumerate(SWEEP_AXES)})
        out["test_at_floor"] = None if floor is None else test[floor]
    return {**out, "weights": rows, "test_at_chosen": test[chosen], "test_at_trained": test[trained]}
