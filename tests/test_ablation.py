"""The ablation table (recbole_flexcode.benchmark.ablation): paired per-step changes at validation's settings."""

from __future__ import annotations

import csv
import math

from recbole_flexcode.benchmark import ablation, runner

from test_benchmark import _fake_record
from test_selected import _sweep


def _write(runs, row, seed, ndcg10, checkpoint=None):
    rec = _fake_record(row, seed, ndcg10, model="FlexCode" if row.startswith("FlexCode") else None)
    if checkpoint:
        rec["checkpoint"] = checkpoint
    runner.write_json_atomic(str(runs / f"{row}-seed{seed}.json"), rec)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {r["row"]: r for r in csv.DictReader(f)}


def test_each_step_is_paired_on_shared_seeds_at_the_setting_validation_chose(tmp_path, capsys):
    runs = tmp_path / "Amazon_Beauty" / "runs"
    analysis = tmp_path / "Amazon_Beauty" / "analysis"
    runs.mkdir(parents=True)
    analysis.mkdir()
    for seed, v in ((1, 0.030), (2, 0.032), (3, 0.034)):
        _write(runs, "SASRec", seed, v)
    # the first step ran two seeds only; the next row's change is taken over those two
    for seed, v in ((1, 0.040), (2, 0.044)):
        _write(runs, "FlexCode-a", seed, v)
    for seed, v in ((1, 0.043), (2, 0.043), (3, 0.050)):
        _write(runs, "FlexCode-b", seed, v)
    for seed, v in ((1, 0.045), (2, 0.046), (3, 0.049)):
        _write(runs, "FlexCode-c", seed, v, checkpoint=f"saved/c-{seed}.pth")
    # c, seed 3: a setting its validation prefers (0.030 > 0.049 / 2) is what the table reads: test 0.052
    runner.write_json_atomic(str(analysis / "c3.json"), _sweep(3, "saved/c-3.pth", 0.030, 0.052, shrink=5.0))

    assert ablation.main(["--dataset=Amazon_Beauty", f"--out={tmp_path}", "--chain=FlexCode-a,FlexCode-b,FlexCode-c",
                          "--steps=start;adds b;adds c"]) == 0
    table = _rows(tmp_path / "Amazon_Beauty" / "ablation.csv")
    assert list(table) == ["FlexCode-a", "FlexCode-b", "FlexCode-c"]
    a, b, c = table["FlexCode-a"], table["FlexCode-b"], table["FlexCode-c"]
    assert a["delta_ndcg@10"] == "" and a["n"] == "2"
    # b − a over seeds 1 and 2: +0.003 and −0.001, one of two up; b's level keeps its own three seeds
    assert math.isclose(float(b["delta_ndcg@10"]), (0.003 - 0.001) / 2)
    assert (b["delta_ndcg@10_up"], b["delta_ndcg@10_n"]) == ("1", "2")
    assert math.isclose(float(b["ndcg@10_mean"]), (0.043 + 0.043 + 0.050) / 3)
    # c − b over three seeds, seed 3 at the swept setting (0.052, tail 0.052 / 3, valid 0.030)
    assert math.isclose(float(c["delta_ndcg@10"]), (0.002 + 0.003 + 0.002) / 3)
    assert math.isclose(float(c["delta_tail_ndcg@10"]), ((0.045 - 0.043) / 4 + (0.046 - 0.043) / 4 + (0.052 / 3 - 0.050 / 4)) / 3)
    assert math.isclose(float(c["delta_valid_ndcg@10"]), (0.001 + 0.0015 + (0.030 - 0.025)) / 3)
    assert c["delta_ndcg@10_up"] == "3"
    assert math.isclose(float(c["ndcg10_vs_baseline_pct"]), ((0.045 + 0.046 + 0.052) / 3 / 0.032 - 1) * 100)
    md = (tmp_path / "Amazon_Beauty" / "ablation.md").read_text()
    assert "| 1. adds b | FlexCode-b | 1 / 2 / 3 |" in md and "+0.0010 (1/2)" in md
    assert "| baseline: SASRec | SASRec |" in md


def test_a_chain_row_without_runs_or_labels_that_do_not_match_are_one_error_line(tmp_path, capsys):
    runs = tmp_path / "Amazon_Beauty" / "runs"
    runs.mkdir(parents=True)
    _write(runs, "FlexCode-a", 1, 0.04)
    assert ablation.main(["--dataset=Amazon_Beauty", f"--out={tmp_path}", "--chain=FlexCode-a,FlexCode-typo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FlexCode-typo" in err[0]
    assert ablation.main(["--dataset=Amazon_Beauty", f"--out={tmp_path}", "--chain=FlexCode-a,FlexCode-a",
                          "--steps=only one"]) == 2
    assert "2 chain rows" in capsys.readouterr().err
    assert not (tmp_path / "Amazon_Beauty" / "ablation.md").exists()
