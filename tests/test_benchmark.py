"""Benchmark runner, tables and cost benchmark (recbole_flexcode.benchmark)."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics

import pytest
import torch

from recbole_flexcode import quick_start
from recbole_flexcode.benchmark import cost, runner, tables
from recbole_flexcode.benchmark.published import published_for

#: settings every model takes (RecBole's and the plugin's shared protocol)
COMMON_ARGS = [
    "--load_col={inter: [user_id, item_id, timestamp], item: [item_id, movie_title, release_year, class]}",
    "--text_fields=[movie_title, release_year, class]",
    "--user_inter_num_interval=[5,inf)",
    "--item_inter_num_interval=[5,inf)",
    "--epochs=1",
    "--hidden_size=16",
    "--inner_size=32",
    "--MAX_ITEM_LIST_LENGTH=10",
    "--show_progress=False",
]
#: settings of the plugin's models only: a RecBole model (SASRec) refuses them as unknown
PLUGIN_ARGS = ["--cf_epochs=1", "--rqvae_epochs=5", "--codebook_size=8"]
TINY_ARGS = COMMON_ARGS + PLUGIN_ARGS


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {r["row"]: r for r in csv.DictReader(f)}


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------- rows
def test_row_names_map_to_models_and_overrides():
    from recbole_flexcode.model.variants import VARIANTS

    assert tuple(runner.FLEXCODE_VARIANTS) == tuple(VARIANTS)
    assert runner.parse_row("SASRec") == runner.RowSpec("SASRec", "SASRec", {})
    assert runner.parse_row("FlexCode").overrides == {"variant": "full"}
    fix = runner.parse_row("FlexCode-fix")
    assert (fix.model, fix.overrides, fix.is_budget_row) == ("FlexCode", {"variant": "fix"}, False)
    assert runner.parse_row("FlexCode-semantic_only").overrides == {"variant": "semantic_only"}
    l5 = runner.parse_row("FlexCode-L5")
    assert (l5.model, l5.overrides, l5.is_budget_row) == ("FlexCode", {"variant": "full", "token_budget": 5}, True)
    assert runner.parse_row("FlexCode-no_align-L4").overrides == {"variant": "no_align", "token_budget": 4}
    assert runner.parse_row("FlexCode-decoupled").overrides == {"variant": "full", "router_mode": "decoupled"}
    assert runner.parse_row("FlexCode-decoupled-L4").overrides == {"variant": "full", "router_mode": "decoupled", "token_budget": 4}
    assert runner.parse_row("FlexCode-item_emb").overrides == {"variant": "full", "history_item_embedding": True,
                                                             "router_mode": "expected_loss"}
    assert runner.parse_row("FlexCode-expected_loss").overrides == {"variant": "full", "router_mode": "expected_loss"}
    rows = runner.build_rows("SASRec,FlexCode,SASRec", "3,4")
    assert [r.name for r in rows] == ["SASRec", "FlexCode", "FlexCode-L3", "FlexCode-L4"]
    assert runner.parse_row("SOLID") == runner.RowSpec("SOLID", "SOLID", {})
    assert runner.parse_row("SOLID-DUET") == runner.RowSpec("SOLID-DUET", "SOLID", {"use_semantics": False})
    assert runner.parse_row("SOLID-static") == runner.RowSpec("SOLID-static", "SOLID", {"dynamic": False})
    assert runner.parse_row("SASRec-h128") == runner.RowSpec("SASRec-h128", "SASRec", {"hidden_size": 128, "inner_size": 512})
    for bad in ("FlexCode-bogus", "FlexCode-L0", "FlexCode-L", "NoSuchModel", "SASRec-x", "", "a/b", "SOLID-x"):
        with pytest.raises(runner.BenchmarkError):
            runner.parse_row(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["--dataset=ml-tiny", "--models=SASRec,FlexCode-bogus"],
        ["--dataset=ml-tiny", "--models=NoSuchModel"],
        ["--dataset=ml-tiny", "--models=SASRec", "--seeds=1,x"],
        ["--dataset=ml-tiny", "--models=SASRec", "--seed=3"],
        ["--dataset=ml-tiny", "--models=SASRec", "notakeyvalue"],
        ["--dataset=ml-tiny", "--models=SASRec", "--threads=0"],
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(quick_start, "run", lambda *a, **k: pytest.fail("run() must not be called"))
    assert runner.main(argv + [f"--out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert not (tmp_path / "ml-tiny").exists()


def test_runner_sets_the_thread_count_like_run_flexcode(tmp_path, monkeypatch):
    """A row run through the runner gets run_flexcode.py's process settings (one torch thread by default)."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        for argv, expect in ((["--threads=2"], 2), ([], 1)):
            assert runner.main(["--dataset=ml-tiny", f"--out={tmp_path}", "--tables-only", *argv]) == 0
            assert torch.get_num_threads() == expect
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- end to end on ml-tiny
def test_runner_end_to_end_resume_and_tables_only(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # RecBole's log/ folder goes here
    out = tmp_path / "results"
    common = ["--seeds=2020", f"--out={out}", f"--data_path={tiny_data}", f"--checkpoint_dir={tmp_path / 'saved'}"]
    # every --key=value goes to every row and SASRec refuses the plugin's settings as unknown, so the
    # FlexCode row with its tiny settings runs first; the second invocation adds SASRec and resumes
    flex_argv = ["--dataset=ml-tiny", "--models=FlexCode-semantic_only", *common, f"--cache_dir={tmp_path / 'cache'}",
                 *TINY_ARGS]
    argv = ["--dataset=ml-tiny", "--models=SASRec,FlexCode-semantic_only", *common, *COMMON_ARGS]
    calls = []
    real_run = quick_start.run

    def counting_run(*args, **kwargs):
        calls.append((args, kwargs))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(quick_start, "run", counting_run)
    assert runner.main(flex_argv) == 0
    stdout = capsys.readouterr().out
    assert "[1/1] FlexCode-semantic_only seed 2020 ... start" in stdout and "ETA" in stdout
    assert runner.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "[1/2] SASRec seed 2020 ... start" in stdout and "[2/2] FlexCode-semantic_only seed 2020 ... skip (done)" in stdout
    assert "ETA" in stdout

    # run() got the row's model, settings, seed and result file
    assert [c[0][0] for c in calls] == ["FlexCode", "SASRec"]
    flex_kwargs = calls[0][1]
    assert flex_kwargs["cmd_args"]["variant"] == "semantic_only" and flex_kwargs["cmd_args"]["seed"] == 2020
    runs = out / "ml-tiny" / "runs"
    assert flex_kwargs["result_file"] == str(runs / "FlexCode-semantic_only-seed2020.json")

    ds_dir = out / "ml-tiny"
    recs = {row: _load(runs / f"{row}-seed2020.json") for row in ("SASRec", "FlexCode-semantic_only")}
    assert not [p for p in os.listdir(runs) if ".tmp" in p]
    for row, rec in recs.items():
        b = rec["benchmark"]
        assert b["row"] == row and b["seed"] == rec["seed"] == 2020
        assert b["inference_users_per_s"] > 0 and b["n_test_users"] == 60
        assert math.isclose(b["inference_users_per_s"], 60 / rec["timings_s"]["test"])
        assert b["peak_memory_bytes"] > 0 and b["train_s"] > 0 and b["wall_s"] >= b["train_s"]
        assert b["device"].startswith(("CPU: ", "GPU: "))
        assert rec["command"].startswith("python -m recbole_flexcode.benchmark ")
    assert recs["FlexCode-semantic_only"]["model_report"]["variant"] == "semantic_only"

    table = _read_csv(ds_dir / "benchmark.csv")
    assert list(table) == ["SASRec", "FlexCode-semantic_only"]
    for row, rec in recs.items():
        t = table[row]
        assert t["n"] == "1" and t["seeds"] == "2020"
        for k in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
            assert float(t[f"{k}_mean"]) == rec["test_result"][k]
            assert t[f"{k}_std"] == ""  # one seed: no std
        for g in ("head", "tail"):
            assert float(t[f"{g}_ndcg@10_mean"]) == rec["popularity_groups"][g]["ndcg@10"]
            assert float(t[f"{g}_recall@10_mean"]) == rec["popularity_groups"][g]["recall@10"]
            assert float(t[f"{g}_users_mean"]) == rec["popularity_groups"][g]["users"]
        assert float(t["inference_users_per_s_mean"]) == rec["benchmark"]["inference_users_per_s"]
        assert float(t["peak_memory_bytes_mean"]) == rec["benchmark"]["peak_memory_bytes"]
        assert t["table_command"].startswith("python -m recbole_flexcode.benchmark --dataset=ml-tiny")
    md = (ds_dir / "benchmark.md").read_text()
    assert "| SASRec | 1 |" in md and "| FlexCode-semantic_only | 1 |" in md
    sas = recs["SASRec"]["test_result"]
    assert f"| SASRec | 1 | {sas['recall@5']:.4f} | {sas['recall@10']:.4f} | {sas['ndcg@5']:.4f} | {sas['ndcg@10']:.4f} |" in md
    assert "Table written by: `python -m recbole_flexcode.benchmark --dataset=ml-tiny" in md
    assert "not measured here" not in md  # no published numbers for ml-tiny
    assert "Token budget" not in md

    # resume: nothing is rerun
    monkeypatch.setattr(quick_start, "run", lambda *a, **k: pytest.fail("finished runs must not be rerun"))
    before = {p: (runs / p).stat().st_mtime_ns for p in os.listdir(runs) if p.endswith(".json")}
    assert runner.main(argv) == 0
    assert capsys.readouterr().out.count("skip (done)") == 2
    assert before == {p: (runs / p).stat().st_mtime_ns for p in os.listdir(runs) if p.endswith(".json")}

    # --tables-only rebuilds the same tables from the JSONs
    csv_before = _read_csv(ds_dir / "benchmark.csv")
    (ds_dir / "benchmark.csv").unlink()
    (ds_dir / "benchmark.md").unlink()
    assert runner.main(["--dataset=ml-tiny", f"--out={out}", "--tables-only"]) == 0
    csv_after = _read_csv(ds_dir / "benchmark.csv")
    assert list(csv_after) == list(csv_before)
    for row in csv_before:
        for key in csv_before[row]:
            if key != "table_command":
                assert csv_after[row][key] == csv_before[row][key], key
    assert "--tables-only" in csv_after["SASRec"]["table_command"]
    assert "| FlexCode-semantic_only | 1 |" in (ds_dir / "benchmark.md").read_text()


# ---------------------------------------------------------------------- aggregation on hand-made runs
def _fake_record(row, seed, ndcg10, recall10=0.1, model=None, overrides=None, head_users=30, train_s=10.0):
    return {
        "model": model or row.split("-")[0],
        "seed": seed,
        "command": "python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty",
        "best_valid_result": {"ndcg@10": ndcg10 / 2},
        "test_result": {"recall@5": recall10 / 2, "recall@10": recall10, "ndcg@5": ndcg10 / 2, "ndcg@10": ndcg10},
        "popularity_groups": {
            "head": {"recall@10": recall10 * 2, "ndcg@10": ndcg10 * 2, "users": head_users},
            "tail": {"recall@10": recall10 / 4, "ndcg@10": ndcg10 / 4, "users": 100 - head_users},
        },
        "timings_s": {"train": train_s, "test": 2.0, "model_init": 1.0},
        "benchmark": {
            "row": row, "model": model or row.split("-")[0], "row_overrides": overrides or {}, "seed": seed,
            "device": "CPU: test", "train_s": train_s, "stages_s": 1.0, "wall_s": train_s + 3,
            "inference_users_per_s": 50.0, "peak_memory_bytes": 2 * 1024**3, "peak_memory_kind": "process peak RSS",
        },
    }


def test_mean_std_aggregation_on_hand_made_runs(tmp_path):
    runs = tmp_path / "Amazon_Beauty" / "runs"
    runs.mkdir(parents=True)
    sas = [0.030, 0.034, 0.038]
    flex = [0.040, 0.043, 0.049]
    train = [10.0, 12.0, 17.0]
    for seed, v, tr in zip((1, 2, 3), sas, train):
        runner.write_json_atomic(str(runs / f"SASRec-seed{seed}.json"), _fake_record("SASRec", seed, v, train_s=tr))
    for seed, v in zip((1, 2, 3), flex):
        rec = _fake_record("FlexCode-fix", seed, v, model="FlexCode", overrides={"variant": "fix"})
        runner.write_json_atomic(str(runs / f"FlexCode-fix-seed{seed}.json"), rec)
    for budget, v in ((4, 0.05), (3, 0.045)):
        rec = _fake_record(f"FlexCode-L{budget}", 1, v, model="FlexCode", overrides={"variant": "full", "token_budget": budget})
        runner.write_json_atomic(str(runs / f"FlexCode-L{budget}-seed1.json"), rec)
    # an unfinished run (no benchmark section), a temporary file and a corrupt file are ignored
    unfinished = _fake_record("SASRec", 4, 0.9)
    del unfinished["benchmark"]
    runner.write_json_atomic(str(runs / "SASRec-seed4.json"), unfinished)
    (runs / "SASRec-seed5.json.tmp123").write_text("{")
    (runs / "SASRec-seed6.json").write_text("{ not json")

    summaries = tables.aggregate(tables.load_runs(str(runs)), row_order=["SASRec", "FlexCode-fix"])
    by_row = {s["row"]: s for s in summaries}
    assert [s["row"] for s in summaries] == ["SASRec", "FlexCode-fix", "FlexCode-L3", "FlexCode-L4"]
    s = by_row["SASRec"]
    assert s["n"] == 3 and s["seeds"] == [1, 2, 3]
    assert math.isclose(s["metrics"]["ndcg@10"]["mean"], statistics.mean(sas))
    assert math.isclose(s["metrics"]["ndcg@10"]["std"], statistics.stdev(sas))
    assert math.isclose(s["metrics"]["train_s"]["mean"], 13.0)
    assert math.isclose(s["metrics"]["train_s"]["std"], statistics.stdev(train))
    assert math.isclose(s["metrics"]["head_ndcg@10"]["mean"], statistics.mean(sas) * 2)
    f = by_row["FlexCode-fix"]
    assert math.isclose(f["metrics"]["recall@5"]["mean"], 0.05) and math.isclose(f["metrics"]["recall@5"]["std"], 0.0, abs_tol=1e-12)
    assert math.isclose(f["ndcg10_gain_vs_sasrec_pct"], (statistics.mean(flex) / statistics.mean(sas) - 1) * 100)
    assert s["ndcg10_gain_vs_sasrec_pct"] is None
    assert by_row["FlexCode-L4"]["metrics"]["ndcg@10"]["std"] is None  # one seed

    assert tables.mean_std([1.0, None, float("nan"), 3.0]) == {"mean": 2.0, "std": math.sqrt(2.0), "n": 2}
    assert tables.mean_std([]) == {"mean": None, "std": None, "n": 0}

    tables.write_tables(str(tmp_path), "Amazon_Beauty", row_order=["SASRec", "FlexCode-fix"], command="CMD")
    table = _read_csv(tmp_path / "Amazon_Beauty" / "benchmark.csv")
    assert math.isclose(float(table["FlexCode-fix"]["ndcg@10_mean"]), statistics.mean(flex))
    assert math.isclose(float(table["FlexCode-fix"]["ndcg@10_std"]), statistics.stdev(flex))
    assert table["FlexCode-L4"]["token_budget"] == "4" and table["FlexCode-fix"]["variant"] == "fix"
    md = (tmp_path / "Amazon_Beauty" / "benchmark.md").read_text()
    mean, std = statistics.mean(flex), statistics.stdev(flex)
    assert f"| FlexCode-fix | 3 | 0.0500 ± 0.0000 | 0.1000 ± 0.0000 | {mean / 2:.4f} ± {std / 2:.4f} | {mean:.4f} ± {std:.4f} |" in md
    gain = (statistics.mean(flex) / statistics.mean(sas) - 1) * 100
    assert f"{gain:+.1f}%" in md
    assert "2.0 GiB (process peak RSS)" in md and "Table written by: `CMD`" in md
    # budget rows in their own table, ordered by L
    budget_part = md.split("## Token budget")[1]
    assert "FlexCode-L3" in budget_part and budget_part.index("FlexCode-L3") < budget_part.index("FlexCode-L4")
    assert "FlexCode-L3" not in md.split("## Token budget")[0]
    # published numbers in a separate, clearly marked block after our tables
    marker = "quoted from the paper / other reports, NOT measured here"
    assert marker in md and md.index(marker) > md.index("## Token budget")
    published = md.split(marker)[1]
    for e in published_for("Amazon_Beauty"):
        assert f"{e['ndcg@10']:.4f}" in published and e["source"] in published
    assert "| FlexCode | 0.0578 | 0.0769 | 0.0415 | 0.0483 |" in published  # R@5, R@10, N@5, N@10

    # --tables-only with explicit rows restricts the tables to them
    assert runner.main(["--dataset=Amazon_Beauty", f"--out={tmp_path}", "--tables-only", "--models=FlexCode-fix"]) == 0
    assert list(_read_csv(tmp_path / "Amazon_Beauty" / "benchmark.csv")) == ["FlexCode-fix"]


def test_gain_vs_sasrec_uses_the_seeds_both_rows_ran(tmp_path):
    runs = tmp_path / "Amazon_Beauty" / "runs"
    runs.mkdir(parents=True)
    for seed, v in ((1, 0.030), (2, 0.040), (3, 0.050)):
        runner.write_json_atomic(str(runs / f"SASRec-seed{seed}.json"), _fake_record("SASRec", seed, v))
    # one seed, the weakest SASRec seed: against the three-seed mean (0.040) it would read -25 %
    runner.write_json_atomic(str(runs / "FlexCode-seed1.json"), _fake_record("FlexCode", 1, 0.033))
    # seeds 2 and 3, plus a seed SASRec never ran (left out of the comparison)
    for seed, v in ((2, 0.044), (3, 0.055), (9, 0.001)):
        runner.write_json_atomic(str(runs / f"FlexCode-fix-seed{seed}.json"),
                                 _fake_record("FlexCode-fix", seed, v, model="FlexCode", overrides={"variant": "fix"}))
    by_row = {s["row"]: s for s in tables.aggregate(tables.load_runs(str(runs)))}
    one = by_row["FlexCode"]
    assert math.isclose(one["ndcg10_gain_vs_sasrec_pct"], (0.033 / 0.030 - 1) * 100)
    assert one["ndcg10_gain"]["seeds"] == [1] and one["ndcg10_gain"]["subset"]
    two = by_row["FlexCode-fix"]
    assert math.isclose(two["ndcg10_gain_vs_sasrec_pct"], ((0.044 + 0.055) / (0.040 + 0.050) - 1) * 100)
    assert two["ndcg10_gain"]["seeds"] == [2, 3]
    assert by_row["SASRec"]["ndcg10_gain"] is None

    tables.write_tables(str(tmp_path), "Amazon_Beauty")
    md = (tmp_path / "Amazon_Beauty" / "benchmark.md").read_text()
    assert "| +10.0% (seed 1) |" in md and "| +10.0% (seeds 2, 3) |" in md
    table = _read_csv(tmp_path / "Amazon_Beauty" / "benchmark.csv")
    assert table["FlexCode-fix"]["ndcg10_gain_seeds"] == "2 3" and table["SASRec"]["ndcg10_gain_seeds"] == ""


def test_published_numbers_have_sources():
    entries = published_for("Amazon_Beauty")
    assert {e["model"] for e in entries} >= {"SASRec", "TIGER", "URL", "FlexCode-Fix", "FlexCode", "RPG"}
    flex = next(e for e in entries if e["model"] == "FlexCode")
    assert (flex["recall@5"], flex["ndcg@5"], flex["recall@10"], flex["ndcg@10"]) == (0.0578, 0.0415, 0.0769, 0.0483)
    assert all(e["source"] for e in entries)
    assert published_for("ml-100k") == []


# ---------------------------------------------------------------------- runner logic with a stand-in run()
def _stub_run(calls, fail_rows=(), interrupt_rows=()):
    def run(model, dataset, config_file_list=None, cmd_args=None, saved=True, result_file=None, command=None, **kw):
        calls.append((model, dict(cmd_args)))
        row = os.path.basename(result_file).rsplit("-seed", 1)[0]
        if row in interrupt_rows:
            raise KeyboardInterrupt
        if row in fail_rows:
            raise RuntimeError("boom")
        rec = _fake_record(row, cmd_args["seed"], 0.01 * cmd_args["seed"], model=model)
        del rec["benchmark"]
        rec.update({"n_test_users": 100, "machine": {"device": "cpu"}, "command": command})
        runner.write_json_atomic(result_file, rec)  # as run() does
        return {**rec, "result_file": result_file}

    return run


def test_runner_resume_failure_and_interrupt_with_stub_run(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(quick_start, "run", _stub_run(calls, fail_rows=("GRU4Rec",)))
    argv = ["--dataset=D", "--models=SASRec,GRU4Rec,FlexCode-cf_only", "--budgets=4", "--seeds=1,2",
            f"--out={tmp_path}", "--epochs=3", "--variant=fix"]
    assert runner.main(argv) == 1  # one row failed, the others ran
    out = capsys.readouterr().out
    assert "[3/8] GRU4Rec seed 1 ... FAILED" in out and "[8/8] FlexCode-L4 seed 2 ... done" in out
    assert len(calls) == 8
    flex = [c for c in calls if c[0] == "FlexCode"]
    # the row's own settings win over --key=value given to every run; those reach every run
    assert flex[0][1] == {"epochs": 3, "variant": "cf_only", "seed": 1}
    assert flex[-1][1] == {"epochs": 3, "variant": "full", "token_budget": 4, "seed": 2}
    runs = tmp_path / "D" / "runs"
    assert sorted(os.listdir(runs)) == sorted(
        f"{r}-seed{s}.json" for r in ("SASRec", "FlexCode-cf_only", "FlexCode-L4") for s in (1, 2)
    )
    rec = _load(runs / "SASRec-seed2.json")
    assert rec["benchmark"]["inference_users_per_s"] == 50.0  # 100 users / 2 s
    table = _read_csv(tmp_path / "D" / "benchmark.csv")
    assert list(table) == ["SASRec", "FlexCode-cf_only", "FlexCode-L4"]
    assert math.isclose(float(table["SASRec"]["ndcg@10_mean"]), 0.015)

    # a run interrupted after run() wrote its JSON but before the benchmark section: rerun next time;
    # a run interrupted inside run(): no JSON at all
    partial = _load(runs / "SASRec-seed1.json")
    del partial["benchmark"]
    runner.write_json_atomic(str(runs / "SASRec-seed1.json"), partial)
    calls.clear()
    monkeypatch.setattr(quick_start, "run", _stub_run(calls, interrupt_rows=("GRU4Rec",)))
    assert runner.main(argv) == 130
    out = capsys.readouterr().out
    assert "[1/8] SASRec seed 1 ... start" in out and "[2/8] SASRec seed 2 ... skip (done)" in out
    assert [c[0] for c in calls] == ["SASRec", "GRU4Rec"]
    assert "benchmark" in _load(runs / "SASRec-seed1.json")
    assert not any(p.startswith("GRU4Rec") or ".tmp" in p for p in os.listdir(runs))


# ---------------------------------------------------------------------- cost benchmark
def test_synthetic_paths_are_unique_and_in_vocabulary():
    paths, vocab, stats = cost.synthetic_paths(3000, levels=3, codebook_size=8, seed=1)  # 512 tuples: many collisions
    assert paths.shape == (3000, 4)
    assert torch.unique(paths, dim=0).shape[0] == 3000
    assert stats["collision_rate"] > 0.5 and stats["n_disamb"] == stats["max_group_size"]
    assert int(paths.min()) >= 1 and int(paths.max()) < vocab
    for level in range(3):
        assert int(paths[:, level].min()) >= 1 + 8 * level and int(paths[:, level].max()) < 1 + 8 * (level + 1)


def test_cost_benchmark_tiny_sizes(tmp_path, capsys):
    out = tmp_path / "cost"
    argv = ["--sizes=500,2000", "--device=cpu", f"--out={out}", "--batch_size=8", "--repeats=1", "--beam_size=12",
            "--topk=10"]
    assert cost.main(argv) == 0
    with open(out / "cost.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["n_items"]), r["method"].split()[0]) for r in rows] == [
        (500, "generative"), (500, "full-sort"), (2000, "generative"), (2000, "full-sort")
    ]
    for r in rows:
        assert float(r["users_per_s"]) > 0 and float(r["ms_per_batch"]) > 0
        assert r["beam_valid"] == "True" and int(r["peak_memory_bytes"]) > 0
    assert all(float(r["beam_max_abs_err"]) < 1e-3 for r in rows if r["method"].startswith("generative"))
    assert (out / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "cost.md").read_text()
    assert "Command: `python -m recbole_flexcode.benchmark.cost --sizes=500,2000" in md and "Machine: " in md
    assert "| 2,000 | generative (trie beam search) |" in md


def test_cost_beam_check_detects_wrong_results():
    torch.manual_seed(0)
    paths, vocab, _ = cost.synthetic_paths(300, levels=3, codebook_size=8, seed=0)
    gen = cost.SemanticIDGenerator(vocab, 4, 5, hidden_size=16, n_heads=2, inner_size=32, dropout=0.0).eval()
    trie = cost.PrefixTrie(paths)
    items = torch.cat([torch.zeros(1, 16), gen.token_embedding(paths[:, :3]).sum(1)])
    seq = torch.randint(1, 301, (4, 5))
    memory, pad = gen.encode_history(items, seq, torch.full((4,), 5))
    fn = cost.last_position(lambda p: gen.decode_log_probs(memory, pad, p))
    ids, scores = cost.constrained_beam_search(fn, trie, 4, 6)
    assert cost.check_beam(gen, memory, pad, paths, trie, ids, scores, 300)[0]
    assert not cost.check_beam(gen, memory, pad, paths, trie, ids, scores - 0.5, 300)[0]  # wrong scores
    dup = ids.clone()
    dup[:, 1] = dup[:, 0]
    assert not cost.check_beam(gen, memory, pad, paths, trie, dup, scores, 300)[0]  # repeated item


def test_cost_bad_arguments(tmp_path, capsys):
    assert cost.main(["--sizes=10,x", f"--out={tmp_path}"]) == 2
    assert cost.main(["--sizes=0", f"--out={tmp_path}"]) == 2
    if not torch.cuda.is_available():
        assert cost.main(["--device=cuda", f"--out={tmp_path}"]) == 2


def test_sampled_metrics_get_their_own_table(tmp_path):
    """GAUC runs (SOLID under uni100) have no Recall/NDCG; their metrics must still be tabulated."""
    runs = tmp_path / "ml-100k" / "runs"
    runs.mkdir(parents=True)
    for seed, g in ((1, 0.80), (2, 0.82)):
        rec = _fake_record("SOLID", seed, 0.0)
        rec["test_result"] = {"gauc": g}
        rec["best_valid_result"] = {"gauc": g + 0.01}
        rec["popularity_groups"] = None
        runner.write_json_atomic(str(runs / f"SOLID-seed{seed}.json"), rec)
    # a full-ranking row beside them: it has no GAUC and SOLID has no Recall/NDCG
    runner.write_json_atomic(str(runs / "SASRec-seed1.json"), _fake_record("SASRec", 1, 0.05))
    tables.write_tables(str(tmp_path), "ml-100k")
    md = (tmp_path / "ml-100k" / "benchmark.md").read_text()
    assert "## Other metrics" in md
    assert "| SOLID | 2 | 0.8100 ± 0.0141 | 0.8200 ± 0.0141 |" in md
    accuracy = md.split("## Accuracy (test)")[1].split("## Popularity groups")[0]
    assert "| SASRec | 1 |" in accuracy and "SOLID" not in accuracy
    other = md.split("## Other metrics")[1]
    assert "SASRec" not in other.split("Cost columns")[0]
    cost = md.split("## Cost")[1].split("## Other metrics")[0]
    assert "| SOLID | 2 |" in cost and "| SASRec | 1 |" in cost


def test_adopt_takes_in_run_flexcode_results(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results"
    runs = out / "ml-tiny" / "runs"
    common = [f"--data_path={tiny_data}", f"--checkpoint_dir={tmp_path / 'saved'}", *COMMON_ARGS]  # SASRec: no plugin settings
    path = runs / "SASRec-seed7.json"
    assert quick_start.main(["--model=SASRec", "--dataset=ml-tiny", "--seed=7", f"--result_file={path}", *common]) == 0
    rec = _load(path)
    assert "benchmark" not in rec and rec["command"].startswith("python run_flexcode.py ")
    # not counted before adoption
    assert runner.main(["--dataset=ml-tiny", f"--out={out}", "--tables-only"]) == 0
    assert not (out / "ml-tiny" / "benchmark.csv").exists() or "SASRec" not in _read_csv(out / "ml-tiny" / "benchmark.csv")
    capsys.readouterr()

    assert runner.main(["--dataset=ml-tiny", f"--out={out}", "--tables-only", "--adopt"]) == 0
    assert f"adopted {path}" in capsys.readouterr().out
    b = _load(path)["benchmark"]
    assert b["row"] == "SASRec" and b["seed"] == 7 and b["model"] == "SASRec"
    assert b["train_s"] == rec["timings_s"]["train"] and b["peak_memory_bytes"] is None
    assert math.isclose(b["inference_users_per_s"], rec["n_test_users"] / rec["timings_s"]["test"])
    assert b["device"].startswith("CPU: ") and rec["machine"]["cpu"] in b["device"]
    assert math.isclose(b["wall_s"], sum(v for v in rec["timings_s"].values() if isinstance(v, (int, float))))
    table = _read_csv(out / "ml-tiny" / "benchmark.csv")
    assert table["SASRec"]["n"] == "1" and float(table["SASRec"]["ndcg@10_mean"]) == rec["test_result"]["ndcg@10"]
    md = (out / "ml-tiny" / "benchmark.md").read_text()
    assert "python run_flexcode.py --model=SASRec" in md  # the producing command is listed

    # adopted runs count as finished for resume; a second adoption changes nothing
    assert runner.load_finished(str(path)) is not None
    before = path.stat().st_mtime_ns
    assert runner.main(["--dataset=ml-tiny", f"--out={out}", "--tables-only", "--adopt"]) == 0
    assert path.stat().st_mtime_ns == before

    # a plugin model's stage timings (a nested section) count towards its wall time
    staged = dict(rec, model="FlexCode", seed=8, timings_s={**rec["timings_s"], "stages": {"text": 1.5, "tokenizer": 2.5}})
    (runs / "FlexCode-seed8.json").write_text(json.dumps(staged))
    assert runner.main(["--dataset=ml-tiny", f"--out={out}", "--tables-only", "--adopt"]) == 0
    b8 = _load(runs / "FlexCode-seed8.json")["benchmark"]
    assert math.isclose(b8["wall_s"], b["wall_s"] + 4.0) and b8["stages_s"] == 4.0
    (runs / "FlexCode-seed8.json").unlink()

    # a file whose name contradicts its content is refused, not adopted under the wrong row
    wrong = runs / "GRU4Rec-seed7.json"
    wrong.write_text(json.dumps(rec))
    assert runner.main(["--dataset=ml-tiny", f"--out={out}", "--tables-only", "--adopt"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert "benchmark" not in _load(wrong)


def test_cost_table_shows_epochs_best_epoch_and_time_budget_stops(tmp_path):
    from recbole_flexcode.benchmark import tables

    runs = tmp_path / "Amazon_Beauty" / "runs"
    runs.mkdir(parents=True)
    a = _fake_record("SASRec", 1, 0.03)
    a["training"] = {"epochs_run": 20, "best_epoch": 14, "train_time_budget_s": None, "stopped_by_time_budget": False}
    b = _fake_record("SASRec", 2, 0.04)
    b["training"] = {"epochs_run": 9, "best_epoch": 8, "train_time_budget_s": 60.0, "stopped_by_time_budget": True}
    old = _fake_record("SASRec", 3, 0.05)  # written before runs recorded their epochs
    for seed, rec in zip((1, 2, 3), (a, b, old)):
        runner.write_json_atomic(str(runs / f"SASRec-seed{seed}.json"), rec)
    [summary] = tables.aggregate(tables.load_runs(str(runs)))
    assert summary["epochs"] == ["20 (15)", "9 (9)†", "?"]
    md = tables.render_markdown("Amazon_Beauty", [summary], None)
    cost_line = next(line for line in md.splitlines() if line.startswith("| SASRec") and "20 (15)" in line)
    assert cost_line.rstrip(" |").endswith("20 (15), 9 (9)†, ?")


def test_valid_curves_from_run_json_and_recbole_log(tmp_path):
    from recbole_flexcode.benchmark import curves

    log = tmp_path / "run.log"
    log.write_text(
        "24 Nov 09:30    INFO  epoch 0 evaluating [time: 4.88s, valid_score: 0.010000]\n"
        "noise\n24 Nov 09:31    INFO  epoch 1 evaluating [time: 4.85s, valid_score: 0.020500]\n",
        encoding="utf-8",
    )
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"training": {"valid_curve": [0.03, 0.025, 0.04]}}), encoding="utf-8")
    out = tmp_path / "a" / "curves"
    assert curves.main([f"A={log}", f"B={run}", f"--out={out}"]) == 0
    with open(str(out) + ".csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["row", "epoch", "valid_score"], ["A", "1", "0.01"], ["A", "2", "0.0205"],
                    ["B", "1", "0.03"], ["B", "2", "0.025"], ["B", "3", "0.04"]]
    assert os.path.getsize(str(out) + ".png") > 1000
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"test_result": {}}), encoding="utf-8")
    assert curves.main([f"A={old}", f"--out={out}"]) == 2


def test_budget_table_shows_the_default_budget_from_the_flexcode_row(tmp_path):
    """FlexCode at its default L is the FlexCode row: the L table shows it instead of a rerun."""
    runs = tmp_path / "D" / "runs"
    runs.mkdir(parents=True)
    for seed, v in ((1, 0.040), (2, 0.044)):
        rec = _fake_record("FlexCode", seed, v, model="FlexCode", overrides={"variant": "full"})
        rec["model_report"] = {"token_budget": 3}
        runner.write_json_atomic(str(runs / f"FlexCode-seed{seed}.json"), rec)
    for budget, v in ((5, 0.05), (4, 0.046)):
        rec = _fake_record(f"FlexCode-L{budget}", 1, v, model="FlexCode", overrides={"variant": "full", "token_budget": budget})
        rec["model_report"] = {"token_budget": budget}
        runner.write_json_atomic(str(runs / f"FlexCode-L{budget}-seed1.json"), rec)
    tables.write_tables(str(tmp_path), "D", command="CMD")
    budget_part = (tmp_path / "D" / "benchmark.md").read_text().split("## Token budget")[1]
    accuracy = budget_part.split("\n\n")[1]
    labels = [line.split(" | ")[0].lstrip("| ") for line in accuracy.splitlines()[2:]]
    assert labels == ["FlexCode (L=3: row FlexCode)", "FlexCode-L4", "FlexCode-L5"]
    assert "| FlexCode (L=3: row FlexCode) | 2 | " in accuracy and f"{0.042:.4f} ± " in accuracy

    # once an explicit L3 row exists it is shown, not the copy
    rec = _fake_record("FlexCode-L3", 1, 0.041, model="FlexCode", overrides={"variant": "full", "token_budget": 3})
    runner.write_json_atomic(str(runs / "FlexCode-L3-seed1.json"), rec)
    tables.write_tables(str(tmp_path), "D", command="CMD")
    budget_part = (tmp_path / "D" / "benchmark.md").read_text().split("## Token budget")[1]
    assert "row FlexCode)" not in budget_part and "| FlexCode-L3 | 1 |" in budget_part


def test_runner_stage_tokenize_builds_caches_and_writes_no_runs(tiny_data, tmp_path, monkeypatch, capsys):
    """``--stage=tokenize`` prepares every row's cached stages; nothing is trained or recorded."""
    from recbole.trainer import Trainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: pytest.fail("stage=tokenize must not train"))
    out = tmp_path / "results"
    argv = [
        "--dataset=ml-tiny", "--models=FlexCode-cf_only", "--seeds=2020,2021", f"--out={out}",
        f"--data_path={tiny_data}", f"--cache_dir={tmp_path / 'cache'}", f"--checkpoint_dir={tmp_path / 'saved'}",
        *TINY_ARGS, "--stage=tokenize",
    ]
    assert runner.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("stages built and cached") == 2
    runs = out / "ml-tiny" / "runs"
    assert not runs.exists() or not list(runs.glob("*.json"))
    cf = sorted(p.name for p in (tmp_path / "cache" / "ml-tiny").glob("cf_emb-*"))
    assert len(cf) == 2  # one CF SASRec per seed, cached for the runs that will train
    toks = [p for p in (tmp_path / "cache" / "ml-tiny").glob("tokenizer-*") if p.is_dir()]
    assert len(toks) == 2  # and one item tokenizer per seed
    # a finished run of the same row and seed (a GPU machine's) neither skips the stages nor gets its
    # tables rewritten
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "FlexCode-cf_only-seed2020.json").write_text(json.dumps({"benchmark": {}, "test_result": {}}))
    assert runner.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("stages built and cached") == 2 and "skip (done)" not in printed
    assert not (out / "ml-tiny" / "benchmark.md").exists()


def test_each_row_gets_only_the_settings_its_model_accepts(tiny_data, tmp_path, monkeypatch, capsys):
    """A FlexCode-only setting in a mixed run reaches the FlexCode row, not SASRec's; a setting no row
    accepts, or a bad value, fails before anything runs."""
    from recbole_flexcode.benchmark import runner

    seen = {}

    def fake_run(spec, seed, dataset, path, overrides, config_files, command):
        seen[spec.name] = runner.row_overrides(spec, overrides, dataset, config_files)
        raise runner.BenchmarkError("stop here")

    monkeypatch.setattr(runner, "run_one", fake_run)
    base = [f"--dataset=ml-tiny", f"--data_path={tiny_data}", f"--out={tmp_path / 'out'}", "--seeds=2020"]
    runner.main([*base, "--models=SASRec", "--cf_epochs=1", "--learning_rate=0.01"])
    assert "no row accepts --cf_epochs" in capsys.readouterr().err
    runner.main([*base, "--models=SASRec,FlexCode", "--cf_epochs=1", "--learning_rate=0.01"])
    capsys.readouterr()
    assert "cf_epochs" not in seen["SASRec"] and seen["SASRec"]["learning_rate"] == 0.01
    seen.clear()
    assert runner.main([*base, "--models=SASRec,FlexCode", "--token_budget=abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: row FlexCode") and "token_budget" in err and not seen


def test_tokenizer_comparison_writes_one_row_per_tokenizer(tiny_data, tmp_path, monkeypatch):
    """``python -m recbole_flexcode.benchmark.tokenizers``: RQ-VAE (fixed, converged) and rkmeans on the same items."""
    import json

    from recbole_flexcode.benchmark import tokenizers

    monkeypatch.chdir(tmp_path)
    candidates = (tokenizers.CANDIDATES[0], (tokenizers.CANDIDATES[1][0], {"kind": "rqvae", "patience": 5, "epochs": 300}),
                  tokenizers.CANDIDATES[2])
    monkeypatch.setattr(tokenizers, "CANDIDATES", candidates)
    out = tmp_path / "tok"
    args = ["--dataset=ml-tiny", f"--data_path={tiny_data}", f"--out={out}", "--levels=2", "--codebook_size=8",
            "--rqvae_epochs=20", "--rqvae_hidden_sizes=[16]", "--code_dim=8", f"--cache_dir={tmp_path / 'cache'}",
            "--load_col={inter: [user_id, item_id, timestamp], item: [item_id, movie_title, release_year, class]}",
            "--text_fields=[movie_title, release_year, class]"]
    assert tokenizers.main(args) == 0
    data = json.loads((out / "tokenizers.json").read_text())
    assert [r["tokenizer"] for r in data["rows"]] == [name for name, _ in tokenizers.CANDIDATES]
    fixed, converged, rkmeans = data["rows"]
    assert fixed["fit_result"]["epochs_run"] == 20 and 5 < converged["fit_result"]["epochs_run"] <= 300
    for r in data["rows"]:
        st = r["stats"]["semantic"]
        assert 0 < st["recon_mse"] < float("inf") and len(st["levels"]) == 2
        assert all(1 <= lv["used_codes"] <= 8 for lv in st["levels"])
    assert rkmeans["stats"]["semantic"]["recon_mse"] < 1.0  # k-means never leaves more than the variance
    # residual k-means: each level can only lower the error left by the previous one
    levels = rkmeans["stats"]["semantic"]["levels"]
    assert levels[1]["residual_mse"] <= levels[0]["residual_mse"]
    assert "| rkmeans (faiss) |" in (out / "tokenizers.md").read_text()


@pytest.mark.parametrize("row", [f"SASRec-{name}" for name in runner.SASREC_ROWS])
def test_every_sasrec_tuning_row_reaches_sasrec_over_the_dataset_yaml(row):
    """Each SASRec grid row is a valid SASRec configuration on Beauty, and its setting wins over the
    dataset YAML (``MAX_ITEM_LIST_LENGTH: 20`` there)."""
    from recbole_flexcode.config import FlexConfig

    spec = runner.parse_row(row)
    config = FlexConfig("SASRec", "Amazon_Beauty", cmd_args=dict(spec.overrides))
    for key, value in spec.overrides.items():
        assert config[key] == value, key


def test_every_row_of_the_prepared_gpu_command_parses():
    """A misspelt row in scripts/gpu_issue13.sh would cost a scarce GPU window; catch it here."""
    import re
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / "scripts" / "gpu_issue13.sh").read_text()
    rows = [row for line in re.findall(r"^for row in (.*?); do", script, flags=re.M) for row in line.split()]
    assert "SASRec" in rows and "FlexCode-fix_cf1_dropout01_last" in rows
    for row in rows:
        runner.parse_row(row)
