"""Two models on the same evaluation rows: where one retrieves a target the other misses.

    python -m recbole_flexcode.diagnose <checkpoint A> --trust --by_target --rows_out=a.npz
    python -m recbole_flexcode.diagnose <checkpoint B> --trust --by_target --rows_out=b.npz
    python -m recbole_flexcode.analysis.paired a.npz b.npz [--out=paired.md]

Each file holds, per split, one entry per evaluation row (:func:`recbole_flexcode.evaluation.evaluation_rows`):
the target's rank, the target, its training count and the days since its latest training interaction. Two
files pair up when they hold the same targets in the same order (the same dataset, split and seed). Per
stratum of :func:`recbole_flexcode.evaluation.cross_strata` (training count x days) the report gives both
models' N@10 on those same users and how many targets only one of them has in its top 10: a one-way table
per model (``diagnose --by_target``) cannot tell whether the two lose the same rows.
Exit status: 0 success, 2 bad input (missing or foreign file, rows that do not pair).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from recbole_flexcode.evaluation import cross_strata, metrics_from_ranks
from recbole_flexcode.io import atomic_write, write_text
from recbole_flexcode.reporting import markdown_table

#: the per-row arrays each split stores (:func:`recbole_flexcode.evaluation.evaluation_rows`)
ROW_FIELDS = ("ranks", "targets", "train_count", "gap_days")
SPLITS = ("valid", "test")


class PairingError(ValueError):
    """Files that are not evaluation rows, or two that do not hold the same rows."""


def save_rows(path: str, rows: dict, meta: dict) -> None:
    """``rows``: split -> :func:`evaluation_rows`' dict; ``meta`` (model, dataset, seed, command) as JSON text.
    An npz of plain arrays (no pickles), written whole or not at all."""
    arrays = {f"{split}/{field}": np.asarray(rows[split][field]) for split in rows for field in ROW_FIELDS}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True, default=str))

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def load_rows(path: str) -> tuple[dict, dict]:
    """``(rows, meta)`` of a :func:`save_rows` file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            rows = {split: {field: data[f"{split}/{field}"] for field in ROW_FIELDS}
                    for split in SPLITS if f"{split}/ranks" in data.files}
    except (OSError, KeyError, ValueError) as exc:
        raise PairingError(f"{path} is not a file of evaluation rows (diagnose --by_target --rows_out): {exc}") from exc
    if not rows:
        raise PairingError(f"{path} holds no split")
    return rows, meta


def paired_strata(a: dict, b: dict, k: int = 10) -> list[dict]:
    """Per cross stratum of one split's rows ``a`` and ``b`` (the same targets in the same order): the users,
    each model's N@10 and Recall@10, and the targets in only A's top ``k`` / only B's; a last row ``all``."""
    if len(a["targets"]) != len(b["targets"]) or not np.array_equal(a["targets"], b["targets"]):
        raise PairingError("the two files do not hold the same evaluation rows (other dataset, split or seed?)")
    labels, names = cross_strata(a["train_count"], a["gap_days"])
    out = []
    for index, name in [*enumerate(names), (None, "all")]:
        mask = np.ones(len(labels), dtype=bool) if index is None else labels == index
        if not mask.any():
            continue
        hit_a, hit_b = a["ranks"][mask] <= k, b["ranks"][mask] <= k
        ma, mb = metrics_from_ranks(a["ranks"][mask], (k,)), metrics_from_ranks(b["ranks"][mask], (k,))
        out.append({"stratum": name, "users": int(mask.sum()), "share": float(mask.mean()),
                    f"a_ndcg@{k}": ma[f"ndcg@{k}"], f"b_ndcg@{k}": mb[f"ndcg@{k}"],
                    f"a_recall@{k}": ma[f"recall@{k}"], f"b_recall@{k}": mb[f"recall@{k}"],
                    "only_a": int((hit_a & ~hit_b).sum()), "only_b": int((hit_b & ~hit_a).sum()),
                    "both": int((hit_a & hit_b).sum())})
    return out


def format_paired(split: str, rows: list[dict], name_a: str, name_b: str, k: int = 10) -> str:
    head = [f"{split}: count · days", "users", "share", f"{name_a} N@{k}", f"{name_b} N@{k}", f"{name_b} − {name_a}",
            f"only {name_a} in top {k}", f"only {name_b}", "both"]
    body = [[r["stratum"], str(r["users"]), f"{r['share']:.3f}", f"{r[f'a_ndcg@{k}']:.4f}", f"{r[f'b_ndcg@{k}']:.4f}",
             f"{r[f'b_ndcg@{k}'] - r[f'a_ndcg@{k}']:+.4f}", str(r["only_a"]), str(r["only_b"]), str(r["both"])]
            for r in rows]
    return markdown_table(head, body)


def _label(meta: dict, path: str) -> str:
    return meta.get("model") or os.path.basename(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.analysis.paired", description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="evaluation rows of model A (diagnose --by_target --rows_out)")
    p.add_argument("b", help="evaluation rows of model B, the same dataset, split and seed")
    p.add_argument("--names", default=None, metavar="A,B", help="the two models' names in the table (default: each file's model)")
    p.add_argument("--out", default=None, help="also write the tables (markdown, with the command) here")
    args = p.parse_args(argv)
    names = args.names.split(",") if args.names else None
    if names is not None and (len(names) != 2 or not all(n.strip() for n in names)):
        print(f"error: --names takes two comma-separated names, got '{args.names}'", file=sys.stderr)
        return 2
    try:
        (rows_a, meta_a), (rows_b, meta_b) = load_rows(args.a), load_rows(args.b)
        splits = [s for s in SPLITS if s in rows_a and s in rows_b]
        if not splits:
            raise PairingError("the two files share no split")
        tables = [format_paired(s, paired_strata(rows_a[s], rows_b[s]),
                                *(names or (_label(meta_a, args.a), _label(meta_b, args.b)))) for s in splits]
    except PairingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python -m recbole_flexcode.analysis.paired " + " ".join(sys.argv[1:] if argv is None else argv)
    sources = "\n".join(f"- {tag}: `{m.get('command', '?')}`" for tag, m in (("A", meta_a), ("B", meta_b)))
    text = "\n\n".join(tables)
    print(text)
    if args.out:
        write_text(args.out, f"`{command}`\n\n{sources}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
