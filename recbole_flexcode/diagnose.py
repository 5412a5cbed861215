"""Split-loss diagnostic of a saved FlexCode checkpoint (FlexCode §4.3).

    python -m recbole_flexcode.diagnose saved/FlexCode-....pth [--trust] [--out=diag.json]

Reloads the checkpoint with its own config and data split, then reports, per popularity stratum
of the validation targets, the mean ``L_ARG`` of the target under every budget split next to the
router's choice (:meth:`FlexCode.diagnose`). A run of ``run_flexcode.py`` stores the same block
in its result JSON; this command covers checkpoints made before that, or elsewhere.

Loading a checkpoint unpickles it: ``--trust`` says the file is yours (an earlier run of this
plugin). Without it only a plain-weights file loads, as with ``torch.load``'s safe default.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.diagnose", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a FlexCode checkpoint saved by RecBole's trainer")
    p.add_argument("--trust", action="store_true", help="the checkpoint is yours: allow full unpickling")
    p.add_argument("--out", default=None, help="also write the diagnostics as JSON here")
    args = p.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        print(f"error: no such checkpoint: {args.checkpoint}", file=sys.stderr)
        return 2
    from recbole_flexcode.compat import load_data_and_model, trust_checkpoint

    if args.trust:
        trust_checkpoint(args.checkpoint)
    try:
        config, model, _, _, valid_data, _ = load_data_and_model(args.checkpoint)
    except Exception as exc:  # a refused unpickle, a foreign file, a missing dataset
        print(f"error: cannot load {args.checkpoint}: {type(exc).__name__}: {exc}"
              + ("" if args.trust else " (if the file is yours, pass --trust)"), file=sys.stderr)
        return 2
    if not callable(getattr(model, "diagnose", None)):
        print(f"error: {config['model']} has no split diagnostic (FlexCode only)", file=sys.stderr)
        return 2
    diag = model.diagnose(valid_data)
    if diag is None:
        print(f"error: variant '{model.variant}' uses one fixed split: nothing to compare", file=sys.stderr)
        return 2
    diag = {"checkpoint": os.path.abspath(args.checkpoint), "dataset": config["dataset"], "seed": config["seed"], **diag}
    print(format_diagnostics(diag))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(diag, f, indent=2)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
