"""Split-loss diagnostic of a saved FlexCode checkpoint (FlexCode §4.3).

    python -m recbole_flexcode.diagnose saved/FlexCode-....pth [--trust] [--out=diag.json]

Reloads the checkpoint with its own config and data split, then reports, per popularity stratum
of the validation targets, the mean ``L_ARG`` of the target under every budget split next to the
router's choice (:meth:`FlexCode.diagnose`). A run of ``run_flexcode.py`` stores the same block
in its result JSON; this command covers checkpoints made before that, or elsewhere.

Loading a checkpoint unpickles it: ``--trust`` says the file is yours (an earlier run of this
plugin). Without it only a plain-weights file loads, as with ``torch.load``'s safe default.
``--decode_check=N`` instead compares trie-constrained beam search (``--beam_sizes``) with exact
scoring of every item on the first N validation users, per popularity group.
Exit status: 0 success, 2 bad input (missing file, not a FlexCode checkpoint, refused load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import recbole_flexcode  # noqa: F401  (compatibility fixes first)


def format_diagnostics(diag: dict) -> str:
    rows = diag["strata"]
    n_splits = len(rows[0]["mean_nll_by_split"]) if rows else 0
    head = ["stratum", "train count", "targets"] + [f"NLL s={s}" for s in range(n_splits)] + ["best", "router split histogram"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rng = r["train_count_range"]
        nll = ["–" if v is None else f"{v:.3f}" for v in r["mean_nll_by_split"]]
        lines.append("| " + " | ".join(
            [str(r["stratum"]), f"{rng[0]}–{rng[1]}" if rng else "–", str(r["n_targets"]), *nll,
             "–" if r["best_split"] is None else str(r["best_split"]), str(r["router_split_histogram"])]
        ) + " |")
    return "\n".join(lines)


class _FirstUsers:
    """The first ``n_users`` rows of a RecBole full-sort loader (the last batch cut to size)."""

    def __init__(self, data, n_users: int):
        self.data, self.n_users, self._dataset = data, int(n_users), data._dataset

    def __iter__(self):
        import torch

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

    import numpy as np

    from recbole_flexcode.data.popularity import training_item_counts
    from recbole_flexcode.evaluation import head_item_mask, metrics_from_ranks, target_ranks

    head = head_item_mask(training_item_counts(train_dataset))
    device = model.paths.device
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
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in check["rows"]:
        missed = r.get(f"exact_top{k}_missed")
        lines.append("| " + " | ".join([
            r["decode"], f"{r['all'][f'recall@{k}']:.4f}", f"{r['all'][f'ndcg@{k}']:.4f}",
            f"{r['head'][f'ndcg@{k}']:.4f}", f"{r['tail'][f'ndcg@{k}']:.4f}", f"{r['tail'][f'recall@{k}']:.4f}",
            "–" if missed is None else f"{missed['head']:.1%} / {missed['tail']:.1%}", str(r["seconds"]),
        ]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.diagnose", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a FlexCode checkpoint saved by RecBole's trainer")
    p.add_argument("--trust", action="store_true", help="the checkpoint is yours: allow full unpickling")
    p.add_argument("--out", default=None, help="also write the diagnostics as JSON here")
    p.add_argument("--decode_check", type=int, default=0, metavar="N",
                   help="instead: rank the first N validation users' targets by exact scoring and by beam search "
                   "(--beam_sizes) and report what the beam loses, per popularity group")
    p.add_argument("--beam_sizes", default="20,100", help="beam widths for --decode_check (default 20,100)")
    args = p.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        print(f"error: no such checkpoint: {args.checkpoint}", file=sys.stderr)
        return 2
    from recbole_flexcode.compat import load_data_and_model, trust_checkpoint

    if args.trust:
        trust_checkpoint(args.checkpoint)
    try:
        config, model, _, train_data, valid_data, _ = load_data_and_model(args.checkpoint)
    except Exception as exc:  # a refused unpickle, a foreign file, a missing dataset
        print(f"error: cannot load {args.checkpoint}: {type(exc).__name__}: {exc}"
              + ("" if args.trust else " (if the file is yours, pass --trust)"), file=sys.stderr)
        return 2
    if not callable(getattr(model, "diagnose", None)):
        print(f"error: {config['model']} has no split diagnostic (FlexCode only)", file=sys.stderr)
        return 2
    if args.decode_check > 0:
        if not hasattr(model, "decode_mode"):
            print(f"error: {config['model']} has no decoding to check (FlexCode only)", file=sys.stderr)
            return 2
        try:
            widths = [int(w) for w in args.beam_sizes.split(",") if w.strip()]
        except ValueError:
            print(f"error: --beam_sizes must be comma-separated integers, got '{args.beam_sizes}'", file=sys.stderr)
            return 2
        check = decoding_check(model, valid_data, train_data._dataset,
                               args.decode_check, widths, ks=tuple(config["topk"]))
        diag = {"command": "python -m recbole_flexcode.diagnose " + " ".join(sys.argv[1:] if argv is None else argv),
                "checkpoint": os.path.abspath(args.checkpoint), "dataset": config["dataset"], "seed": config["seed"],
                "decoding_check": check}
        print(format_decoding_check(check))
        return _write(args.out, diag)
    diag = model.diagnose(valid_data)
    if diag is None:
        print(f"error: variant '{model.variant}' uses one fixed split: nothing to compare", file=sys.stderr)
        return 2
    diag = {"checkpoint": os.path.abspath(args.checkpoint), "dataset": config["dataset"], "seed": config["seed"], **diag}
    print(format_diagnostics(diag))
    return _write(args.out, diag)


def _write(out, diag) -> int:
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        tmp = out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(diag, f, indent=2)
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
