"""Tables at the inference settings chosen on validation (recbole_flexcode.benchmark.selected)."""

from __future__ import annotations

import csv
import json
import math
import os

import pytest

from recbole_flexcode import diagnose
from recbole_flexcode.benchmark import runner, selected

from test_benchmark import TINY_ARGS, _fake_record


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {r["row"]: r for r in csv.DictReader(f)}


def _sweep(seed, checkpoint, valid, test, candidates=20, with_checkpoint=True, shrink=None):
    """A diagnose JSON that tested ``candidates`` (and ``item_head_shrink``, when given; older JSONs have
    no such key) at valid/test N@10 as given against the trained K = 0."""
    groups = {"head": {"recall@10": 0.3, "ndcg@10": test * 2, "users": 30},
              "tail": {"recall@10": 0.01, "ndcg@10": test / 3, "users": 70}}
    diag = {
        "command": f"python -m recbole_flexcode.diagnose {checkpoint} --trust --candidates_sweep={candidates}",
        "dataset": "Amazon_Beauty", "seed": seed,
        "rescore_sweep": {
            "valid_metric": "ndcg@10", "trained_weight": 1.0, "trained_candidates": 0, "trained_prior": 0.0,
            "weights": [{"rescore_weight": 1.0, "candidates": candidates, "prior": 0.0,
                         "valid": {"recall@10": 0.2, "ndcg@10": valid}}],
            "chosen_weight": 1.0, "chosen_candidates": candidates, "chosen_prior": 0.0,
            "test_at_chosen": {"recall@5": 0.05, "recall@10": 0.11, "ndcg@5": test / 2, "ndcg@10": test, "groups": groups},
            "test_at_trained": {"recall@10": 0.1, "ndcg@10": 0.0},
        },
    }
    if with_checkpoint:
        diag["checkpoint"] = f"/abs/{checkpoint}"
    if shrink is not None:
        sweep = diag["rescore_sweep"]
        sweep.update(trained_shrink=0.0, chosen_shrink=shrink)
        sweep["weights"] = [{**sweep["weights"][0], "shrink": 0.0, "valid": {"ndcg@10": 0.0}},
                            {**sweep["weights"][0], "shrink": shrink}]
    return diag


def test_selection_uses_validation_only_and_keeps_the_run_on_ties(tmp_path):
    runs = tmp_path / "Amazon_Beauty" / "runs"
    analysis = tmp_path / "Amazon_Beauty" / "analysis"
    runs.mkdir(parents=True)
    analysis.mkdir()
    for seed, v in ((1, 0.030), (2, 0.034)):
        runner.write_json_atomic(str(runs / f"SASRec-seed{seed}.json"), _fake_record("SASRec", seed, v))
    # run valid N@10 = test / 2 (hand-made records): seed 1 trained 0.040 (valid 0.020), seed 2 0.044 (valid 0.022)
    for seed, v in ((1, 0.040), (2, 0.044)):
        rec = _fake_record("FlexCode-fix", seed, v, model="FlexCode", overrides={"variant": "fix"})
        rec["checkpoint"] = f"saved/FlexCode-seed{seed}.pth"
        runner.write_json_atomic(str(runs / f"FlexCode-fix-seed{seed}.json"), rec)
    # seed 1: K20 with shrinkage τ = 10 better on validation (0.025 > 0.020), so its test 0.050 is reported
    runner.write_json_atomic(str(analysis / "k20-1.json"), _sweep(1, "saved/FlexCode-seed1.pth", 0.025, 0.050, shrink=10.0))
    # seed 2: K20 worse on validation though far better on test: the run's own result stays;
    # an equal validation (K50) keeps the run as well; this file has no checkpoint field (older diagnose)
    runner.write_json_atomic(str(analysis / "k20-2.json"), _sweep(2, "saved/FlexCode-seed2.pth", 0.021, 0.090))
    runner.write_json_atomic(str(analysis / "k50-2.json"),
                             _sweep(2, "saved/FlexCode-seed2.pth", 0.022, 0.095, candidates=50, with_checkpoint=False))
    # a sweep of another seed's run with the same checkpoint name is ignored
    runner.write_json_atomic(str(analysis / "other.json"), _sweep(3, "saved/FlexCode-seed1.pth", 0.9, 0.9))

    assert selected.main(["--dataset=Amazon_Beauty", f"--out={tmp_path}", "--models=SASRec,FlexCode-fix"]) == 0
    table = _read_csv(tmp_path / "Amazon_Beauty" / "selected.csv")
    assert list(table) == ["SASRec", "FlexCode-fix"]
    assert math.isclose(float(table["FlexCode-fix"]["ndcg@10_mean"]), (0.050 + 0.044) / 2)
    assert math.isclose(float(table["FlexCode-fix"]["valid_ndcg@10_mean"]), (0.025 + 0.022) / 2)
    assert math.isclose(float(table["FlexCode-fix"]["tail_ndcg@10_mean"]), (0.050 / 3 + 0.044 / 4) / 2)
    assert math.isclose(float(table["SASRec"]["ndcg@10_mean"]), 0.032)
    md = (tmp_path / "Amazon_Beauty" / "selected.md").read_text()
    assert "| FlexCode-fix | 2 | 1 / 2 | K20 τ10 / K0 |" in md and "| SASRec | 2 | 1 / 2 | – / – |" in md
    gain = ((0.050 + 0.044) / 2 / 0.032 - 1) * 100
    assert f"{gain:+.1f}%" in md
    assert "--candidates_sweep=20" in md.split("Inference settings evaluated by:")[1]
    # the benchmark's own tables are untouched
    assert not (tmp_path / "Amazon_Beauty" / "benchmark.md").exists()

    assert selected.main(["--dataset=Amazon_Beauty", f"--out={tmp_path / 'none'}"]) == 2


def _floor_sweep(seed, checkpoint, floor, chosen, at_floor):
    """A diagnose JSON of a τ sweep with ``--tail_floor=floor``: ``chosen`` and ``at_floor`` are
    ``(τ, valid N@10, test N@10, test tail N@10)`` (``at_floor`` None: no setting reached the floor)."""
    def row(tau, valid):
        return {"rescore_weight": 1.0, "candidates": 20, "prior": 0.0, "shrink": tau, "valid": {"ndcg@10": valid}}

    def test(n10, tail):
        return {"recall@10": 0.1, "ndcg@10": n10, "groups": {"head": {"ndcg@10": 0.1}, "tail": {"ndcg@10": tail}}}

    sweep = {"valid_metric": "ndcg@10", "trained_weight": 1.0, "trained_candidates": 20, "trained_prior": 0.0,
             "trained_shrink": chosen[0], "chosen_weight": 1.0, "chosen_candidates": 20, "chosen_prior": 0.0,
             "chosen_shrink": chosen[0], "weights": [row(chosen[0], chosen[1])],
             "test_at_chosen": test(*chosen[2:]), "test_at_trained": test(*chosen[2:]), "tail_floor": floor,
             "floor_weight": None, "floor_candidates": None, "floor_prior": None, "floor_shrink": None,
             "test_at_floor": None}
    if at_floor is not None:
        sweep.update(floor_weight=1.0, floor_candidates=20, floor_prior=0.0, floor_shrink=at_floor[0],
                     test_at_floor=test(*at_floor[2:]))
        sweep["weights"].append(row(at_floor[0], at_floor[1]))
    return {"command": f"python -m recbole_flexcode.diagnose {checkpoint} --shrink_sweep=... --tail_floor={floor}",
            "checkpoint": f"/abs/{checkpoint}", "dataset": "Amazon_Beauty", "seed": seed, "rescore_sweep": sweep}


def test_tail_floor_table_reports_the_floor_operating_point_and_marks_runs_without_one(tmp_path):
    runs = tmp_path / "Amazon_Beauty" / "runs"
    analysis = tmp_path / "Amazon_Beauty" / "analysis"
    runs.mkdir(parents=True)
    analysis.mkdir()
    for seed in (1, 2, 3):
        rec = _fake_record("FlexCode-fix", seed, 0.040, model="FlexCode", overrides={"variant": "fix"})
        rec["checkpoint"] = f"saved/FlexCode-seed{seed}.pth"
        runner.write_json_atomic(str(runs / f"FlexCode-fix-seed{seed}.json"), rec)
    # seed 1: τ 3 is best on validation, τ 10 the best that reaches the floor 0.02
    runner.write_json_atomic(str(analysis / "f1.json"), _floor_sweep(
        1, "saved/FlexCode-seed1.pth", 0.02, (3.0, 0.030, 0.050, 0.015), (10.0, 0.028, 0.046, 0.022)))
    # seed 2: its sweep used another floor; seed 3: no setting reached the floor (both keep the usual choice)
    runner.write_json_atomic(str(analysis / "f2.json"), _floor_sweep(
        2, "saved/FlexCode-seed2.pth", 0.01, (3.0, 0.030, 0.052, 0.015), (5.0, 0.029, 0.047, 0.021)))
    runner.write_json_atomic(str(analysis / "f3.json"), _floor_sweep(
        3, "saved/FlexCode-seed3.pth", 0.02, (3.0, 0.030, 0.054, 0.015), None))

    assert selected.main(["--dataset=Amazon_Beauty", f"--out={tmp_path}"]) == 0
    assert selected.main(["--dataset=Amazon_Beauty", f"--out={tmp_path}", "--tail_floor=0.02"]) == 0
    usual = _read_csv(tmp_path / "Amazon_Beauty" / "selected.csv")["FlexCode-fix"]
    floor = _read_csv(tmp_path / "Amazon_Beauty" / "selected-tail_floor.csv")["FlexCode-fix"]
    assert math.isclose(float(usual["ndcg@10_mean"]), (0.050 + 0.052 + 0.054) / 3)
    assert math.isclose(float(floor["ndcg@10_mean"]), (0.046 + 0.052 + 0.054) / 3)
    assert math.isclose(float(floor["valid_ndcg@10_mean"]), (0.028 + 0.030 + 0.030) / 3)
    assert math.isclose(float(floor["tail_ndcg@10_mean"]), (0.022 + 0.015 + 0.015) / 3)
    md = (tmp_path / "Amazon_Beauty" / "selected-tail_floor.md").read_text()
    assert "| FlexCode-fix | 3 | 1 / 2 / 3 | K20 τ10 / K20 τ3 * / K20 τ3 * |" in md
    assert "validation tail N@10 >= 0.02" in md
    assert "K20 τ3 / K20 τ3 / K20 τ3 |" in (tmp_path / "Amazon_Beauty" / "selected.md").read_text()
    assert selected.main(["--dataset=Amazon_Beauty", f"--out={tmp_path}", "--tail_floor=-1"]) == 2


def test_selected_table_from_a_real_run_and_its_diagnose_sweep(tiny_data, tmp_path, monkeypatch):
    """A tiny FlexCode with the item head, trained at 0 candidates, then swept at 5 by diagnose."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results"
    argv = ["--dataset=ml-tiny", "--models=FlexCode-fix", "--seeds=2020", f"--out={out}", f"--data_path={tiny_data}",
            f"--checkpoint_dir={tmp_path / 'saved'}", f"--cache_dir={tmp_path / 'cache'}", *TINY_ARGS,
            "--item_head_weight=1.0", "--item_head_candidates=0"]
    assert runner.main(argv) == 0
    with open(out / "ml-tiny" / "runs" / "FlexCode-fix-seed2020.json", encoding="utf-8") as f:
        run = json.load(f)
    diag_path = out / "ml-tiny" / "analysis" / "k5.json"
    assert diagnose.main([run["checkpoint"], "--trust", "--candidates_sweep=5", f"--out={diag_path}"]) == 0
    assert diagnose.main([run["checkpoint"], "--trust", "--shrink_sweep=-1"]) == 2  # one error line, no sweep
    assert diagnose.main([run["checkpoint"], "--trust", "--tail_floor=0.02"]) == 2  # a floor needs a sweep
    assert diagnose.main([run["checkpoint"], "--trust", "--candidates_sweep=5", "--tail_floor=-1"]) == 2
    with open(diag_path, encoding="utf-8") as f:
        diag = json.load(f)
    assert diag["checkpoint"] == os.path.abspath(run["checkpoint"])
    sweep = diag["rescore_sweep"]
    k5_valid = sweep["weights"][0]["valid"]["ndcg@10"]
    better = k5_valid > run["best_valid_result"]["ndcg@10"]
    expected = sweep["test_at_chosen"]["ndcg@10"] if better else run["test_result"]["ndcg@10"]

    assert selected.main(["--dataset=ml-tiny", f"--out={out}"]) == 0
    table = _read_csv(out / "ml-tiny" / "selected.csv")
    assert math.isclose(float(table["FlexCode-fix"]["ndcg@10_mean"]), expected)
    md = (out / "ml-tiny" / "selected.md").read_text()
    assert f"| FlexCode-fix | 1 | 2020 | {'K5' if better else 'K0'} |" in md
    assert run["command"] in md and diag["command"] in md.split("Inference settings evaluated by:")[1]

    # --by_target at another shrinkage τ (here: path scores all but replaced by the head's) ranks the targets
    # otherwise, and scores them as the sweep does at that τ (one setting: it is chosen)
    import numpy as np

    from recbole_flexcode.analysis.paired import load_rows

    tau = out / "tau.json"
    assert diagnose.main([run["checkpoint"], "--trust", "--shrink_sweep=1000000", f"--out={tau}"]) == 0
    at_tau = json.loads(tau.read_text())["rescore_sweep"]["test_at_chosen"]["ndcg@10"]
    by = out / "by_tau.json"
    ranks = {}
    for name, extra in (("trained", []), ("tau", ["--item_head_shrink=1000000"])):
        assert diagnose.main([run["checkpoint"], "--trust", "--by_target", *extra, f"--rows_out={out / name}.npz",
                              f"--out={by}"]) == 0
        ranks[name] = load_rows(str(out / f"{name}.npz"))[0]["valid"]["ranks"]
    assert json.loads(by.read_text())["by_target"]["test"]["all"]["ndcg@10"] == pytest.approx(at_tau, abs=5e-5)
    assert not np.array_equal(ranks["trained"], ranks["tau"])
    assert diagnose.main([run["checkpoint"], "--trust", "--item_head_shrink=3"]) == 2  # needs --by_target
    assert diagnose.main([run["checkpoint"], "--trust", "--by_target", "--item_head_shrink=-1"]) == 2

    # --by_target with the head proposing 5 candidates scores the targets as the K5 sweep above tested them
    # (the row trained at 0, which scores otherwise on these rows)
    k5_test = sweep["test_at_chosen"]["ndcg@10"]
    assert k5_test != pytest.approx(run["test_result"]["ndcg@10"], abs=5e-5)
    assert diagnose.main([run["checkpoint"], "--trust", "--by_target", "--item_head_candidates=5", f"--out={by}"]) == 0
    assert json.loads(by.read_text())["by_target"]["test"]["all"]["ndcg@10"] == pytest.approx(k5_test, abs=5e-5)
    assert diagnose.main([run["checkpoint"], "--trust", "--item_head_candidates=5"]) == 2  # needs --by_target
    assert diagnose.main([run["checkpoint"], "--trust", "--by_target", "--item_head_candidates=-1"]) == 2
