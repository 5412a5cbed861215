"""analysis.paired: two models' ranks on the same evaluation rows, per count x days stratum; the files it
reads (written by ``diagnose --by_target --rows_out``) and its one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recbole_flexcode.analysis import paired
from recbole_flexcode.evaluation import metrics_from_ranks

# six rows: targets with training counts 3, 3, 3, 20, 20, 80; gaps 5, 40, 40, 5, 100 days and never
TARGETS = np.array([4, 5, 5, 7, 8, 9])
COUNT = np.array([3, 3, 3, 20, 20, 80])
GAP = np.array([5.0, 40.0, 40.0, 5.0, 100.0, np.nan])


def _rows(ranks, targets=TARGETS):
    return {"ranks": np.array(ranks), "targets": targets, "train_count": COUNT, "gap_days": GAP}


def test_paired_strata_count_who_retrieves_which_row():
    a = _rows([1, 11, 3, 50, 2, 1])
    b = _rows([2, 4, 30, 50, 12, 1])
    out = {r["stratum"]: r for r in paired.paired_strata(a, b)}
    assert list(out) == ["1-9 · 0-30 d", "1-9 · 30+ d", "10-49 · 0-30 d", "10-49 · 30+ d", "50+ · never", "all"]
    stale = out["1-9 · 30+ d"]  # rows 2 and 3: A misses row 2 (rank 11) and hits row 3; B the other way round
    assert (stale["users"], stale["only_a"], stale["only_b"], stale["both"]) == (2, 1, 1, 0)
    assert stale["a_ndcg@10"] == pytest.approx(0.5 / math.log2(4))
    assert stale["b_ndcg@10"] == pytest.approx(0.5 / math.log2(5))
    assert (out["10-49 · 0-30 d"]["only_a"], out["10-49 · 0-30 d"]["only_b"], out["10-49 · 0-30 d"]["both"]) == (0, 0, 0)
    assert (out["10-49 · 30+ d"]["only_a"], out["50+ · never"]["both"]) == (1, 1)
    whole = out["all"]
    assert (whole["users"], whole["share"], whole["only_a"], whole["only_b"], whole["both"]) == (6, 1.0, 2, 1, 2)
    assert whole["a_ndcg@10"] == pytest.approx(metrics_from_ranks(a["ranks"], (10,))["ndcg@10"])
    assert sum(r["users"] for name, r in out.items() if name != "all") == 6


def test_rows_of_other_targets_do_not_pair():
    with pytest.raises(paired.PairingError, match="same evaluation rows"):
        paired.paired_strata(_rows([1] * 6), _rows([1] * 6, TARGETS[::-1].copy()))
    with pytest.raises(paired.PairingError, match="same evaluation rows"):
        paired.paired_strata(_rows([1] * 6), {**_rows([1] * 5), "targets": TARGETS[:5]})


def _save(path, ranks, model, targets=TARGETS):
    rows = {split: _rows(ranks, targets) for split in ("valid", "test")}
    paired.save_rows(str(path), rows, {"model": model, "command": f"diagnose {model}"})


def test_cli_writes_the_paired_tables_of_two_row_files(tmp_path, capsys):
    _save(tmp_path / "a.npz", [1, 11, 3, 50, 2, 1], "FlexCode")
    _save(tmp_path / "b.npz", [2, 4, 30, 50, 12, 1], "SASRec")
    rows, meta = paired.load_rows(str(tmp_path / "a.npz"))
    assert meta["model"] == "FlexCode" and set(rows) == {"valid", "test"}
    np.testing.assert_array_equal(rows["test"]["gap_days"], GAP)  # NaN (never) survives the file
    out = tmp_path / "paired.md"
    assert paired.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), f"--out={out}"]) == 0
    text = out.read_text()
    assert "`diagnose FlexCode`" in text and "`diagnose SASRec`" in text
    for split in ("valid", "test"):
        assert f"| {split}: count · days | users | share | FlexCode N@10 | SASRec N@10 |" in text
    # the stale rare stratum: one row each only A / only B retrieves, none both
    assert "| 1-9 · 30+ d | 2 | 0.333 |" in text and "| 1 | 1 | 0 |" in text
    assert capsys.readouterr().out.strip() in text


def test_cli_refuses_files_that_do_not_pair_in_one_line(tmp_path, capsys):
    _save(tmp_path / "a.npz", [1] * 6, "FlexCode")
    _save(tmp_path / "other.npz", [1] * 6, "SASRec", TARGETS[::-1].copy())
    (tmp_path / "foreign.npz").write_bytes(b"not an npz")
    for argv, message in (
        ([tmp_path / "a.npz", tmp_path / "other.npz"], "do not hold the same evaluation rows"),
        ([tmp_path / "a.npz", tmp_path / "foreign.npz"], "is not a file of evaluation rows"),
        ([tmp_path / "a.npz", tmp_path / "missing.npz"], "is not a file of evaluation rows"),
        ([tmp_path / "a.npz", tmp_path / "a.npz", "--names=one"], "--names takes two"),
    ):
        assert paired.main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
