"""Validation curves (valid metric per epoch) of finished runs: a CSV and a plot.

Usage::

    python -m recbole_flexcode.benchmark.curves --out results/Amazon_Beauty/analysis/valid_curves \\
        SASRec=log/SASRec/<file>.log FlexCode=results/Amazon_Beauty/runs/FlexCode-seed2020.json

Each source is ``ROW=PATH``: a run JSON with ``training.valid_curve`` (runs since that field
exists) or a RecBole log, whose ``epoch N evaluating [..., valid_score: X]`` lines are read
(older runs).  Writes ``<out>.csv`` (row, epoch, valid score; epochs 1-based) and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys

from recbole_flexcode.io import atomic_write

_EVAL_LINE = re.compile(r"epoch (\d+) evaluating \[time: [\d.]+s, valid_score: ([-\d.eE]+)\]")


def read_curve(path: str) -> list[tuple[int, float]]:
    """``[(epoch, valid score)]`` from a run JSON or a RecBole log; 1-based epochs."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if path.endswith(".json"):
        curve = (json.loads(text).get("training") or {}).get("valid_curve")
        if curve is None:
            raise ValueError(f"{path}: no training.valid_curve (an older run: pass its RecBole log instead)")
        return [(i + 1, float(v)) for i, v in enumerate(curve)]
    points = [(int(m.group(1)) + 1, float(m.group(2))) for m in _EVAL_LINE.finditer(text)]
    if not points:
        raise ValueError(f"{path}: no 'epoch N evaluating' lines")
    return points


def write_curves(sources: dict[str, str], out: str, title: str = "", metric: str = "validation NDCG@10") -> list[str]:
    curves = {row: read_curve(path) for row, path in sources.items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    def write_csv(path):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["row", "epoch", "valid_score"])
            for row, pts in curves.items():
                w.writerows((row, e, v) for e, v in pts)

    atomic_write(out + ".csv", write_csv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row, pts in curves.items():
        ax.plot([e for e, _ in pts], [v for _, v in pts], marker=".", label=row)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(out + ".png", lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)
    return [out + ".csv", out + ".png"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_flexcode.benchmark.curves", description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", help="ROW=PATH (run JSON or RecBole log)")
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    try:
        sources = dict(s.split("=", 1) for s in args.sources)
        for path in write_curves(sources, args.out, args.title):
            print(f"wrote {path}")
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
