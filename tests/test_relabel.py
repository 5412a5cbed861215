"""Moving a finished run to the row that names its settings today (recbole_flexcode.benchmark.relabel)."""

from __future__ import annotations

import json
import math

from recbole_flexcode.benchmark import relabel, runner, tables

from test_benchmark import _fake_record


def test_relabelled_runs_join_their_new_row_and_the_tables_say_so(tmp_path):
    runs = tmp_path / "Amazon_Beauty" / "runs"
    runs.mkdir(parents=True)
    # seeds 1 and 2 of FlexCode ran before a section change (now row FlexCode-dropout0); seed 3 after it
    for seed, v in ((1, 0.040), (2, 0.042), (3, 0.050)):
        rec = _fake_record("FlexCode", seed, v, overrides={"variant": "full"})
        artifacts = runs / f"FlexCode-seed{seed}_artifacts"
        artifacts.mkdir()
        (artifacts / "item_splits.csv").write_text("item,split\n")
        rec["artifacts"] = [str(artifacts / "item_splits.csv")]
        runner.write_json_atomic(str(runs / f"FlexCode-seed{seed}.json"), rec)
    why = "ran before the section took dropout 0.1"
    for seed in (1, 2):
        assert relabel.main([str(runs / f"FlexCode-seed{seed}.json"), "FlexCode-dropout0", f"--why={why}"]) == 0

    assert sorted(p.name for p in runs.iterdir()) == [
        "FlexCode-dropout0-seed1.json", "FlexCode-dropout0-seed1_artifacts", "FlexCode-dropout0-seed2.json",
        "FlexCode-dropout0-seed2_artifacts", "FlexCode-seed3.json", "FlexCode-seed3_artifacts"]
    moved = json.loads((runs / "FlexCode-dropout0-seed1.json").read_text())
    assert moved["benchmark"]["relabelled"]["from"] == "FlexCode" and moved["benchmark"]["relabelled"]["why"] == why
    assert moved["benchmark"]["row_overrides"] == runner.parse_row("FlexCode-dropout0").overrides
    assert moved["command"] == "python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty"  # as it ran
    assert moved["artifacts"] == [str(runs / "FlexCode-dropout0-seed1_artifacts" / "item_splits.csv")]
    assert (runs / "FlexCode-dropout0-seed1_artifacts" / "item_splits.csv").is_file()

    summaries = {s["row"]: s for s in tables.aggregate(tables.load_runs(str(runs)))}
    assert summaries["FlexCode"]["seeds"] == [3] and summaries["FlexCode-dropout0"]["seeds"] == [1, 2]
    assert math.isclose(summaries["FlexCode-dropout0"]["metrics"]["ndcg@10"]["mean"], 0.041)
    md = tables.render_markdown("Amazon_Beauty", list(summaries.values()), "cmd")
    assert f"- FlexCode-dropout0, seed 1: ran as row FlexCode; {why}" in md
    assert "seed 3: ran as" not in md


def test_relabel_refuses_what_it_cannot_do_with_one_error_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    runner.write_json_atomic(str(runs / "FlexCode-seed1.json"), _fake_record("FlexCode", 1, 0.04))
    runner.write_json_atomic(str(runs / "FlexCode-dropout0-seed1.json"), _fake_record("FlexCode-dropout0", 1, 0.04,
                                                                                      model="FlexCode"))
    runner.write_json_atomic(str(runs / "SASRec-seed1.json"), _fake_record("SASRec", 1, 0.03))
    run = str(runs / "FlexCode-seed1.json")
    for argv in ([run, "FlexCode-nonsense", "--why=x"],  # unknown row
                 [run, "FlexCode-dropout0", "--why=x"],  # that row has this seed already
                 [run, "FlexCode-dropout01", "--why= "],  # no reason
                 [run, "FlexCode", "--why=x"],  # already that row
                 [str(runs / "SASRec-seed1.json"), "FlexCode-dropout01", "--why=x"],  # another model
                 [str(runs / "missing.json"), "FlexCode-dropout01", "--why=x"]):
        capsys.readouterr()
        assert relabel.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
    assert (runs / "FlexCode-seed1.json").is_file() and not (runs / "FlexCode-dropout01-seed1.json").exists()
