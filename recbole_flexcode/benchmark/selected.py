"""Benchmark tables at the inference settings chosen on validation: ``selected.md`` / ``selected.csv``.

    python -m recbole_flexcode.benchmark.selected --dataset=Amazon_Beauty --out=results/cpu_fast \
        [--models=SASRec,FlexCode-fix_user_last,...] [--analysis=<folder>]

The item head's inference settings (re-scoring weight, proposed candidates, popularity prior, path-score shrinkage;
docs/design.md, "Item-level capacity") act after training, so a row can be trained and tested at
one setting (its run JSON, ``<out>/<dataset>/runs/``) and evaluated at others afterwards with
``python -m recbole_flexcode.diagnose <checkpoint> --candidates_sweep=...`` (a JSON with a
``rescore_sweep`` section, by default looked for in ``<out>/<dataset>/analysis/``). For every run
this module takes, among the setting the run was tested with and the setting each diagnose JSON of
the same checkpoint chose, the one with the best validation NDCG@10 (the run's own on ties) and
reports that setting's test result: test numbers never choose. Runs with no such JSON (SASRec,
rows without an item head) keep their own result. The rows are then aggregated over seeds exactly
as ``benchmark.md`` is (:func:`recbole_flexcode.benchmark.tables.aggregate`), so the two tables
differ only in the inference setting of the FlexCode rows.

``--tail_floor=N10`` writes ``selected-tail_floor.md`` / ``.csv`` instead: each FlexCode run at the
operating point ``diagnose --tail_floor=N10`` chose on validation (the best validation N@10 among the
settings whose validation tail N@10 reaches the floor, for example a baseline's), still never by test
numbers. Runs with no diagnose JSON at that floor keep the selection above, marked in the table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from recbole_flexcode.benchmark import tables
from recbole_flexcode.reporting import markdown_table

_METRIC = "ndcg@10"


def _checkpoint_of(diag: dict) -> str | None:
    """The checkpoint a diagnose JSON evaluated: its ``checkpoint`` field, else its command's first argument."""
    if diag.get("checkpoint"):
        return str(diag["checkpoint"])
    words = shlex.split(str(diag.get("command") or ""))
    if "recbole_flexcode.diagnose" not in words:
        return None
    args = [w for w in words[words.index("recbole_flexcode.diagnose") + 1:] if not w.startswith("-")]
    return args[0] if args else None


def load_sweeps(folder: str) -> dict[str, list[dict]]:
    """Every diagnose JSON with a ``rescore_sweep`` section under ``folder``, by checkpoint file name."""
    out: dict[str, list[dict]] = {}
    for path, diag in tables.read_json_files(folder):
        if not isinstance(diag, dict) or not isinstance(diag.get("rescore_sweep"), dict):
            continue
        checkpoint = _checkpoint_of(diag)
        if checkpoint:
            out.setdefault(os.path.basename(checkpoint), []).append({**diag, "_path": path})
    return out


def _setting(sweep: dict, which: str) -> dict:
    # sweeps written before the candidates, the prior and the shrinkage existed ran with none of them (0)
    return {"rescore": sweep[f"{which}_weight"], "candidates": sweep.get(f"{which}_candidates", 0),
            "prior": sweep.get(f"{which}_prior", 0.0), "shrink": sweep.get(f"{which}_shrink", 0.0)}


def _chosen_valid(sweep: dict, which: str = "chosen") -> dict:
    """Validation metrics of the setting the sweep chose (``which``: ``chosen``, or ``floor``), its row in ``weights``."""
    want = _setting(sweep, which)
    for row in sweep["weights"]:
        if (row["rescore_weight"], row.get("candidates", 0), row.get("prior", 0.0), row.get("shrink", 0.0)) == tuple(want.values()):
            return row["valid"]
    raise ValueError(f"a rescore_sweep whose {which} setting is not among its rows")


def _at_floor(sweep: dict, tail_floor: float) -> bool:
    """Whether ``sweep`` chose an operating point at this validation tail floor (and one reached it)."""
    return sweep.get("tail_floor") == tail_floor and sweep.get("test_at_floor") is not None


def select(record: dict, sweeps: list[dict], tail_floor: float | None = None) -> dict:
    """``record`` with its test, validation and group results at the setting validation prefers.

    The candidates are the run's own result and each sweep's chosen setting (only settings that
    were tested can be reported); ``_selected`` says which won: ``setting`` (None: as trained, no
    sweep known) and ``source`` (``"run"`` or the diagnose JSON's path), and lists the commands of the ``sweeps`` considered.
    With ``tail_floor``, the candidates are the operating points the sweeps at that floor chose instead
    (``_selected["floor"]``: True), where there are any.
    """
    seed = record.get("seed")
    sweeps = [d for d in sweeps if d.get("seed") == seed]
    trained = _setting(sweeps[0]["rescore_sweep"], "trained") if sweeps else None
    best = {"valid": (record.get("best_valid_result") or {}).get(_METRIC), "setting": trained, "source": "run"}
    floor_sweeps = [d for d in sweeps if tail_floor is not None and _at_floor(d["rescore_sweep"], tail_floor)]
    which = "floor" if floor_sweeps else "chosen"
    if floor_sweeps:  # the run's own setting is a row of each sweep: the floor choice has weighed it already
        best = {"valid": None, "setting": None, "source": None}
    chosen = None
    for diag in floor_sweeps or sweeps:
        sweep = diag["rescore_sweep"]
        valid = _chosen_valid(sweep, which)
        if best["valid"] is None or valid[_METRIC] > best["valid"]:
            best = {"valid": valid[_METRIC], "setting": _setting(sweep, which), "source": diag["_path"]}
            chosen = (sweep, valid)
    out = dict(record)
    out["_selected"] = {"setting": best["setting"], "source": best["source"], "floor": bool(floor_sweeps),
                        "sweeps": [d.get("command") or d["_path"] for d in sweeps]}
    if chosen is not None:
        sweep, valid = chosen
        test = dict(sweep[f"test_at_{which}"])
        groups = test.pop("groups", None) or {}
        out["test_result"] = test
        out["best_valid_result"] = dict(valid)
        out["popularity_groups"] = {g: groups[g] for g in ("head", "tail") if g in groups}
    return out


def _setting_cell(records: list[dict], tail_floor: float | None = None) -> str:
    """Per seed, the chosen setting: ``K<candidates>`` (+ ``w``/``β``/``τ`` when not 1, 0, 0); ``–`` without a sweep;
    with ``tail_floor``, `` *`` where no sweep at that floor was found."""
    cells = []
    for r in records:
        s = r["_selected"]["setting"]
        if s is None:
            cells.append("–")
            continue
        cell = f"K{s['candidates']}"
        if s["rescore"] != 1.0:
            cell += f" w{s['rescore']:g}"
        if s["prior"] != 0.0:
            cell += f" β{s['prior']:g}"
        if s["shrink"] != 0.0:
            cell += f" τ{s['shrink']:g}"
        if tail_floor is not None and not r["_selected"]["floor"]:
            cell += " *"
        cells.append(cell)
    return " / ".join(cells)


HEADER = ["row", "n", "seeds", "inference setting (per seed)", "R@10", "N@10", "N@10 vs SASRec", "valid N@10",
          "head N@10", "tail N@10", "tail vs SASRec"]


def render_markdown(dataset: str, summaries: list[dict], command: str | None, tail_floor: float | None = None) -> str:
    ref = next((s for s in summaries if s["row"] == "SASRec"), None)
    body = []
    for s in summaries:
        m = s["metrics"]
        tail_gain = None if s is ref else tables.gain_on_shared_seeds(s, ref, "tail_ndcg@10")
        body.append([s["row"], str(s["n"]), " / ".join(str(x) for x in s["seeds"]), _setting_cell(s["records"], tail_floor),
                     tables._fmt_metric(m["recall@10"]), tables._fmt_metric(m["ndcg@10"]),
                     tables.fmt_gain(s["ndcg10_gain"]),
                     tables._fmt_metric(m["valid_ndcg@10"]),
                     tables._fmt_metric(m["head_ndcg@10"]), tables._fmt_metric(m["tail_ndcg@10"]),
                     tables.fmt_gain(tail_gain)])
    runs = sorted({c for s in summaries for c in s["commands"]})
    sweep_commands = sorted({c for s in summaries for r in s["records"] for c in r["_selected"]["sweeps"]})
    devices = sorted({d for s in summaries for d in s["devices"]})
    title = "Benchmark at the inference settings chosen on validation"
    floor_lines = []
    if tail_floor is not None:
        title += f", at validation tail N@10 >= {tail_floor:g}"
        floor_lines = [
            f"Operating point: each FlexCode run at the setting with the best validation N@10 among those whose "
            f"validation tail N@10 is at least {tail_floor:g} (`diagnose --tail_floor={tail_floor:g}`); * = no "
            "diagnose JSON at that floor for this seed, or no setting reached it, so the run is reported as in "
            "selected.md.",
            "",
        ]
    parts = tables.header_lines(f"{title}: {dataset}", command) + [
        f"Machines: {'; '.join(devices)}" if devices else "",
        "",
        *floor_lines,
        "Each FlexCode run was trained and tested at one item-head setting (its run JSON); where `diagnose` "
        "evaluated the same checkpoint at other settings, the setting with the better validation N@10 is "
        "reported, with its test result (test numbers never choose). K = candidates the item head proposes to "
        "the beam, w = its re-scoring weight (shown when not 1), β = popularity prior (shown when not 0), τ = path-score shrinkage (shown when not 0); "
        "– = the run's own result, no other setting evaluated. Cells are mean ± sample std over the seeds; "
        "\"vs SASRec\" is against this folder's SASRec row, over the seeds both ran (named when that leaves "
        "out some of SASRec's). Head = test users whose target is among the 20 % "
        "most popular training items, tail = the rest.",
        "",
        markdown_table(HEADER, body) if body else "No finished runs yet.",
        "",
    ]
    parts += tables.command_lines("Runs produced by:", runs)
    parts += tables.relabel_lines(summaries)
    parts += tables.command_lines("Inference settings evaluated by:", sweep_commands)
    return "\n".join(parts) + "\n"


def selected_records(out: str, dataset: str, analysis: str | None = None, tail_floor: float | None = None) -> list[dict]:
    """Every finished run under ``<out>/<dataset>/runs/`` at the setting its validation prefers (:func:`select`)."""
    directory = os.path.join(out, dataset)
    sweeps = load_sweeps(analysis or os.path.join(directory, "analysis"))
    return [select(r, sweeps.get(os.path.basename(str(r.get("checkpoint") or "")), []), tail_floor)
            for r in tables.load_runs(os.path.join(directory, "runs"))]


def write_selected(out: str, dataset: str, row_order=None, only_rows=None, analysis: str | None = None,
                   command: str | None = None, tail_floor: float | None = None) -> list[str]:
    """Write ``<out>/<dataset>/selected.md`` and ``selected.csv`` (``selected-tail_floor.*`` with
    ``tail_floor``); return their paths."""
    directory = os.path.join(out, dataset)
    summaries = tables.aggregate(selected_records(out, dataset, analysis, tail_floor),
                                 row_order=row_order, only_rows=only_rows)
    stem = "selected" if tail_floor is None else "selected-tail_floor"
    return tables.write_pair(directory, stem, render_markdown(dataset, summaries, command, tail_floor),
                             tables.render_csv(summaries, command))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.benchmark.selected", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", default="results", help="the benchmark's --out (holding <dataset>/runs/)")
    p.add_argument("--models", default=None, help="comma-separated rows, in table order (default: every row)")
    p.add_argument("--analysis", default=None, help="folder of diagnose JSONs (default: <out>/<dataset>/analysis)")
    p.add_argument("--tail_floor", type=float, default=None, metavar="N10",
                   help="instead: each FlexCode run at the operating point diagnose --tail_floor=N10 chose on "
                   "validation (selected-tail_floor.md / .csv)")
    args = p.parse_args(argv)
    if args.tail_floor is not None and args.tail_floor < 0:
        print(f"error: --tail_floor must be >= 0, got {args.tail_floor:g}", file=sys.stderr)
        return 2
    runs = os.path.join(args.out, args.dataset, "runs")
    if not os.path.isdir(runs):
        print(f"error: no benchmark runs in {runs}", file=sys.stderr)
        return 2
    rows = [r.strip() for r in (args.models or "").split(",") if r.strip()] or None
    command = "python -m recbole_flexcode.benchmark.selected " + " ".join(sys.argv[1:] if argv is None else argv)
    for path in write_selected(args.out, args.dataset, row_order=rows, only_rows=rows, analysis=args.analysis,
                               command=command, tail_floor=args.tail_floor):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
