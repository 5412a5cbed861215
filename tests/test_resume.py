"""An interrupted training run resumes from the state saved after its last validation (issue #14).

On CPU the resumed run must end exactly where an uninterrupted one ends: same validation curve,
same best epoch, same test metrics. SASRec (dropout) and FlexCode with the decoupled router's
warm-up (random split draws) both consume the random generators the state has to carry.
"""

from __future__ import annotations

import glob
import os

import pytest

from conftest import TINY_FLEXCODE, tiny_config
from recbole_flexcode import quick_start

FLEX = {**TINY_FLEXCODE, "router_mode": "decoupled", "router_warmup_steps": 3, "lr_warmup_steps": 2, "lr_schedule": "cosine"}
SASREC = dict(hidden_size=16, inner_size=32, n_layers=1, n_heads=2, train_batch_size=128)


class Interrupt(KeyboardInterrupt):
    pass


def _run(model, cfg, result_file):
    return quick_start.run(model, "ml-tiny", config_dict=cfg, result_file=str(result_file), command="pytest")


@pytest.mark.parametrize("model,extra", [("SASRec", SASREC), ("FlexCode", FLEX)], ids=["SASRec", "FlexCode"])
def test_interrupted_run_resumes_to_the_uninterrupted_result(model, extra, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = {**extra, "cache_dir": str(tmp_path / "cache")} if model == "FlexCode" else extra
    base = tiny_config(tiny_data, epochs=4, stopping_step=10, **extra)
    whole = _run(model, {**base, "checkpoint_dir": str(tmp_path / "a")}, tmp_path / "a.json")
    assert not glob.glob(str(tmp_path / "a" / "resume-*.pth"))  # a finished run leaves no state behind

    cfg = {**base, "checkpoint_dir": str(tmp_path / "b")}
    watch_call = quick_start._EpochWatch.__call__

    def interrupt_after_epoch_1(self, epoch_idx, valid_score):
        watch_call(self, epoch_idx, valid_score)
        if epoch_idx == 1:
            raise Interrupt()

    monkeypatch.setattr(quick_start._EpochWatch, "__call__", interrupt_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        _run(model, cfg, tmp_path / "b.json")
    assert len(glob.glob(str(tmp_path / "b" / "resume-*.pth"))) == 1
    monkeypatch.setattr(quick_start._EpochWatch, "__call__", watch_call)

    resumed = _run(model, {**cfg, "resume": True}, tmp_path / "b.json")
    assert resumed["training"]["resumed"] is True
    assert resumed["training"]["valid_curve"] == whole["training"]["valid_curve"]
    assert resumed["training"]["best_epoch"] == whole["training"]["best_epoch"]
    assert resumed["best_valid_result"] == whole["best_valid_result"]
    assert resumed["test_result"] == whole["test_result"]
    assert not glob.glob(str(tmp_path / "b" / "resume-*.pth"))


def test_resume_without_saved_state_trains_from_the_start(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(tiny_data, epochs=1, checkpoint_dir=str(tmp_path / "c"), resume=True, **SASREC)
    result = _run("SASRec", cfg, tmp_path / "c.json")
    assert result["training"]["resumed"] is False and result["training"]["epochs_run"] == 1


def test_state_file_loads_without_unpickling_and_other_settings_do_not_match(tiny_data, tmp_path, monkeypatch):
    """The state holds tensors and plain values only (weights_only loads it); a run with different
    settings does not pick it up."""
    import torch

    from recbole_flexcode.config import FlexConfig
    from recbole_flexcode.resume import run_key

    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(tiny_data, epochs=2, checkpoint_dir=str(tmp_path / "d"), **SASREC)
    watch_call = quick_start._EpochWatch.__call__

    def interrupt(self, epoch_idx, valid_score):
        watch_call(self, epoch_idx, valid_score)
        raise Interrupt()

    monkeypatch.setattr(quick_start._EpochWatch, "__call__", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run("SASRec", cfg, tmp_path / "d.json")
    (path,) = glob.glob(str(tmp_path / "d" / "resume-*.pth"))
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 0 and state["best_epoch"] == 0
    a = FlexConfig("SASRec", "ml-tiny", config_dict=cfg)
    assert run_key(a) in os.path.basename(path)
    assert run_key(FlexConfig("SASRec", "ml-tiny", config_dict={**cfg, "show_progress": True, "resume": True})) == run_key(a)
    assert run_key(FlexConfig("SASRec", "ml-tiny", config_dict={**cfg, "learning_rate": 0.01})) != run_key(a)
