"""Compat fix 8: RecBole's own entry points work for the plugin's models after ``import recbole_flexcode``.

``recbole.quick_start.run_recbole``, ``objective_function`` (what RecBole's HyperTuning calls; hyperopt,
which HyperTuning itself needs, is not a dependency here) and ``load_data_and_model`` on the tiny
ml-100k slice; ``recbole.utils.get_model`` and RecBole's plain ``Config`` for plugin, RecBole and
unknown models.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode import compat
from recbole_flexcode.config import FlexConfig
from conftest import tiny_config

REPO = Path(__file__).resolve().parent.parent

#: tests/test_flexcode.py's base_config_dict (tiny FlexCode), without data_path / cache_dir
FLEXCODE = {
    "token_budget": 3, "codebook_size": 16, "code_dim": 16, "rqvae_hidden_sizes": [32], "rqvae_epochs": 15,
    "rqvae_batch_size": 256, "align_proj_size": 16, "cf_epochs": 2, "cf_hidden_size": 16, "cf_inner_size": 32,
    "cf_n_layers": 1, "router_hidden_size": 8, "hidden_size": 16, "inner_size": 32, "n_encoder_layers": 1,
    "n_decoder_layers": 1, "dropout_prob": 0.1, "beam_size": 20, "train_batch_size": 128,
}
#: a small SOLID (as tests/test_solid.py)
SOLID = {
    "hidden_size": 16, "n_heads": 2, "inner_size": 32, "cf_epochs": 1, "cf_hidden_size": 16, "rqvae_epochs": 5,
    "rqvae_hidden_sizes": [32], "code_dim": 8, "semantic_vocab": 16, "metacode_epochs": 1, "train_batch_size": 512,
}
SETTINGS = {"FlexCode": FLEXCODE, "SOLID": SOLID}
METRICS = {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
NO_SAMPLING = {"distribution": "none", "sample_num": "none", "alpha": "none", "dynamic": False, "candidate_num": 0}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("recbole_entry_points")


@pytest.fixture(scope="module")
def recbole_env(work):
    """Where RecBole's quick start runs: in ``work`` (it writes ./log), with no command-line args to read,
    and every stage hook call recorded as ``(config, train_dataset)``."""
    calls = []
    real = compat.prepare_plugin_stages

    def spy(config, train_dataset):
        calls.append((config, train_dataset))
        return real(config, train_dataset)

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setattr(sys, "argv", ["run_recbole"])
        mp.setattr(compat, "prepare_plugin_stages", spy)
        yield calls


def settings(model, tiny_data, work, tag, **extra) -> dict:
    return tiny_config(tiny_data, cache_dir=str(work / "cache"), checkpoint_dir=str(work / f"saved-{tag}"),
                       **SETTINGS[model], **extra)


def assert_metrics(result):
    assert set(result) == METRICS
    for value in result.values():
        assert math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0


def assert_plugin_config(config, model):
    assert config["model"] == model
    assert config["metrics"] == ["Recall", "NDCG"] and config["valid_metric"] == "NDCG@10"  # properties/overall.yaml
    if model == "FlexCode":  # properties/model/FlexCode.yaml: no sampled negatives (they would become targets)
        assert config["train_neg_sample_args"] == NO_SAMPLING
    else:  # properties/model/SOLID.yaml: one uniform negative per positive
        assert config["train_neg_sample_args"]["distribution"] == "uniform"
        assert config["train_neg_sample_args"]["sample_num"] == 1


@pytest.fixture(scope="module")
def recbole_runs(tiny_data, work, recbole_env):
    """``run_recbole`` once per plugin model: result, the config its stage hook saw, its checkpoint."""
    from recbole.quick_start import run_recbole

    runs = {}
    for model in SETTINGS:
        first = len(recbole_env)
        result = run_recbole(model=model, dataset="ml-tiny", config_dict=settings(model, tiny_data, work, f"run-{model}"))
        hooked = recbole_env[first:]
        checkpoints = sorted((work / f"saved-run-{model}").glob(f"{model}-*.pth"))
        runs[model] = {"result": result, "hooked": hooked, "checkpoints": checkpoints}
    return runs


@pytest.mark.parametrize("model", ["FlexCode", "SOLID"])
def test_run_recbole(recbole_runs, model):
    run = recbole_runs[model]
    assert_metrics(run["result"]["test_result"])
    assert_metrics(run["result"]["best_valid_result"])
    assert len(run["hooked"]) == 1  # RecBole's data_preparation, then the plugin's stage hook, once
    config, train_dataset = run["hooked"][0]
    assert_plugin_config(config, model)
    assert len(train_dataset.inter_feat) > 0 and "item_id_list" in train_dataset.inter_feat
    assert len(run["checkpoints"]) == 1 and compat.is_trusted_checkpoint(run["checkpoints"][0])


@pytest.mark.parametrize("model", ["FlexCode", "SOLID"])
def test_load_data_and_model_reproduces_the_run(recbole_runs, recbole_env, model):
    import recbole.quick_start
    from recbole.utils import get_trainer

    run = recbole_runs[model]
    config, net, _, _, _, test_data = recbole.quick_start.load_data_and_model(str(run["checkpoints"][0]))
    assert type(net).__name__ == model and config["model"] == model
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    result = dict(trainer.evaluate(test_data, load_best_model=False, show_progress=False))
    assert result == pytest.approx(dict(run["result"]["test_result"]), abs=1e-9)


def test_objective_function_flexcode_from_config_file(tiny_data, work, recbole_env, tmp_path):
    """As HyperTuning calls it: the run's settings in a YAML file, the sampled parameters in config_dict."""
    from recbole.quick_start import objective_function

    config_file = tmp_path / "flexcode.yaml"
    config_file.write_text(yaml.safe_dump(
        {"model": "FlexCode", "dataset": "ml-tiny", **settings("FlexCode", tiny_data, work, "objective-FlexCode")}))
    first = len(recbole_env)
    result = objective_function(config_dict={"learning_rate": 0.002}, config_file_list=[str(config_file)])
    assert result["model"] == "FlexCode"
    assert_metrics(result["test_result"])
    assert math.isfinite(float(result["best_valid_score"]))
    (config, _), = recbole_env[first:]
    assert_plugin_config(config, "FlexCode")
    assert config["learning_rate"] == 0.002 and config["codebook_size"] == 16


def test_objective_function_solid_from_config_dict(tiny_data, work, recbole_env):
    from recbole.quick_start import objective_function

    first = len(recbole_env)
    result = objective_function(config_dict={"model": "SOLID", "dataset": "ml-tiny",
                                             **settings("SOLID", tiny_data, work, "objective-SOLID")})
    assert result["model"] == "SOLID"
    assert_metrics(result["test_result"])
    (config, _), = recbole_env[first:]
    assert_plugin_config(config, "SOLID")


# ----------------------------------------------------------------------------------- get_model


def test_get_model_knows_plugin_models_everywhere_recbole_looks_them_up():
    import recbole.config.configurator as configurator
    import recbole.quick_start.quick_start as quick_start
    import recbole.utils
    import recbole.utils.utils
    from recbole.model.sequential_recommender import SASRec

    from recbole_flexcode.config import get_model_class

    for module in (recbole.utils, recbole.utils.utils, configurator, quick_start):
        assert module.get_model is compat.get_model, module.__name__
    for name in ("FlexCode", "SOLID"):
        assert recbole.utils.get_model(name) is get_model_class(name)
    assert recbole.utils.get_model("SASRec") is SASRec


def test_get_model_unknown_name_is_a_clear_error(monkeypatch):
    from recbole.config import Config
    from recbole.utils import get_model

    monkeypatch.setattr(sys, "argv", ["x"])
    for call in (lambda: get_model("Nope"), lambda: Config(model="Nope", dataset="ml-100k")):
        with pytest.raises(ValueError, match="'Nope'") as info:
            call()
        text = "".join(traceback.format_exception(info.value))
        assert "lightgbm" not in text and "FlexCode" in str(info.value)


# -------------------------------------------------------------------------------- plain Config


@pytest.mark.parametrize("model", ["FlexCode", "SOLID"])
def test_plain_config_of_a_plugin_model_is_the_plugin_config(model, monkeypatch):
    from recbole.config import Config

    monkeypatch.setattr(sys, "argv", ["x"])
    plain = Config(model=model, dataset="ml-100k")
    assert type(plain) is Config
    assert_plugin_config(plain, model)
    if model == "FlexCode":
        assert plain.internal_config_dict["train_neg_sample_args"] is None  # properties/model/FlexCode.yaml
    plugin = FlexConfig(model, "ml-100k")
    assert {k: str(v) for k, v in plain.final_config_dict.items()} == {k: str(v) for k, v in plugin.final_config_dict.items()}


_RECBOLE_ALONE = r"""
import json, sys
import numpy as np
# the NumPy 2 names RecBole's Config.compatibility_settings reads; nothing of the plugin is imported
for alias, target in {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}.items():
    if not hasattr(np, alias):
        setattr(np, alias, getattr(np, target))
sys.argv = ["x"]
from recbole.config import Config
out = {}
for model, extra in [("SASRec", {"loss_type": "BPR"}), ("GRU4Rec", {"train_neg_sample_args": None}), ("BPR", {})]:
    config = Config(model=model, dataset="ml-100k", config_dict=extra)
    out[model] = {k: str(v) for k, v in config.final_config_dict.items()}
try:
    Config(model="SASRec", dataset="ml-100k")
except ValueError as exc:
    out["SASRec-default-error"] = str(exc)
out["plugin_loaded"] = "recbole_flexcode" in sys.modules
print(json.dumps(out))
"""


def test_plain_config_of_recbole_models_is_unchanged(monkeypatch):
    """RecBole's own models under RecBole's Config: the same final settings as without the plugin."""
    from recbole.config import Config

    proc = subprocess.run([sys.executable, "-c", _RECBOLE_ALONE], capture_output=True, text=True, timeout=300,
                          cwd=str(REPO.parent), env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    alone = json.loads(proc.stdout.strip().splitlines()[-1])
    assert alone.pop("plugin_loaded") is False

    monkeypatch.setattr(sys, "argv", ["x"])
    for model, extra in [("SASRec", {"loss_type": "BPR"}), ("GRU4Rec", {"train_neg_sample_args": None}), ("BPR", {})]:
        config = Config(model=model, dataset="ml-100k", config_dict=extra)
        assert {k: str(v) for k, v in config.final_config_dict.items()} == alone[model], model
    assert "uniform" in alone["SASRec"]["train_neg_sample_args"]  # RecBole's default, not the plugin's
    with pytest.raises(ValueError) as info:  # RecBole 1.2.1 itself refuses SASRec's CE loss with its default sampling
        Config(model="SASRec", dataset="ml-100k")
    assert str(info.value) == alone["SASRec-default-error"]


# ------------------------------------------------------------------------------ the stage hook


def test_stage_hook_calls_pipeline_prepare_for_plugin_models_only(tiny_data, tmp_path, monkeypatch):
    """The data_preparation of RecBole's quick start runs pipeline.prepare(config, train split) when it exists."""
    import types

    import recbole.quick_start.quick_start as quick_start
    from recbole.data import create_dataset

    fake = types.ModuleType("recbole_flexcode.pipeline")
    calls = []
    fake.prepare = lambda config, train_dataset: calls.append((config["model"], train_dataset)) or "stages"
    monkeypatch.setitem(sys.modules, "recbole_flexcode.pipeline", fake)
    assert quick_start.data_preparation is compat.data_preparation

    configs = {model: FlexConfig(model, "ml-tiny", config_dict=tiny_config(tiny_data, checkpoint_dir=str(tmp_path)))
               for model in ("SOLID", "SASRec")}
    for model, config in configs.items():
        train_data, _, _ = quick_start.data_preparation(config, create_dataset(config))
        if model == "SOLID":
            solid_train = train_data._dataset
    assert calls == [("SOLID", solid_train)]  # none for SASRec
    assert compat.prepare_plugin_stages(configs["SOLID"], solid_train) == "stages"
