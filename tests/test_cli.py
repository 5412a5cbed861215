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

    # the finer strata by the target's training count, its recency and both crossed, on test and on validation
    # (the same checkpoint): each covers every user once and averages back to the whole
    assert result["popularity_groups_valid"]["all"]["users"] == N_USERS
    for split in (groups, result["popularity_groups_valid"]):
        assert set(split["strata"]) == {"by_train_count", "by_days_since_last_train", "by_count_and_days"}
        for rows in split["strata"].values():
            assert sum(r["users"] for r in rows) == N_USERS
            assert sum(r["share"] * r["ndcg@10"] for r in rows if r["users"]) == pytest.approx(split["all"]["ndcg@10"])
    # an item unseen in training is never a training target either
    strata = groups["strata"]
    assert strata["by_days_since_last_train"][0]["stratum"] == "never"
    assert strata["by_days_since_last_train"][0]["users"] >= strata["by_train_count"][0]["users"]

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


def test_script_bad_setting_subprocess(tiny_data):
    """The real script: one line, status 2, no traceback, no log noise, for a typo'd setting."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "run_flexcode.py", "--token_budgett=4", "--dataset=ml-tiny", f"--data_path={tiny_data}"],
        cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300,
    )
    _assert_one_line_error(proc.returncode, proc.stderr, "--token_budgett", "did you mean --token_budget?")
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
        "valid_curve": [short["best_valid_score"]], "resumed": False,
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


# ------------------------------------------------------ bad settings: refused before any data


@pytest.fixture
def no_data(monkeypatch):
    """Loading the dataset (or preparing it) fails the test: a bad input must be refused before."""
    import recbole.data

    def loaded(*args, **kwargs):
        raise AssertionError("the dataset was loaded: the bad input was not refused first")

    monkeypatch.setattr(recbole.data, "create_dataset", loaded)
    monkeypatch.setattr(recbole.data, "data_preparation", loaded)


def _bad_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


BAD_CLI = [
    (["--token_budgett=4"], ["unknown setting --token_budgett for FlexCode", "did you mean --token_budget?"]),
    (["--model=SASRec", "--token_budget=4"], ["unknown setting --token_budget for SASRec", "FlexCode"]),
    (["--model=FlexCode", "--z_size=4"], ["--z_size", "SOLID"]),
    (["--token_budget=abc"], ["--token_budget", "an int in 1..8", "'abc'"]),
    (["--learning_rate=abc"], ["--learning_rate", "a number > 0", "'abc'"]),
    (["--model=SASRec", "--learning_rate=abc"], ["--learning_rate", "a number > 0"]),
    (["--token_budget=3.7"], ["--token_budget", "an int in 1..8", "3.7"]),
    (["--token_budget=9"], ["--token_budget", "an int in 1..8"]),
    (["--codebook_size=1"], ["--codebook_size", "an int >= 2"]),
    (["--model=SASRec", "--epochs=-1"], ["--epochs", "an int >= 1", "-1"]),
    (["--model=SASRec", "--train_time_budget=0"], ["--train_time_budget", "a number > 0, or ~"]),
    (["--model=SASRec", "--stopping_step=0"], ["--stopping_step", "an int >= 1"]),
    (["--model=SASRec", "--seed=abc"], ["--seed", "an int"]),
    (["--model=SASRec", "--MAX_ITEM_LIST_LENGTH=0"], ["--MAX_ITEM_LIST_LENGTH", ">= 1"]),
    (["--rqvae_learning_rate=0"], ["--rqvae_learning_rate", "> 0"]),
    (["--dropout_prob=1.0"], ["--dropout_prob", ">= 0 and < 1"]),
    (["--beam_size=5"], ["beam_size (5) must be >= the largest topk (10)"]),
    (["--variant=fix", "--fixed_cf_tokens=4"], ["fixed_cf_tokens (4) must be between 0 and token_budget (3)"]),
    (["--variant=bogus"], ["--variant", "full | semantic_only | cf_only | fix | no_align"]),
    (["--training_mode=sometimes"], ["--training_mode", "staged | joint"]),
    (["--decode_mode=greedy"], ["--decode_mode", "beam | exact"]),
    (["--router_mode=sometimes"], ["--router_mode", "expected_loss | decoupled"]),
    (["--router_loss_balance=mean"], ["--router_loss_balance", "stratum | plain"]),
    (["--model=SASRec", "--valid_metric=NDCG@20"], ["valid_metric (NDCG@20)", "topk"]),
    (["--model=SASRec", "--metrics=[Foo]"], ["unknown metric Foo"]),
    (["--model=Nope"], ["unknown model 'Nope'", "FlexCode", "SOLID", "SASRec"]),
    (["--model"], ["--model", "expected one argument"]),
    (["--model=SASRec", "--config_files={broken}"], ["{broken}", "malformed YAML", "line"]),
    (["--model=SASRec", "--config_files={listing}"], ["{listing}", "expected a mapping", "a list"]),
    (["--model=SASRec", "--config_files={typo}"], ["unknown setting 'stoping_step' in {typo}", "did you mean stopping_step?"]),
    (["--model=SASRec", "--config_files={badvalue}"], ["invalid value for 'epochs' in {badvalue}", "an int >= 1"]),
]


@pytest.mark.parametrize("args, needles", BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_bad_settings_exit_2_with_one_line_before_any_data(args, needles, tiny_data, tmp_path, capsys, monkeypatch, no_data):
    monkeypatch.chdir(tmp_path)
    files = {
        "broken": _bad_file(tmp_path, "broken.yaml", "epochs: 3\nmetrics: [Recall\n"),
        "listing": _bad_file(tmp_path, "listing.yaml", "- epochs: 3\n"),
        "typo": _bad_file(tmp_path, "typo.yaml", "stoping_step: 3\n"),
        "badvalue": _bad_file(tmp_path, "badvalue.yaml", "epochs: 0\n"),
    }

    def fill(text):
        for name, path in files.items():
            text = text.replace("{" + name + "}", path)
        return text

    rc = main([fill(a) for a in args] + ["--dataset=ml-tiny", f"--data_path={tiny_data}"])
    captured = capsys.readouterr()
    _assert_one_line_error(rc, captured.err, *[fill(n) for n in needles])
    assert captured.out == ""
    assert "lightgbm" not in captured.err and "xgboost" not in captured.err
    assert not (tmp_path / "results").exists() and not (tmp_path / "log").exists()


def test_run_refuses_bad_config_dict_before_any_data(tiny_data, tmp_path, monkeypatch, no_data):
    from recbole_flexcode.config import ConfigError
    from recbole_flexcode.quick_start import run

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'token_budgett' in config_dict .*did you mean token_budget\?"):
        run("FlexCode", "ml-tiny", config_dict={"data_path": str(tiny_data), "token_budgett": 4})
    with pytest.raises(ConfigError, match="epochs"):
        run("SASRec", "ml-tiny", config_dict={"data_path": str(tiny_data)}, cmd_args={"epochs": -1})
