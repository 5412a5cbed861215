"""Benchmark tables from the run JSONs: ``benchmark.md`` and ``benchmark.csv``.

One row per benchmark row, aggregated over its seeds: mean, sample standard deviation
(``ddof = 1``; undefined, shown as "–" and left empty in the CSV, when a row has one seed) and
``n``.  The test metrics are those ``run()`` reports, i.e. measured on the checkpoint selected by
validation NDCG@10.  The relative NDCG@10 gain of a row is ``mean(row) / mean(SASRec) − 1`` against
the SASRec row of the same results folder (same split and protocol), both means over the seeds
the two rows share.  Rows named
``FlexCode[-<variant>]-L<n>`` go to a second table (token budget).  Published numbers
(:mod:`.published`) are printed in a separate block, marked as quoted and not measured here.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import re
from datetime import datetime, timezone

from recbole_flexcode.benchmark.published import published_for
from recbole_flexcode.io import write_text
from recbole_flexcode.reporting import markdown_table

#: (key, label, getter) for every aggregated quantity.
METRICS = [
    ("recall@5", "R@5", lambda r: r.get("test_result", {}).get("recall@5")),
    ("recall@10", "R@10", lambda r: r.get("test_result", {}).get("recall@10")),
    ("ndcg@5", "N@5", lambda r: r.get("test_result", {}).get("ndcg@5")),
    ("ndcg@10", "N@10", lambda r: r.get("test_result", {}).get("ndcg@10")),
    ("valid_ndcg@10", "valid N@10", lambda r: (r.get("best_valid_result") or {}).get("ndcg@10")),
    ("head_ndcg@10", "head N@10", lambda r: _group(r, "head", "ndcg@10")),
    ("head_recall@10", "head R@10", lambda r: _group(r, "head", "recall@10")),
    ("head_users", "head users", lambda r: _group(r, "head", "users")),
    ("tail_ndcg@10", "tail N@10", lambda r: _group(r, "tail", "ndcg@10")),
    ("tail_recall@10", "tail R@10", lambda r: _group(r, "tail", "recall@10")),
    ("tail_users", "tail users", lambda r: _group(r, "tail", "users")),
    ("train_s", "train s", lambda r: _bench(r, "train_s")),
    ("stages_s", "stages s", lambda r: _bench(r, "stages_s")),
    ("wall_s", "wall s", lambda r: _bench(r, "wall_s")),
    ("inference_users_per_s", "users/s", lambda r: _bench(r, "inference_users_per_s")),
    ("peak_memory_bytes", "peak memory", lambda r: _bench(r, "peak_memory_bytes")),
]
METRIC_KEYS = [m[0] for m in METRICS]
_BUDGET_ROW = re.compile(r"^FlexCode(?:-[a-z_]+)?-L(\d+)$")
_RUN_FILE = re.compile(r"^(?P<row>.+)-seed(?P<seed>-?\d+)\.json$")


def _group(record, group, key):
    return ((record.get("popularity_groups") or {}).get(group) or {}).get(key)


def _bench(record, key):
    return (record.get("benchmark") or {}).get(key)


def _num(x):
    if x is None or isinstance(x, bool):
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def mean_std(values) -> dict:
    """``{"mean", "std", "n"}`` of the numeric values (None/NaN dropped); sample std, None when n < 2."""
    vals = [v for v in (_num(x) for x in values) if v is not None]
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def _common(values: set):
    """The one value all runs share, else None."""
    return next(iter(values)) if len(values) == 1 else None


def budget_of(row: str) -> int | None:
    m = _BUDGET_ROW.match(row)
    return int(m.group(1)) if m else None


def _default_sort_key(row: str):
    """Baselines (SASRec first), then FlexCode, its variants, then budgets by L."""
    flex = row == "FlexCode" or row.startswith("FlexCode-")
    budget = budget_of(row)
    return (flex, budget is not None, budget or 0, row != "SASRec", row != "FlexCode", row)


def row_of(record: dict, path: str | None = None) -> str | None:
    row = (record.get("benchmark") or {}).get("row")
    if row:
        return row
    if path:
        m = _RUN_FILE.match(os.path.basename(path))
        if m:
            return m.group("row")
    return None


def read_json_files(directory: str):
    """``(path, object)`` for every readable ``*.json`` directly under ``directory``, by file name;
    unreadable or half-written files are skipped (a run still writing, a foreign file)."""
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        try:
            with open(path, encoding="utf-8") as f:
                yield path, json.load(f)
        except (OSError, ValueError):
            continue


def load_runs(runs_directory: str) -> list[dict]:
    """Every finished run JSON (with a ``benchmark`` section) under ``runs_directory``, sorted by file name."""
    records = []
    for path, rec in read_json_files(runs_directory):
        if not isinstance(rec, dict) or not isinstance(rec.get("benchmark"), dict) or "test_result" not in rec:
            continue
        row = row_of(rec, path)
        if row is None:
            continue
        rec = dict(rec)
        rec["_row"] = row
        rec["_path"] = path
        records.append(rec)
    return records


_TABLE_METRICS = {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}


def _other_metrics(recs: list[dict]) -> dict:
    """Metrics outside the accuracy table (e.g. GAUC under sampled evaluation): valid and test."""
    names = sorted({k for r in recs for k in (r.get("test_result") or {}) if k not in _TABLE_METRICS})
    out = {}
    for name in names:
        out[f"valid {name}"] = mean_std((r.get("best_valid_result") or {}).get(name) for r in recs)
        out[f"test {name}"] = mean_std((r.get("test_result") or {}).get(name) for r in recs)
    return out


def _epochs_cell(record: dict) -> str:
    """``run (best)`` epochs of one run, ``†`` when ``train_time_budget`` stopped it, ``?`` if not recorded."""
    t = record.get("training") or {}
    if not t.get("epochs_run"):
        return "?"
    best = t.get("best_epoch")
    return f"{t['epochs_run']} ({'?' if best is None else best + 1}){'†' if t.get('stopped_by_time_budget') else ''}"


def aggregate(records: list[dict], row_order=None, only_rows=None) -> list[dict]:
    """Per-row summaries ``{"row", "n", "seeds", "metrics": {key: mean_std}, "devices", ...}``.

    Rows follow ``row_order`` first, then the remaining rows in name order; ``only_rows`` filters.
    """
    by_row: dict[str, list[dict]] = {}
    for rec in records:
        row = rec.get("_row") or row_of(rec)
        if row is None or (only_rows is not None and row not in only_rows):
            continue
        by_row.setdefault(row, []).append(rec)
    order = [r for r in (row_order or []) if r in by_row]
    order += sorted((r for r in by_row if r not in order), key=_default_sort_key)
    summaries = []
    for row in order:
        recs = sorted(by_row[row], key=lambda r: (_num(r.get("seed")) or 0))
        bench = [r.get("benchmark") or {} for r in recs]
        summaries.append(
            {
                "row": row,
                "model": bench[0].get("model") or recs[0].get("model"),
                "variant": (bench[0].get("row_overrides") or {}).get("variant"),
                "token_budget": (bench[0].get("row_overrides") or {}).get("token_budget") or budget_of(row),
                "n": len(recs),
                "seeds": [r.get("seed", b.get("seed")) for r, b in zip(recs, bench)],
                "metrics": {key: mean_std(get(r) for r in recs) for key, _, get in METRICS},
                "devices": sorted({b.get("device") for b in bench if b.get("device")}),
                "memory_kinds": sorted({b.get("peak_memory_kind") for b in bench if b.get("peak_memory_kind")}),
                "commands": sorted({r.get("command") for r in recs if r.get("command")}),
                "other_metrics": _other_metrics(recs),
                "epochs": [_epochs_cell(r) for r in recs],
                "model_token_budget": _common({(r.get("model_report") or {}).get("token_budget") for r in recs}),
                "records": recs,
            }
        )
    reference = next((s for s in summaries if s["row"] == "SASRec"), None)
    for s in summaries:
        gain = None if s is reference else gain_on_shared_seeds(s, reference, "ndcg@10")
        s["ndcg10_gain"] = gain
        s["ndcg10_gain_vs_sasrec_pct"] = None if gain is None else gain["pct"]
    return summaries


def values_by_seed(summary: dict, key: str) -> dict:
    """``{seed: value}`` of one :data:`METRICS` quantity over a row summary's runs (runs without it left out)."""
    getter = next(get for k, _, get in METRICS if k == key)
    values = {seed: _num(getter(r)) for seed, r in zip(summary["seeds"], summary["records"])}
    return {seed: v for seed, v in values.items() if v is not None}


def gain_on_shared_seeds(summary: dict, reference: dict | None, key: str) -> dict | None:
    """``{"pct", "seeds", "subset"}``: the row's mean ``key`` over the seeds it shares with ``reference`` /
    the reference's mean over the same seeds − 1, in percent; None without shared seeds or values.

    Comparing on the same seeds keeps a one-seed row from being set against another row's
    three-seed mean, whose seeds it never ran. ``subset`` says some of the reference's seeds were left out.
    """
    if reference is None:
        return None
    mine, theirs = values_by_seed(summary, key), values_by_seed(reference, key)
    seeds = sorted((seed for seed in mine if seed in theirs), key=lambda x: _num(x) or 0)
    if not seeds:
        return None
    ref = sum(theirs[seed] for seed in seeds) / len(seeds)
    if ref == 0:
        return None
    pct = (sum(mine[seed] for seed in seeds) / len(seeds) / ref - 1.0) * 100.0
    return {"pct": pct, "seeds": seeds, "subset": len(seeds) < len(theirs)}


# ---------------------------------------------------------------------- formatting
def _fmt_metric(ms: dict, digits: int = 4) -> str:
    if not ms or ms["mean"] is None:
        return "–"
    if ms["std"] is None:
        return f"{ms['mean']:.{digits}f}"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def _fmt_count(ms: dict) -> str:
    if not ms or ms["mean"] is None:
        return "–"
    if ms["std"] in (None, 0.0):
        return f"{ms['mean']:.0f}"
    return f"{ms['mean']:.1f} ± {ms['std']:.1f}"


def _fmt_seconds(ms: dict) -> str:
    if ms["mean"] is None:
        return "–"
    m = ms["mean"]
    text = f"{m:.1f}" if m < 1000 else f"{m:.0f}"
    return text if ms["std"] is None else f"{text} ± {ms['std']:.1f}"


def _fmt_rate(ms: dict) -> str:
    if ms["mean"] is None:
        return "–"
    spec = ",.0f" if ms["mean"] >= 100 else ".1f"
    text = format(ms["mean"], spec)
    return text if ms["std"] is None else f"{text} ± {format(ms['std'], spec)}"


def format_bytes(x) -> str:
    x = _num(x)
    if x is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024.0
    return f"{x:.1f} TiB"  # pragma: no cover


def fmt_gain(gain: dict | None) -> str:
    """A :func:`gain_on_shared_seeds` result; its seeds in brackets when it left out some of the reference's."""
    if gain is None:
        return "–"
    seeds = gain["seeds"]
    note = f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(str(x) for x in seeds)})" if gain["subset"] else ""
    return f"{gain['pct']:+.1f}%{note}"


def _accuracy_rows(summaries):
    out = []
    for s in summaries:
        m = s["metrics"]
        out.append([
            s["row"], str(s["n"]), _fmt_metric(m["recall@5"]), _fmt_metric(m["recall@10"]),
            _fmt_metric(m["ndcg@5"]), _fmt_metric(m["ndcg@10"]), fmt_gain(s["ndcg10_gain"]),
            _fmt_metric(m["valid_ndcg@10"]),
        ])
    return out


def _group_rows(summaries):
    out = []
    for s in summaries:
        m = s["metrics"]
        out.append([
            s["row"], str(s["n"]),
            _fmt_metric(m["head_ndcg@10"]), _fmt_metric(m["head_recall@10"]), _fmt_count(m["head_users"]),
            _fmt_metric(m["tail_ndcg@10"]), _fmt_metric(m["tail_recall@10"]), _fmt_count(m["tail_users"]),
        ])
    return out


def _cost_rows(summaries):
    out = []
    for s in summaries:
        m = s["metrics"]
        mem = format_bytes(m["peak_memory_bytes"]["mean"])
        if s["memory_kinds"]:
            mem += f" ({', '.join(s['memory_kinds'])})"
        out.append([
            s["row"], str(s["n"]), _fmt_seconds(m["train_s"]), _fmt_seconds(m["stages_s"]), _fmt_seconds(m["wall_s"]),
            _fmt_rate(m["inference_users_per_s"]), mem, "; ".join(s["devices"]) or "–",
            ", ".join(str(x) for x in s["seeds"]), ", ".join(s.get("epochs") or []) or "–",
        ])
    return out


ACCURACY_HEADER = ["row", "n", "R@5", "R@10", "N@5", "N@10", "N@10 vs SASRec", "valid N@10"]
GROUP_HEADER = ["row", "n", "head N@10", "head R@10", "head users", "tail N@10", "tail R@10", "tail users"]
COST_HEADER = ["row", "n", "train s", "stages s", "wall s", "inference users/s", "peak memory", "device", "seeds", "epochs (best)"]


def _published_block(dataset: str) -> str:
    entries = published_for(dataset)
    if not entries:
        return ""
    rows = [
        [e["model"], f"{e['recall@5']:.4f}", f"{e['recall@10']:.4f}", f"{e['ndcg@5']:.4f}", f"{e['ndcg@10']:.4f}",
         e["source"] + (f" ({e['note']})" if e.get("note") else "")]
        for e in entries
    ]
    return "\n".join([
        "## Published numbers — quoted from the paper / other reports, NOT measured here",
        "",
        "These come from other code, other preprocessing and other tuning; they are context, not "
        "results of the runs above (columns in the same order as above).",
        "",
        markdown_table(["model (as published)", "R@5", "R@10", "N@5", "N@10", "source"], rows),
        "",
    ])


def header_lines(title: str, command: str | None) -> list[str]:
    """A table file's opening: its title, the command that wrote it and when."""
    return [
        f"# {title}",
        "",
        f"Table written by: `{command}`" if command else "",
        f"Written at: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
    ]


def command_lines(title: str, commands) -> list[str]:
    """``title`` and one bullet per command (nothing without commands)."""
    return [title, ""] + [f"- `{c}`" for c in commands] + [""] if commands else []


def relabel_lines(summaries: list[dict]) -> list[str]:
    """One bullet per run that ``python -m recbole_flexcode.benchmark.relabel`` moved to its row (nothing
    without such runs): its seed, the row its command named, and why it belongs here."""
    bullets = []
    for s in summaries:
        for r in s["records"]:
            moved = (r.get("benchmark") or {}).get("relabelled")
            if isinstance(moved, dict):
                bullets.append(f"- {s['row']}, seed {r.get('seed')}: ran as row {moved.get('from')}; {moved.get('why')}")
    return ["Runs relabelled (their commands above name the row they ran as):", ""] + bullets + [""] if bullets else []


def render_markdown(dataset: str, summaries: list[dict], command: str | None) -> str:
    main = [s for s in summaries if budget_of(s["row"]) is None]
    # rows evaluated only with sampled metrics (e.g. GAUC) have no full-ranking cells to show
    ranked = [s for s in main if any(s["metrics"][k]["mean"] is not None for k in _TABLE_METRICS)]
    budget = [s for s in summaries if budget_of(s["row"]) is not None]
    full = next((s for s in main if s["row"] == "FlexCode" and s.get("model_token_budget")), None)
    if budget and full and full["model_token_budget"] not in {budget_of(s["row"]) for s in budget}:
        # the default budget was trained as the FlexCode row: show it in its place rather than rerun it
        budget.append({**full, "row": f"FlexCode (L={full['model_token_budget']}: row FlexCode)"})
    budget.sort(key=lambda s: (budget_of(s["row"]) or s.get("model_token_budget") or 0, s["row"]))
    run_commands = sorted({c for s in summaries for c in s["commands"]})
    parts = header_lines(f"Benchmark: {dataset}", command) + [""] + command_lines("Runs produced by:", run_commands)
    parts += relabel_lines(summaries)
    parts += [
        "Protocol (SPEC §3): leave-last-out in time order, full ranking over all items; every number is the "
        "test result of the checkpoint selected on validation NDCG@10. Cells are mean ± sample std over the "
        "seeds (n = number of seeds; no std with one seed). \"N@10 vs SASRec\" = mean N@10 of the row / mean "
        "N@10 of this folder's SASRec row − 1, both over the seeds the two rows share (named in brackets when "
        "that leaves out some of SASRec's seeds).",
        "",
    ]
    if main:
        if ranked:
            parts += ["## Accuracy (test)", "", markdown_table(ACCURACY_HEADER, _accuracy_rows(ranked)), ""]
            parts += [
                "## Popularity groups (test users by target item: head = 20% most popular items in training)",
                "", markdown_table(GROUP_HEADER, _group_rows(ranked)), "",
            ]
        parts += ["## Cost", "", markdown_table(COST_HEADER, _cost_rows(main)), ""]
    extra_names = sorted({k for s in summaries for k in s.get("other_metrics", {})})
    if extra_names:
        rows = [[s["row"], str(s["n"])] + [_fmt_metric(s.get("other_metrics", {}).get(k) or {}) for k in extra_names]
                for s in summaries if s.get("other_metrics")]
        parts += ["## Other metrics (runs with a different evaluation, e.g. sampled GAUC)", "",
                  "Selected on the run's own `valid_metric` (see the command that produced it).", "",
                  markdown_table(["row", "n"] + extra_names, rows), ""]
    if budget:
        parts += ["## Token budget L (FlexCode-L<n>)", ""]
        parts += [markdown_table(ACCURACY_HEADER, _accuracy_rows(budget)), ""]
        parts += [markdown_table(GROUP_HEADER, _group_rows(budget)), ""]
        parts += [markdown_table(COST_HEADER, _cost_rows(budget)), ""]
    if not summaries:
        parts += ["No finished runs yet.", ""]
    parts += [
        "Cost columns: *train s* = RecBole `trainer.fit` wall seconds (training + per-epoch validation); "
        "*stages s* = model construction (FlexCode: text embeddings, CF SASRec, tokenizer; ~0 when cached); "
        "*wall s* = the whole run; *inference users/s* = test users / seconds of RecBole's test pass "
        "(checkpoint load + full-sort scoring + metrics); *peak memory* = GPU max allocated on GPU runs, "
        "else the process's peak RSS during the run; *epochs (best)* = epochs trained and the best-validation "
        "epoch (1-based) per seed, † = stopped by `train_time_budget`, ? = not recorded (older runs).",
        "",
    ]
    block = _published_block(dataset)
    if block:
        parts.append(block)
    return "\n".join(p for p in parts if p is not None) + "\n"


CSV_FIELDS = (
    ["row", "model", "variant", "token_budget", "n", "seeds"]
    + [f"{k}_{s}" for k in METRIC_KEYS for s in ("mean", "std")]
    + ["ndcg10_gain_vs_sasrec_pct", "ndcg10_gain_seeds", "peak_memory_kind", "device", "run_commands", "table_command"]
)


def render_csv(summaries: list[dict], command: str | None = None) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for s in summaries:
        rec = {
            "row": s["row"], "model": s["model"], "variant": s["variant"] or "", "token_budget": s["token_budget"] or "",
            "n": s["n"], "seeds": " ".join(str(x) for x in s["seeds"]),
            "ndcg10_gain_vs_sasrec_pct": "" if s["ndcg10_gain_vs_sasrec_pct"] is None else repr(s["ndcg10_gain_vs_sasrec_pct"]),
            "ndcg10_gain_seeds": " ".join(str(x) for x in (s["ndcg10_gain"] or {}).get("seeds", [])),
            "peak_memory_kind": "; ".join(s["memory_kinds"]), "device": "; ".join(s["devices"]),
            "run_commands": " || ".join(s["commands"]), "table_command": command or "",
        }
        for k in METRIC_KEYS:
            ms = s["metrics"][k]
            rec[f"{k}_mean"] = "" if ms["mean"] is None else repr(ms["mean"])
            rec[f"{k}_std"] = "" if ms["std"] is None else repr(ms["std"])
        w.writerow(rec)
    return buf.getvalue()


def write_tables(out: str, dataset: str, row_order=None, only_rows=None, command: str | None = None) -> list[str]:
    """Aggregate ``<out>/<dataset>/runs/*.json`` into ``benchmark.md`` and ``benchmark.csv``; return the paths."""
    directory = os.path.join(out, dataset)
    summaries = aggregate(load_runs(os.path.join(directory, "runs")), row_order=row_order, only_rows=only_rows)
    return write_pair(directory, "benchmark", render_markdown(dataset, summaries, command), render_csv(summaries, command))


def write_pair(directory: str, stem: str, markdown: str, csv_text: str) -> list[str]:
    """Write one table as ``<directory>/<stem>.md`` and ``.csv`` (each atomically); return the two paths."""
    paths = [os.path.join(directory, f"{stem}.md"), os.path.join(directory, f"{stem}.csv")]
    write_text(paths[0], markdown)
    write_text(paths[1], csv_text)
    return paths
