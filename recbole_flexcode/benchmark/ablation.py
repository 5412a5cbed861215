"""An ablation table: benchmark rows in a chain, each adding one change to the row before, and what each change moved.

    python -m recbole_flexcode.benchmark.ablation --dataset=Amazon_Beauty --out=results/cpu_rerun5 \\
        --chain=FlexCode-dropout0,FlexCode-mean_last,FlexCode-expected_loss,FlexCode \\
        [--steps="the tied core;dropout 0.1;last-state head, τ 5;decoupled router"] \\
        [--baseline=SASRec] [--name=ablation] [--analysis=<folder>] [--tail_floor=N10]

Issue #13, item 4: "an ablation table on the same seeds adds the changes one at a time and says what
each moved, overall, head and tail". Every run is read at the inference setting its own validation
chose (:mod:`.selected`; ``--tail_floor`` as there), so test numbers never choose. A row's levels are
means over its own seeds. A step's change (Δ) is paired: the mean over the seeds this row and the
row before both ran of (this row − the row before), with how many of those seeds it raised, for
validation N@10, test N@10 and test N@10 on head and tail targets (head = the 20 % most popular
training items, as in the benchmark tables). The baseline's columns compare test and tail N@10 with
``--baseline`` over shared seeds (:func:`.tables.gain_on_shared_seeds`).

Writes ``<out>/<dataset>/<name>.md`` and ``.csv``. Exit status 2, with one error line, when a chain
row has no finished run or the labels do not match the chain.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys

from recbole_flexcode.benchmark import tables
from recbole_flexcode.benchmark.selected import selected_records
from recbole_flexcode.reporting import markdown_table

#: (summary metric key, label) of every quantity a step's change is reported for.
STEP_METRICS = [("valid_ndcg@10", "valid N@10"), ("ndcg@10", "test N@10"),
                ("head_ndcg@10", "head N@10"), ("tail_ndcg@10", "tail N@10")]


def paired_change(row: dict, before: dict, key: str) -> dict | None:
    """``{"mean", "up", "n", "seeds"}``: the mean of ``row`` − ``before`` over the seeds both have a value for,
    and on how many of them it is positive; None without shared seeds."""
    mine, theirs = tables.values_by_seed(row, key), tables.values_by_seed(before, key)
    seeds = sorted((s for s in mine if s in theirs), key=lambda s: tables._num(s) or 0)
    if not seeds:
        return None
    diffs = [mine[s] - theirs[s] for s in seeds]
    return {"mean": sum(diffs) / len(diffs), "up": sum(d > 0 for d in diffs), "n": len(diffs), "seeds": seeds}


def build(summaries: list[dict], chain: list[str], labels: list[str], baseline: str | None) -> list[dict]:
    """One entry per chain row: its summary, its label, and each :data:`STEP_METRICS` change against the row before."""
    by_row = {s["row"]: s for s in summaries}
    ref = by_row.get(baseline) if baseline else None
    steps = []
    for i, (row, label) in enumerate(zip(chain, labels)):
        s = by_row[row]
        before = by_row[chain[i - 1]] if i else None
        steps.append({
            "row": row, "label": label, "summary": s,
            "changes": {k: (paired_change(s, before, k) if before else None) for k, _ in STEP_METRICS},
            "vs_baseline": {k: tables.gain_on_shared_seeds(s, ref, k) for k in ("ndcg@10", "tail_ndcg@10")},
        })
    return steps


def _fmt_change(c: dict | None) -> str:
    if c is None:
        return "–"
    return f"{c['mean']:+.4f} ({c['up']}/{c['n']})"


def render_markdown(dataset: str, steps: list[dict], baseline: dict | None, command: str | None,
                    tail_floor: float | None) -> str:
    header = ["step", "row", "seeds"]
    for _, label in STEP_METRICS:
        header += [label, f"Δ {label}"]
    base_name = baseline["row"] if baseline else None
    if base_name:
        header += [f"test vs {base_name}", f"tail vs {base_name}"]
    body = []
    if baseline:
        m = baseline["metrics"]
        body.append([f"baseline: {base_name}", base_name, " / ".join(map(str, baseline["seeds"]))]
                    + sum(([tables._fmt_metric(m[k]), ""] for k, _ in STEP_METRICS), []) + ["–", "–"])
    for i, st in enumerate(steps):
        s, m = st["summary"], st["summary"]["metrics"]
        cells = [f"{i}. {st['label']}", s["row"], " / ".join(map(str, s["seeds"]))]
        for k, _ in STEP_METRICS:
            cells += [tables._fmt_metric(m[k]), _fmt_change(st["changes"][k])]
        if base_name:
            cells += [tables.fmt_gain(st["vs_baseline"]["ndcg@10"]), tables.fmt_gain(st["vs_baseline"]["tail_ndcg@10"])]
        body.append(cells)
    setting = ("at the operating point `diagnose --tail_floor=%g` chose on validation (selected-tail_floor.md)" % tail_floor
               if tail_floor is not None else "at the inference setting its validation chose (selected.md)")
    runs = sorted({c for st in steps for c in st["summary"]["commands"]} | set(baseline["commands"] if baseline else ()))
    devices = sorted({d for st in steps for d in st["summary"]["devices"]})
    parts = tables.header_lines(f"Ablation: {dataset}", command) + [
        f"Machines: {'; '.join(devices)}" if devices else "",
        "",
        f"Each row adds the change its step names to the row above it. Every run is read {setting}; levels "
        "are mean ± sample std over the row's own seeds. Δ = the mean over the seeds this row and the row above "
        "both ran of (this row − the row above), (k/n) = on how many of those n seeds the step raised it. Head = "
        "test users whose target is among the 20 % most popular training items, tail = the rest."
        + (f" \"vs {base_name}\": the row's mean / {base_name}'s over the seeds both ran − 1." if base_name else ""),
        "",
        markdown_table(header, body),
        "",
    ]
    parts += tables.command_lines("Runs produced by:", runs)
    parts += tables.relabel_lines([st["summary"] for st in steps])
    return "\n".join(parts) + "\n"


def render_csv(steps: list[dict], command: str | None) -> str:
    fields = ["step", "label", "row", "n", "seeds"]
    for k, _ in STEP_METRICS:
        fields += [f"{k}_mean", f"{k}_std", f"delta_{k}", f"delta_{k}_up", f"delta_{k}_n"]
    fields += ["ndcg10_vs_baseline_pct", "tail_ndcg10_vs_baseline_pct", "table_command"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for i, st in enumerate(steps):
        s = st["summary"]
        rec = {"step": i, "label": st["label"], "row": s["row"], "n": s["n"], "seeds": " ".join(map(str, s["seeds"])),
               "table_command": command or ""}
        for k, _ in STEP_METRICS:
            ms, c = s["metrics"][k], st["changes"][k]
            rec[f"{k}_mean"] = "" if ms["mean"] is None else repr(ms["mean"])
            rec[f"{k}_std"] = "" if ms["std"] is None else repr(ms["std"])
            rec[f"delta_{k}"] = "" if c is None else repr(c["mean"])
            rec[f"delta_{k}_up"] = "" if c is None else c["up"]
            rec[f"delta_{k}_n"] = "" if c is None else c["n"]
        for key, col in (("ndcg@10", "ndcg10_vs_baseline_pct"), ("tail_ndcg@10", "tail_ndcg10_vs_baseline_pct")):
            gain = st["vs_baseline"][key]
            rec[col] = "" if gain is None else repr(gain["pct"])
        w.writerow(rec)
    return buf.getvalue()


def write_ablation(out: str, dataset: str, chain: list[str], labels: list[str], baseline: str | None = "SASRec",
                   name: str = "ablation", analysis: str | None = None, command: str | None = None,
                   tail_floor: float | None = None) -> list[str]:
    """Write ``<out>/<dataset>/<name>.md`` and ``.csv``; return their paths. ``ValueError`` names a chain row
    without a finished run."""
    wanted = list(chain) + ([baseline] if baseline else [])
    summaries = tables.aggregate(selected_records(out, dataset, analysis, tail_floor), only_rows=set(wanted))
    found = {s["row"] for s in summaries}
    missing = [r for r in chain if r not in found]
    if missing:
        raise ValueError(f"no finished run of {', '.join(missing)} in {os.path.join(out, dataset, 'runs')}")
    steps = build(summaries, chain, labels, baseline)
    ref = next((s for s in summaries if s["row"] == baseline), None)
    return tables.write_pair(os.path.join(out, dataset), name, render_markdown(dataset, steps, ref, command, tail_floor),
                             render_csv(steps, command))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.benchmark.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", default="results", help="the benchmark's --out (holding <dataset>/runs/)")
    p.add_argument("--chain", required=True, help="comma-separated rows, each adding one change to the one before")
    p.add_argument("--steps", default=None,
                   help="semicolon-separated labels, one per chain row: what each adds (default: the row names)")
    p.add_argument("--baseline", default="SASRec", help="row compared with on test and tail N@10 ('' for none)")
    p.add_argument("--name", default="ablation", help="file stem of the table (default: ablation)")
    p.add_argument("--analysis", default=None, help="folder of diagnose JSONs (default: <out>/<dataset>/analysis)")
    p.add_argument("--tail_floor", type=float, default=None, metavar="N10",
                   help="read each run at the operating point diagnose --tail_floor=N10 chose (as benchmark.selected)")
    args = p.parse_args(argv)
    chain = [r.strip() for r in args.chain.split(",") if r.strip()]
    labels = [s.strip() for s in args.steps.split(";")] if args.steps else list(chain)
    if len(chain) < 2:
        print(f"error: --chain needs at least two rows, got {len(chain)}", file=sys.stderr)
        return 2
    if len(labels) != len(chain):
        print(f"error: --steps has {len(labels)} labels for {len(chain)} chain rows", file=sys.stderr)
        return 2
    command = "python -m recbole_flexcode.benchmark.ablation " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        paths = write_ablation(args.out, args.dataset, chain, labels, baseline=args.baseline or None, name=args.name,
                               analysis=args.analysis, command=command, tail_floor=args.tail_floor)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
