"""Split-loss diagnostic of a saved FlexCode checkpoint (FlexCode §4.3).

    python -m recbole_flexcode.diagnose saved/FlexCode-....pth [--trust] [--out=diag.json]

Reloads the checkpoint with its own config and data split, then reports, per popularity stratum
of the validation targets, the mean ``L_ARG`` of the target under every budget split next to the
router's choice (:func:`recbole_flexcode.analysis.flexcode.split_losses`). A run of ``run_flexcode.py`` stores the same block
in its result JSON; this command covers checkpoints made before that, or elsewhere.

Loading a checkpoint unpickles it: ``--trust`` says the file is yours (an earlier run of this
plugin). Without it only a plain-weights file loads, as with ``torch.load``'s safe default.
``--decode_check=N`` instead compares trie-constrained beam search (``--beam_sizes``) with exact
scoring of every item on the first N validation users, per popularity group.
``--rescore_sweep=0,0.5,1,2`` instead evaluates a model with an item head under each re-scoring
weight on validation and tests the best one (and the trained one): the weight acts at inference only;
``--candidates_sweep=0,20`` does the same for how many of the head's own top items join the beam
(with ``--rescore_sweep``, every pair), and ``--prior_sweep=0,0.5,1`` for ``item_head_prior`` (the
popularity prior divided out of the head's term; every combination with the other two), and
``--shrink_sweep=0,3,10`` for ``item_head_shrink`` (how far a rare item's path score is shrunk
towards the head's log-probability).
``--token_fit`` instead scores each target's path token by token (teacher-forced NLL, top-1 and
top-10 hit rate per position, per popularity stratum and split), on validation rows and on the
first ``--max_rows`` training rows: a tail that is fitted in training but lost in validation is a
generalisation gap, one lost in both is a fitting (capacity, code) problem. On a full-sort
baseline (SASRec, GRU4Rec: cross-entropy models) ``--token_fit`` reports the target's ``−log p``
per stratum instead, to compare with FlexCode's item NLL; for every model it adds Recall/NDCG@10 per
stratum on all validation rows and ``--max_rows`` training rows (RecBole reshuffles the training
loader on every pass, so these are a fresh random draw of the same size).
``--by_target`` instead, for any full-sort model (FlexCode at its trained settings, SASRec, ...),
reports Recall/NDCG@10 on validation and test by what the training split knows of the target item:
its training count, the days since its last training interaction, and both crossed
(:func:`recbole_flexcode.evaluation.target_strata`), each stratum's share of the users, and test's
N@10 at validation's mix of strata, which separates a valid→test drop due to the test targets being
other items from one within the strata; with ``--rows_out=PATH.npz`` it also keeps every row's rank, to
compare two models on the same rows (:mod:`recbole_flexcode.analysis.paired`). The item-head sweeps print
the same table at the setting validation chose.
Exit status: 0 success, 2 bad input (missing file, not a FlexCode checkpoint, refused load).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.data.popularity import popularity_strata, training_item_counts
from recbole_flexcode.analysis.flexcode import split_losses, token_fit
from recbole_flexcode.evaluation import capped_interactions, metrics_from_ranks
from recbole_flexcode.io import write_json
from recbole_flexcode.reporting import markdown_table


def format_diagnostics(diag: dict) -> str:
    rows = diag["strata"]
    n_splits = len(rows[0]["mean_nll_by_split"]) if rows else 0
    head = ["stratum", "train count", "targets"] + [f"NLL s={s}" for s in range(n_splits)] + ["best", "router split histogram"]
    body = []
    for r in rows:
        rng = r["train_count_range"]
        nll = ["–" if v is None else f"{v:.3f}" for v in r["mean_nll_by_split"]]
        body.append([str(r["stratum"]), f"{rng[0]}–{rng[1]}" if rng else "–", str(r["n_targets"]), *nll,
                     "–" if r["best_split"] is None else str(r["best_split"]), str(r["router_split_histogram"])])
    return markdown_table(head, body)


class _FirstUsers:
    """The first ``n_users`` rows of a RecBole full-sort loader (the last batch cut to size)."""

    def __init__(self, data, n_users: int):
        self.data, self.n_users, self._dataset = data, int(n_users), data._dataset

    def __iter__(self):
        left = self.n_users
        for interaction, history_index, positive_u, positive_i in self.data:
            if left <= 0:
                break
            if len(interaction) > left:
                interaction = interaction[torch.arange(left)]
                if history_index is not None:
                    keep = history_index[0] < left
                    history_index = tuple(h[keep] for h in history_index)
                keep = positive_u < left
                positive_u, positive_i = positive_u[keep], positive_i[keep]
            left -= len(interaction)
            yield interaction, history_index, positive_u, positive_i


def decoding_check(model, data, train_dataset, n_users: int, beam_sizes=(20, 100), ks=(10,)) -> dict:
    """Does trie-constrained beam search lose targets that the model itself ranks high (§4.4)?

    For the first ``n_users`` evaluation rows, ranks every target under exact scoring (the
    sequence log-probability of every item's path, ``decode_mode=exact``) and under beam search
    of each width, and reports Recall/NDCG@K per popularity group (head = 20% most popular
    training items, as in the result tables) plus, per width, the share of targets in the exact
    top-K that the beam misses. Exact scoring ranks the target as the model itself scores it, with
    no search error; a beam that prunes a higher-scored path can even rank a found target higher.
    """
    import time

    from recbole_flexcode.evaluation import head_item_mask, target_ranks

    head = head_item_mask(training_item_counts(train_dataset))
    device = model.tokenizer.paths.device
    saved = (model.decode_mode, model.beam_size)
    runs = [("exact", None)] + [("beam", int(w)) for w in beam_sizes]
    ranks_by = {}
    rows = []
    targets = None
    try:
        for mode, width in runs:
            model.decode_mode = mode
            if width is not None:
                model.beam_size = width
            t = time.time()
            ranks, targets = target_ranks(model, _FirstUsers(data, n_users), device)  # same users every run
            name = "exact" if mode == "exact" else f"beam {width}"
            ranks_by[name] = ranks
            is_head = head[targets]
            row = {"decode": name, "seconds": round(time.time() - t, 1)}
            for group, mask in (("all", np.ones_like(is_head)), ("head", is_head), ("tail", ~is_head)):
                row[group] = {**metrics_from_ranks(ranks[mask], ks), "users": int(mask.sum())}
            rows.append(row)
    finally:
        model.decode_mode, model.beam_size = saved
    k = max(ks)
    exact_hit = ranks_by["exact"] <= k
    groups = {"all": np.ones_like(exact_hit), "head": head[targets], "tail": ~head[targets]}
    for row in rows[1:]:
        missed = exact_hit & (ranks_by[row["decode"]] > k)
        row[f"exact_top{k}_missed"] = {
            group: float(missed[mask].sum() / max(exact_hit[mask].sum(), 1)) for group, mask in groups.items()
        }
    return {"n_users": int(len(ranks_by["exact"])), "k": k, "rows": rows}


def format_decoding_check(check: dict) -> str:
    k = check["k"]
    head = ["decode", f"R@{k}", f"N@{k}", f"head N@{k}", f"tail N@{k}", f"tail R@{k}", f"exact top-{k} missed (head / tail)", "s"]
    body = []
    for r in check["rows"]:
        missed = r.get(f"exact_top{k}_missed")
        body.append([
            r["decode"], f"{r['all'][f'recall@{k}']:.4f}", f"{r['all'][f'ndcg@{k}']:.4f}",
            f"{r['head'][f'ndcg@{k}']:.4f}", f"{r['tail'][f'ndcg@{k}']:.4f}", f"{r['tail'][f'recall@{k}']:.4f}",
            "–" if missed is None else f"{missed['head']:.1%} / {missed['tail']:.1%}", str(r["seconds"]),
        ])
    return markdown_table(head, body)


@torch.no_grad()
def stratum_fit(model, data, train_dataset, n_strata: int = 5, max_rows: int | None = None,
                nll: bool = True, k: int = 10) -> dict:
    """Recall/NDCG@k and mean ``−log p(target)`` per popularity stratum, on any rows (training too).

    Ranks come from ``full_sort_predict`` over the real items (no history masking; ties rank
    optimistically as in :func:`recbole_flexcode.evaluation.target_ranks`; a target scored
    ``-inf``, outside FlexCode's beam, is not retrieved). With ``nll``, ``p`` is the softmax of
    those scores — the likelihood RecBole's cross-entropy loss trains (SASRec, GRU4Rec) —
    comparable with FlexCode's ``item_nll`` from :meth:`FlexCode.token_diagnose` (both over the
    whole catalogue); it means nothing for pairwise-loss models or for beam scores, so FlexCode
    calls this with ``nll=False``. Strata: ``lb_strata`` quantile bins (:func:`popularity_strata`
    over training counts).
    """
    counts = training_item_counts(train_dataset)
    strata = popularity_strata(counts, n_strata)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows, targets, ranks, nlls = 0, [], [], []
    for interaction in capped_interactions(data, max_rows):
        rows += len(interaction)
        interaction = interaction.to(device)
        target = interaction[model.ITEM_ID]
        scores = model.full_sort_predict(interaction).view(len(target), -1)[:, 1:].double()  # drop the padding id
        gold = scores.gather(1, (target - 1).unsqueeze(1))
        rank = (scores > gold).sum(1) + 1
        rank = torch.where(torch.isinf(gold[:, 0]), torch.full_like(rank, scores.shape[1] + 1), rank)
        ranks.append(rank.cpu().numpy())
        targets.append(target.cpu().numpy())
        if nll:
            nlls.append((-torch.log_softmax(scores, -1).gather(1, (target - 1).unsqueeze(1))[:, 0]).cpu().numpy())
    model.train(was_training)
    targets, ranks = np.concatenate(targets), np.concatenate(ranks)
    nlls = np.concatenate(nlls) if nll else None
    out = []
    for s in range(n_strata):
        sel = strata[targets] == s
        if not sel.any():
            continue
        members = counts[1:][strata[1:] == s]
        row = {"stratum": s, "train_count_range": [int(members.min()), int(members.max())], "n_rows": int(sel.sum()),
               **metrics_from_ranks(ranks[sel], (k,))}
        if nll:
            row["item_nll"] = float(nlls[sel].mean())
        out.append(row)
    return {"what": f"Recall/NDCG@{k}" + (" and mean -log softmax(full_sort_predict)[target]" if nll else "")
                    + " per popularity stratum", "rows": rows, "k": k, "n_items": int(len(counts) - 1),
            "uniform_nll": float(np.log(len(counts) - 1)), "by_stratum": out}


def format_stratum_fit(fits: dict, token_fits: dict | None = None) -> str:
    """Per (data, stratum): rows, Recall/NDCG@k and the item NLL (FlexCode's from ``token_fits``)."""
    k = next(iter(fits.values()))["k"]
    head = ["data", "stratum", "train count", "rows", f"R@{k}", f"N@{k}", "item NLL"]
    body = []
    for name, fit in fits.items():
        nll = {r["stratum"]: r["item_nll"] for r in (token_fits or {}).get(name, {}).get("item_nll_by_stratum", [])}
        for r in fit["by_stratum"]:
            rng = r["train_count_range"]
            value = r.get("item_nll", nll.get(r["stratum"]))
            body.append([name, r["stratum"], f"{rng[0]}–{rng[1]}", r["n_rows"], f"{r[f'recall@{k}']:.4f}",
                         f"{r[f'ndcg@{k}']:.4f}", "–" if value is None else f"{value:.2f}"])
    return markdown_table(head, body)


def format_target_strata(valid_groups: dict, test_groups: dict, metric: str = "ndcg@10") -> str:
    """Validation and test side by side per target stratum (:func:`recbole_flexcode.evaluation.target_strata`),
    each table closed by test's ``metric`` at validation's mix of strata."""
    from recbole_flexcode.evaluation import at_mix

    def cell(row):
        return f"{row[metric]:.4f}" if metric in row else "–"

    out = []
    for key in ("by_train_count", "by_days_since_last_train", "by_count_and_days"):
        valid, test = valid_groups["strata"].get(key), test_groups["strata"].get(key)
        if valid is None or test is None:
            continue
        body = [[v["stratum"], f"{v['share']:.3f}", f"{t['share']:.3f}", cell(v), cell(t)] for v, t in zip(valid, test)]
        out.append(markdown_table([key.replace("_", " "), "valid share", "test share", f"valid {metric}", f"test {metric}"], body))
        out.append(f"test {metric} {test_groups['all'][metric]:.4f}; at validation's mix of these strata "
                   f"{at_mix(test, valid, metric):.4f} (validation {valid_groups['all'][metric]:.4f})")
    return "\n".join(out)


def format_token_fit(fits: dict) -> str:
    """One line per (data, stratum, split): the item's ``−log p`` and, per position, ``NLL / top-1 / top-k``.

    Position NLLs and ranks are among the tokens the trie allows there (constrained decoding).
    """
    any_fit = next(iter(fits.values()))
    k = any_fit["topk"]
    n_pos = max((len(g["sources"]) for f in fits.values() for g in f["groups"]), default=0)
    head = ["data", "stratum", "train count", "split", "rows", "item NLL"] + [
        f"pos {p}: NLL / top-1 / top-{k}" for p in range(n_pos)]
    body = []
    for name, fit in fits.items():
        for g in fit["groups"]:
            rng = g["train_count_range"]
            cells = [f"{src} {nll:.2f} / {t1:.1%} / {tk:.1%}" for src, nll, t1, tk in zip(
                g["sources"], g["mean_trie_nll_by_position"], g["top1_by_position"], g[f"top{k}_by_position"])]
            body.append([name, str(g["stratum"]), f"{rng[0]}–{rng[1]}" if rng else "–", str(g["split"]), str(g["n_rows"]),
                         f"{g['item_nll']:.2f}", *cells])
    return markdown_table(head, body)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.diagnose", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a FlexCode checkpoint saved by RecBole's trainer")
    p.add_argument("--trust", action="store_true", help="the checkpoint is yours: allow full unpickling")
    p.add_argument("--out", default=None, help="also write the diagnostics as JSON here")
    p.add_argument("--decode_check", type=int, default=0, metavar="N",
                   help="instead: rank the first N validation users' targets by exact scoring and by beam search "
                   "(--beam_sizes) and report what the beam loses, per popularity group")
    p.add_argument("--beam_sizes", default="20,100", help="beam widths for --decode_check (default 20,100)")
    p.add_argument("--token_fit", action="store_true",
                   help="instead: teacher-forced per-position fit of the targets' paths on validation and training rows")
    p.add_argument("--rescore_sweep", default=None, metavar="W1,W2,...",
                   help="instead: choose the item head's item_head_rescore among these on validation, test it")
    p.add_argument("--candidates_sweep", default=None, metavar="K1,K2,...",
                   help="with --rescore_sweep (or alone, at the trained weight): also choose item_head_candidates "
                   "among these, every pair evaluated on validation")
    p.add_argument("--prior_sweep", default=None, metavar="B1,B2,...",
                   help="with the sweeps above (or alone): also choose item_head_prior (the popularity prior divided "
                   "out of the head's term) among these, every combination evaluated on validation")
    p.add_argument("--shrink_sweep", default=None, metavar="T1,T2,...",
                   help="with the sweeps above (or alone): also choose item_head_shrink (item i keeps c_i / (c_i + τ) of "
                   "its path score, the rest from the head's) among these, every combination evaluated on validation")
    p.add_argument("--tail_floor", type=float, default=None, metavar="N10",
                   help="with the sweeps above: also test the best setting on validation among those whose validation "
                   "tail N@10 is at least this (e.g. a baseline's), the head/tail trade as an operating point")
    p.add_argument("--by_target", action="store_true",
                   help="instead: Recall/NDCG@10 on validation and test by the target item's training count, the "
                   "days since its last training interaction, and both crossed (any full-sort model)")
    p.add_argument("--rows_out", default=None, metavar="PATH.npz",
                   help="with --by_target: also write every evaluation row's rank, target, training count and days "
                   "since the target's latest training interaction, to pair two models row by row "
                   "(python -m recbole_flexcode.analysis.paired)")
    p.add_argument("--item_head_shrink", type=float, default=None, metavar="TAU",
                   help="with --by_target on a FlexCode checkpoint with an item head: evaluate at this path-score "
                   "shrinkage τ instead of the trained one (an inference setting; the sweeps choose it on validation)")
    p.add_argument("--item_head_candidates", type=int, default=None, metavar="K",
                   help="with --by_target on a FlexCode checkpoint with an item head: the head proposes its top K items "
                   "to the beam's candidates instead of the trained number (an inference setting, like τ)")
    p.add_argument("--max_rows", type=int, default=50000,
                   help="training rows scored by --token_fit (default 50000; validation is always whole)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads, as in run_flexcode.py (default: OMP_NUM_THREADS when set, else 1)")
    args = p.parse_args(argv)
    from recbole_flexcode.config import ConfigError
    from recbole_flexcode.quick_start import keep_freed_memory, set_threads

    try:  # the process settings of run_flexcode.py, so an evaluation here costs what it cost in training
        set_threads(args.threads)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keep_freed_memory()
    sweeps = (args.rescore_sweep, args.candidates_sweep, args.prior_sweep, args.shrink_sweep)
    if args.tail_floor is not None and (args.tail_floor < 0 or all(arg is None for arg in sweeps)):
        print(f"error: --tail_floor must be >= 0 and go with a sweep (--rescore_sweep, --candidates_sweep, "
              f"--prior_sweep, --shrink_sweep), got {args.tail_floor:g}", file=sys.stderr)
        return 2
    if args.rows_out is not None and (not args.by_target or not args.rows_out.endswith(".npz")):
        print(f"error: --rows_out goes with --by_target and names an .npz file, got '{args.rows_out}'", file=sys.stderr)
        return 2
    if args.item_head_shrink is not None and (not args.by_target or args.item_head_shrink < 0):
        print(f"error: --item_head_shrink goes with --by_target and must be >= 0, got {args.item_head_shrink:g}",
              file=sys.stderr)
        return 2
    if args.item_head_candidates is not None and (not args.by_target or args.item_head_candidates < 0):
        print(f"error: --item_head_candidates goes with --by_target and must be >= 0, got {args.item_head_candidates}",
              file=sys.stderr)
        return 2
    if not os.path.isfile(args.checkpoint):
        print(f"error: no such checkpoint: {args.checkpoint}", file=sys.stderr)
        return 2
    from recbole_flexcode.compat import load_data_and_model, trust_checkpoint

    if args.trust:
        trust_checkpoint(args.checkpoint)
    try:
        config, model, _, train_data, valid_data, test_data = load_data_and_model(args.checkpoint)
    except Exception as exc:  # a refused unpickle, a foreign file, a missing dataset
        print(f"error: cannot load {args.checkpoint}: {type(exc).__name__}: {exc}"
              + ("" if args.trust else " (if the file is yours, pass --trust)"), file=sys.stderr)
        return 2
    command = "python -m recbole_flexcode.diagnose " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.token_fit:
        if args.max_rows <= 0:
            print(f"error: --max_rows must be > 0, got {args.max_rows}", file=sys.stderr)
            return 2
        diag = {"command": command, "checkpoint": os.path.abspath(args.checkpoint), "dataset": config["dataset"],
                "seed": config["seed"], "model": config["model"]}
        n_strata = int(config["lb_strata"] or 5)
        token_fits = None
        if _is_flexcode(model):
            token_fits = {"valid": token_fit(model, valid_data),
                          "train": token_fit(model, train_data, max_rows=args.max_rows)}
            diag["token_fit"] = token_fits
            print(format_token_fit(token_fits))
        is_flexcode = token_fits is not None
        fits = {"valid": stratum_fit(model, valid_data, train_data._dataset, n_strata, nll=not is_flexcode),
                "train": stratum_fit(model, train_data, train_data._dataset, n_strata, args.max_rows, nll=not is_flexcode)}
        diag["stratum_fit"] = fits
        print(format_stratum_fit(fits, token_fits))
        return _write(args.out, diag)
    if args.by_target:
        from recbole_flexcode.evaluation import evaluation_rows, group_metrics

        overrides = {"shrink": args.item_head_shrink, "n_candidates": args.item_head_candidates}
        for attr, value in overrides.items():
            if value is None:
                continue
            if not _is_flexcode(model) or not hasattr(model.item_head, attr):
                flag = "--item_head_shrink" if attr == "shrink" else "--item_head_candidates"
                print(f"error: {flag} needs a FlexCode checkpoint with an item head, got {config['model']}",
                      file=sys.stderr)
                return 2
            setattr(model.item_head, attr, type(getattr(model.item_head, attr))(value))
        rows = {name: evaluation_rows(model, data, train_data._dataset, model.device)
                for name, data in (("valid", valid_data), ("test", test_data))}
        groups = {name: group_metrics(r, train_data._dataset) for name, r in rows.items()}
        diag = {"command": command, "checkpoint": os.path.abspath(args.checkpoint), "dataset": config["dataset"],
                "seed": config["seed"], "model": config["model"], "by_target": groups}
        print(format_target_strata(groups["valid"], groups["test"]))
        if args.rows_out:
            from recbole_flexcode.analysis.paired import save_rows

            save_rows(args.rows_out, rows, {key: diag[key] for key in ("command", "checkpoint", "dataset", "seed", "model")})
        return _write(args.out, diag)
    if not _is_flexcode(model):
        print(f"error: {config['model']} has no split diagnostic (FlexCode only)", file=sys.stderr)
        return 2
    if any(arg is not None for arg in sweeps):
        return _rescore_sweep(*sweeps, config, model, train_data, valid_data, test_data, command,
                              os.path.abspath(args.checkpoint), args.out, args.tail_floor)
    if args.decode_check > 0:
        try:
            widths = [int(w) for w in args.beam_sizes.split(",") if w.strip()]
        except ValueError:
            print(f"error: --beam_sizes must be comma-separated integers, got '{args.beam_sizes}'", file=sys.stderr)
            return 2
        check = decoding_check(model, valid_data, train_data._dataset,
                               args.decode_check, widths, ks=tuple(config["topk"]))
        diag = {"command": command,
                "checkpoint": os.path.abspath(args.checkpoint), "dataset": config["dataset"], "seed": config["seed"],
                "decoding_check": check}
        print(format_decoding_check(check))
        return _write(args.out, diag)
    diag = split_losses(model, valid_data)
    if diag is None:
        print(f"error: variant '{model.variant.name}' uses one fixed split: nothing to compare", file=sys.stderr)
        return 2
    diag = {"checkpoint": os.path.abspath(args.checkpoint), "dataset": config["dataset"], "seed": config["seed"], **diag}
    print(format_diagnostics(diag))
    return _write(args.out, diag)


def _rescore_sweep(weights_arg, candidates_arg, priors_arg, shrinks_arg, config, model, train_data, valid_data,
                   test_data, command, checkpoint, out, tail_floor=None) -> int:
    from recbole.utils import get_trainer

    from recbole_flexcode.analysis.flexcode import rescore_sweep
    from recbole_flexcode.evaluation import popularity_group_metrics

    if not hasattr(model.item_head, "rescore_weight"):
        print("error: the checkpoint's model has no item head (trained with item_head_weight: 0)", file=sys.stderr)
        return 2
    weights = _numbers(weights_arg, float) if weights_arg is not None else [model.item_head.rescore_weight]
    if not weights or min(weights) < 0:
        print(f"error: --rescore_sweep must be comma-separated weights >= 0, got '{weights_arg}'", file=sys.stderr)
        return 2
    candidates = _numbers(candidates_arg, int) if candidates_arg is not None else None
    if candidates is not None and (not candidates or min(candidates) < 0):
        print(f"error: --candidates_sweep must be comma-separated integers >= 0, got '{candidates_arg}'", file=sys.stderr)
        return 2
    priors = _numbers(priors_arg, float) if priors_arg is not None else None
    if priors is not None and (not priors or min(priors) < 0):
        print(f"error: --prior_sweep must be comma-separated numbers >= 0, got '{priors_arg}'", file=sys.stderr)
        return 2
    shrinks = _numbers(shrinks_arg, float) if shrinks_arg is not None else None
    if shrinks is not None and (not shrinks or min(shrinks) < 0):
        print(f"error: --shrink_sweep must be comma-separated numbers >= 0, got '{shrinks_arg}'", file=sys.stderr)
        return 2
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    def evaluate(data):
        return trainer.evaluate(data, load_best_model=False, show_progress=bool(config["show_progress"]))

    def by_group(data):
        return popularity_group_metrics(model, data, train_data._dataset, model.device)

    sweep = rescore_sweep(model, evaluate, valid_data, test_data, weights, str(config["valid_metric"]).lower(),
                          candidates, by_group, priors, shrinks, tail_floor)
    metric = sweep["valid_metric"]
    body = [[f"{r['rescore_weight']:g}", str(r["candidates"]), f"{r['prior']:g}", f"{r['shrink']:g}", f"{r['valid'][metric]:.4f}",
             f"{r['valid_groups']['head']['ndcg@10']:.4f}", f"{r['valid_groups']['tail']['ndcg@10']:.4f}"]
            for r in sweep["weights"]]
    print(markdown_table(["item_head_rescore", "item_head_candidates", "item_head_prior", "item_head_shrink", f"valid {metric}",
                          "valid head N@10", "valid tail N@10"], body))
    tested = [("chosen on validation", "chosen"), ("as trained", "trained")]
    if tail_floor is not None:
        if sweep["test_at_floor"] is None:
            print(f"no setting reaches validation tail N@10 {tail_floor:g}")
        else:
            tested.append((f"best with validation tail N@10 >= {tail_floor:g}", "floor"))
    for name, at_key in tested:
        at = sweep[f"test_at_{at_key}"]
        setting = [sweep[f"{at_key}_{k}"] for k in ("weight", "candidates", "prior", "shrink")]
        print(f"{name} (rescore {setting[0]:g}, candidates {setting[1]}, prior {setting[2]:g}, shrink {setting[3]:g}): "
              f"test {metric} {at[metric]:.4f}, "
              f"head {at['groups']['head']['ndcg@10']:.4f}, tail {at['groups']['tail']['ndcg@10']:.4f}")
    chosen_valid = next(r["valid_groups"] for r in sweep["weights"]
                        if [r[k] for k in ("rescore_weight", "candidates", "prior", "shrink")]
                        == [sweep[f"chosen_{k}"] for k in ("weight", "candidates", "prior", "shrink")])
    print(format_target_strata(chosen_valid, sweep["test_at_chosen"]["groups"]))
    # the checkpoint names the run JSON this sweep belongs to (benchmark.selected)
    diag = {"command": command, "checkpoint": checkpoint, "dataset": config["dataset"], "seed": config["seed"],
            "rescore_sweep": sweep}
    return _write(out, diag)


def _numbers(arg: str, kind) -> list:
    try:
        return [kind(v) for v in arg.split(",") if v.strip()]
    except ValueError:
        return []


def _is_flexcode(model) -> bool:
    return type(model).__name__ == "FlexCode"


def _write(out, diag) -> int:
    if out:
        write_json(out, diag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
