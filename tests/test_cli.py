"""run_flexcode.py / quick_start.main: an end-to-end run on ml-tiny and one-line errors with exit code 2."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_flexcode import compat
from recbole_flexcode.quick_start import format_table, main

REPO = Path(__file__).resolve().parent.parent
METRICS = {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
N_USERS = 60  # users in the tiny_data fixture (all have >= 20 ratings, so all survive 5-core)


def _small_args(tiny_data, tmp_path):
    return [
        f"--data_path={tiny_data}",
        "--epochs=1",
        "--MAX_ITEM_LIST_LENGTH=10",
        "--show_progress=False",
        "--hidden_size=16",
        "--inner_size=32",
        f"--checkpoint_dir={tmp_path / 'saved'}",
        "--load_col={inter: [user_id, item_id, timestamp]}",
    ]


def _table_row(out: str, name: str) -> list[str]:
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, f"expected one '{name}' row in:\n{out}"
    return rows[0]


def test_main_end_to_end(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole writes log/ and log_tensorboard/ into the working directory
    result_file = tmp_path / "out" / "result.json"
    argv = ["--model=SASRec", "--dataset=ml-tiny", f"--result_file={result_file}", *_small_args(tiny_data, tmp_path)]
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == 0

    result = json.loads(result_file.read_text(encoding="utf-8"))
    assert result["model"] == "SASRec" and result["dataset"] == "ml-tiny"
    assert result["command"].startswith("python run_flexcode.py --model=SASRec")
    assert set(result["best_valid_result"]) == METRICS
    assert set(result["test_result"]) == METRICS
    for value in list(result["best_valid_result"].values()) + list(result["test_result"].values()):
        assert math.isfinite(value) and 0.0 <= value <= 1.0
    # model selection is on validation NDCG@10 (the plugin's protocol)
    assert result["best_valid_score"] == result["best_valid_result"]["ndcg@10"]

    # the table printed is the one in the file
    assert "SASRec on ml-tiny" in out and f"results: {result_file}" in out
    for name in ("recall@10", "ndcg@10"):
        row = _table_row(out, name)
        assert row[1] == f"{result['best_valid_result'][name]:.4f}"
        assert row[2] == f"{result['test_result'][name]:.4f}"
    assert "test head users=" in out and "test tail users=" in out

    # head/tail groups cover every test user once
    groups = result["popularity_groups"]
    assert result["n_test_users"] == N_USERS
    assert groups["head"]["users"] + groups["tail"]["users"] == result["n_test_users"]
    assert groups["all"]["users"] == result["n_test_users"]
    assert groups["head"]["users"] > 0 and groups["tail"]["users"] > 0
    # the group evaluator over all users reproduces RecBole's own test metrics
    assert any(v > 0 for v in result["test_result"].values())  # not a trivial 0 == 0
    for name in METRICS:
        assert abs(groups["all"][name] - result["test_result"][name]) <= 5e-5 + 1e-12, name
        # and the groups average back to the whole (weighted by group size)
        weighted = (
            groups["head"][name] * groups["head"]["users"] + groups["tail"][name] * groups["tail"]["users"]
        ) / groups["all"]["users"]
        assert weighted == pytest.approx(groups["all"][name])

    # the checkpoint RecBole tested on was written (and is trusted) by this process
    assert os.path.isfile(result["checkpoint"]) and compat.is_trusted_checkpoint(result["checkpoint"])
    assert not result_file.with_name(result_file.name + ".tmp").exists()


def test_format_table():
    result = {
        "best_valid_result": {"recall@10": 0.5, "ndcg@10": 0.25},
        "test_result": {"recall@10": 0.125, "ndcg@10": 0.0625},
        "popularity_groups": {
            "head": {"users": 3, "recall@10": 1.0, "ndcg@10": 0.5},
            "tail": {"users": 2, "recall@10": 0.0, "ndcg@10": 0.0},
        },
    }
    table = format_table(result)
    assert _table_row(table, "recall@10") == ["recall@10", "0.5000", "0.1250"]
    assert _table_row(table, "ndcg@10") == ["ndcg@10", "0.2500", "0.0625"]
    assert "test head users=3      recall@10=1.0000 ndcg@10=0.5000" in table
    assert "test tail users=2      recall@10=0.0000 ndcg@10=0.0000" in table
    assert len(table.splitlines()) == 2 + 2 + 1 + 2


def test_format_table_missing_metric():
    """A metric missing on one side (e.g. ``--eval_step=0``: no validation) gets a placeholder, not a crash."""
    table = format_table({"best_valid_result": {"ndcg@10": 0.25}, "test_result": {"ndcg@10": 0.5, "recall@5": 0.1}})
    assert _table_row(table, "ndcg@10") == ["ndcg@10", "0.2500", "0.5000"]
    row = _table_row(table, "recall@5")
    assert len(row) == 3 and row[2] == "0.1000"
    assert not re.fullmatch(r"\d\.\d{4}", row[1])
    # nothing validated at all: still a table with the test column
    table = format_table({"best_valid_result": {}, "test_result": {"ndcg@10": 0.5}})
    assert _table_row(table, "ndcg@10")[2] == "0.5000"


def _assert_one_line_error(rc, err, *needles):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_script_unknown_model_subprocess(tiny_data):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "run_flexcode.py", "--model=NoSuchModel", "--dataset=ml-tiny", f"--data_path={tiny_data}"],
        cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300,
    )
    _assert_one_line_error(proc.returncode, proc.stderr, "NoSuchModel")
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--model=NoSuchModel", "--dataset=ml-tiny"], ["NoSuchModel"]),
        (["--model=SASRec", "--dataset=no_such_data"], ["no_such_data", "not found"]),
        (["--model=SASRec", "--dataset=ml-tiny", "--config_files={missing}"], ["config file not found", "{missing}"]),
        (["--model=SASRec", "--dataset=ml-tiny", "--epochs"], ["--epochs"]),
        (["--model=SASRec", "--dataset=ml-tiny", "epochs=1"], ["epochs=1"]),
        (["--model=SASRec", "--dataset=ml-tiny", "--epochs=1", "--epochs=2"], ["epochs"]),
    ],
    ids=["unknown-model", "unknown-dataset", "missing-config-file", "override-without-value",
         "override-without-dashes", "conflicting-override"],
)
def test_main_errors_exit_2(args, needles, tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "missing.yaml")
    args = [a.replace("{missing}", missing) for a in args] + [f"--data_path={tiny_data}"]
    rc = main(args)
    captured = capsys.readouterr()
    _assert_one_line_error(rc, captured.err, *[n.replace("{missing}", missing) for n in needles])
    assert captured.out == ""
    assert not (tmp_path / "results").exists()


def test_train_time_budget_stops_between_epochs_and_tests_the_best_checkpoint(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a for a in _small_args(tiny_data, tmp_path) if not a.startswith("--epochs")]

    def run_with(extra, name):
        result_file = tmp_path / f"{name}.json"
        assert main(["--model=SASRec", "--dataset=ml-tiny", f"--result_file={result_file}", *args, *extra]) == 0
        return json.loads(result_file.read_text(encoding="utf-8"))

    # a budget smaller than one epoch: the first epoch runs (there must be a checkpoint), then it stops
    short = run_with(["--epochs=4", "--train_time_budget=0.001"], "short")
    assert short["training"] == {
        "epochs_run": 1, "best_epoch": 0, "train_time_budget_s": 0.001, "stopped_by_time_budget": True,
        "valid_curve": [short["best_valid_score"]],
    }
    assert set(short["test_result"]) == METRICS and short["best_valid_result"]
    # without a budget every epoch runs and the best epoch is recorded
    full = run_with(["--epochs=2"], "full")
    assert full["training"]["epochs_run"] == 2 and full["training"]["stopped_by_time_budget"] is False
    assert full["training"]["best_epoch"] in (0, 1)
    curve = full["training"]["valid_curve"]
    assert len(curve) == 2 and max(curve) == pytest.approx(full["best_valid_score"])
    assert curve[full["training"]["best_epoch"]] == pytest.approx(full["best_valid_score"])
    # a budget that is not reached changes nothing
    roomy = run_with(["--epochs=2", "--train_time_budget=3600"], "roomy")
    assert roomy["training"]["epochs_run"] == 2 and roomy["training"]["stopped_by_time_budget"] is False
    assert roomy["test_result"] == pytest.approx(full["test_result"])


def test_runs_started_in_the_same_second_keep_their_own_checkpoints(tiny_data, tmp_path, monkeypatch):
    """RecBole names checkpoints by model and time to the second; parallel runs must not share one."""
    import recbole.trainer.trainer as recbole_trainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(recbole_trainer, "get_local_time", lambda: "Nov-24-2026_10-00-00")
    results = []
    for name in ("a", "b"):
        result_file = tmp_path / f"{name}.json"
        argv = ["--model=SASRec", "--dataset=ml-tiny", f"--result_file={result_file}", *_small_args(tiny_data, tmp_path)]
        assert main(argv) == 0
        results.append(json.loads(result_file.read_text(encoding="utf-8")))
    first, second = (Path(r["checkpoint"]) for r in results)
    assert first != second and first.is_file() and second.is_file()
    assert first.name.startswith("SASRec-Nov-24-2026_10-00-00-seed") and first.parent == tmp_path / "saved"
