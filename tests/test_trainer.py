"""The plugin's trainer (recbole_flexcode/trainer.py): RecBole's, plus warm-up + cosine learning rate."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY_FLEXCODE, tiny_config
from recbole_flexcode.trainer import GenerativeTrainer, lr_factor

TINY = {**TINY_FLEXCODE, "variant": "fix"}


def test_lr_factor_warms_up_linearly_then_decays_by_a_cosine():
    assert [lr_factor(s, 4, 20, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor(4, 4, 20, "cosine") == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, "cosine") == pytest.approx(0.5)
    assert lr_factor(20, 4, 20, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 0, 20, "constant") == 1.0


def _trainer(tiny_data, tmp_path, **extra):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_trainer, init_seed

    from recbole_flexcode.config import FlexConfig
    from recbole_flexcode.model.flexcode import FlexCode
    from recbole_flexcode.pipeline import prepare

    config = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(
        tiny_data, cache_dir=str(tmp_path / "cache"), checkpoint_dir=str(tmp_path / "saved"), **TINY, **extra))
    init_seed(config["seed"], config["reproducibility"])
    train, _, _ = data_preparation(config, create_dataset(config))
    prepare(config, train._dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = FlexCode(config, train._dataset)
    return get_trainer(config["MODEL_TYPE"], "FlexCode")(config, model), train


def test_recbole_picks_the_plugin_trainer_and_the_defaults_keep_a_constant_rate(tiny_data, tmp_path):
    trainer, train = _trainer(tiny_data, tmp_path)
    assert isinstance(trainer, GenerativeTrainer)
    trainer._train_epoch(train, 0)
    assert trainer.scheduler is None and trainer.optimizer.param_groups[0]["lr"] == trainer.learning_rate


def test_warmup_and_cosine_follow_the_steps(tiny_data, tmp_path):
    trainer, train = _trainer(tiny_data, tmp_path, lr_warmup_steps=3, lr_schedule="cosine", epochs=2, learning_rate=0.01)
    steps = len(train)
    trainer._train_epoch(train, 0)
    expected = 0.01 * lr_factor(steps, 3, 2 * steps, "cosine")
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    assert 0 < expected < 0.01
    # a resumed trainer starting at epoch 1 lands on the same rate before its first step
    again, _ = _trainer(tiny_data, tmp_path, lr_warmup_steps=3, lr_schedule="cosine", epochs=2, learning_rate=0.01)
    again.start_epoch = 1
    again._start_schedule(train)
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_bf16_is_ignored_on_a_cpu_without_bf16_arithmetic(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    trainer, _ = _trainer(tiny_data, tmp_path, bf16=True)
    assert trainer.bf16 is False


def test_bf16_on_a_cpu_with_bf16_arithmetic_trains_under_autocast(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    trainer, train = _trainer(tiny_data, tmp_path, bf16=True)
    assert trainer.bf16 is True and trainer.autocast_device == "cpu"
    seen = []
    inner = trainer.model.calculate_loss

    def spy(interaction):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return inner(interaction)

    loss = trainer._train_epoch(train, 0, loss_func=spy)
    assert seen and all(s == (True, torch.bfloat16) for s in seen) and torch.isfinite(torch.as_tensor(loss)).all()
