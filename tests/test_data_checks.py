"""Bad datasets end in one ``error:`` line (exit 2) before RecBole or any stage reads them (issue #14)."""

from __future__ import annotations

import logging
import shutil
from unittest import mock

import numpy as np
import pytest

from conftest import tiny_config
from recbole_flexcode import quick_start
from recbole_flexcode.config import FlexConfig
from recbole_flexcode.data.checks import check_atomic_files


def _dataset(root, name, inter_text=None, inter_bytes=None, copy_from=None):
    folder = root / name
    folder.mkdir(parents=True)
    if copy_from is not None:
        shutil.copy(copy_from / "ml-tiny" / "ml-tiny.item", folder / f"{name}.item")
    path = folder / f"{name}.inter"
    if inter_bytes is not None:
        path.write_bytes(inter_bytes)
    else:
        path.write_text(inter_text, encoding="utf-8")
    return path


def _main(root, name, tmp_path, monkeypatch, capsys, *extra):
    monkeypatch.chdir(tmp_path)
    args = [f"--model=SASRec", f"--dataset={name}", f"--data_path={root}", "--epochs=1", "--show_progress=False",
            "--load_col={inter: [user_id, item_id, timestamp]}", *extra]
    code = quick_start.main(args)
    return code, capsys.readouterr().err.strip().splitlines()


HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _rows(n_users, per_user):
    return "".join(f"{u}\t{i}\t5\t{1000 * u + i}\n" for u in range(1, n_users + 1) for i in range(1, per_user + 1))


@pytest.mark.parametrize(
    "case,content,needle",
    [
        ("latin1", (HEADER + "1\t2\t5\t100\n").encode() + "3\tcaf\xe9\t5\t200\n".encode("latin-1"), "not UTF-8 text (line 3"),
        ("no_time", "user_id:token\titem_id:token\trating:float\n1\t2\t5\n", "no column timestamp"),
        ("empty", b"", "empty file"),
        ("header_only", HEADER.encode(), "no interaction rows"),
        ("bad_header", b"user_id\titem_id\ttimestamp\n1\t2\t3\n", "name:type"),
    ],
)
def test_unreadable_interaction_files_fail_fast(case, content, needle, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    _dataset(root, f"bad_{case}", inter_bytes=content if isinstance(content, bytes) else content.encode())
    with mock.patch("recbole.data.create_dataset", side_effect=AssertionError("read after the check")):
        code, err = _main(root, f"bad_{case}", tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert needle in err[0] and f"bad_{case}.inter" in err[0]


def test_a_dataset_the_k_core_filter_empties_is_refused(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    _dataset(root, "sparse", inter_text=HEADER + _rows(n_users=6, per_user=3))  # every user < 5 interactions
    code, err = _main(root, "sparse", tmp_path, monkeypatch, capsys,
                      "--user_inter_num_interval=[5,inf)", "--item_inter_num_interval=[1,inf)")
    assert code == 2 and len(err) == 1 and "left after filtering" in err[0] and "user_inter_num_interval" in err[0]


def test_duplicate_rows_are_counted_in_one_warning(tmp_path, caplog):
    root = tmp_path / "data"
    body = _rows(n_users=3, per_user=6)
    first = body.splitlines(keepends=True)[:2]
    _dataset(root, "dups", inter_text=HEADER + body + "".join(first))
    config = FlexConfig("SASRec", "dups", config_dict={"data_path": str(root)})
    with caplog.at_level(logging.WARNING, logger="recbole_flexcode.data.checks"):
        check_atomic_files(config)
    lines = [r.getMessage() for r in caplog.records if "repeat an earlier row" in r.getMessage()]
    assert len(lines) == 1 and "2 of 20 interaction rows" in lines[0]


def test_a_codebook_too_large_for_the_catalogue_is_reported(caplog):
    from recbole_flexcode.pipeline import tokenizer_stage

    rng = np.random.default_rng(0)
    # 40 items on 3 distinct points: at most 3 of the 64 codes of level 1 can be used
    distinct = {"semantic": rng.normal(size=(3, 8)), "collaborative": rng.normal(size=(3, 4))}
    pick = np.concatenate([[0], rng.integers(0, 3, 40)])
    emb = {name: [v[pick].astype(np.float32)] for name, v in distinct.items()}
    settings = {"kind": "rkmeans", "n_levels": 2, "codebook_size": 64, "codebook": {"kmeans_iterations": 5}, "fit": {}, "seed": 1}
    log = logging.getLogger("test.codebook")
    with caplog.at_level(logging.WARNING, logger="test.codebook"):
        tokenizer_stage(emb, settings, None, False, log)
    warned = [r.getMessage() for r in caplog.records if "smaller codebook_size" in r.getMessage()]
    assert any(w.startswith("tokenizer: semantic level 1 uses") for w in warned)
    assert any(w.startswith("tokenizer: collaborative level 1 uses") for w in warned)
    assert all("of 64 codes for 40 items" in w for w in warned)


def test_the_shipped_datasets_pass(tiny_data):
    check_atomic_files(FlexConfig("SASRec", "ml-tiny", config_dict=tiny_config(tiny_data)))
    check_atomic_files(FlexConfig("SASRec", "ml-100k"))


def test_optional_item_columns_missing_are_a_warning(tmp_path, caplog):
    """Our Amazon_Beauty copy has no brand/price/description: RecBole loads the columns it finds."""
    root = tmp_path / "data"
    _dataset(root, "noitemcols", inter_text=HEADER + _rows(n_users=3, per_user=6))
    (root / "noitemcols" / "noitemcols.item").write_text("item_id:token\ttitle:token_seq\n1\ta\n", encoding="utf-8")
    config = FlexConfig("SASRec", "noitemcols", config_dict={
        "data_path": str(root), "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "brand"]}})
    with caplog.at_level(logging.WARNING, logger="recbole_flexcode.data.checks"):
        check_atomic_files(config)
    assert any("not loaded: brand" in r.getMessage() for r in caplog.records)
