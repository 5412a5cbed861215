"""FlexConfig: layer precedence, model defaults, CE sampling, overrides, ml-100k resolution, errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

import recbole
from recbole.config import Config

from recbole_flexcode.config import (
    PROPERTIES_DIR,
    ConfigError,
    FlexConfig,
    get_model_class,
    parse_overrides,
)

RECBOLE_PROPERTIES = Path(os.path.dirname(recbole.__file__)) / "properties"
RECBOLE_ML100K = Path(os.path.dirname(recbole.__file__)) / "dataset_example" / "ml-100k"


def _yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


@pytest.fixture
def base(tiny_data):
    return {"data_path": str(tiny_data)}


# ------------------------------------------------------------------------------ precedence


def test_plugin_properties_override_recbole_internals(base):
    plugin = _yaml(PROPERTIES_DIR / "overall.yaml")
    recbole_overall = _yaml(RECBOLE_PROPERTIES / "overall.yaml")
    cfg = FlexConfig("BPR", "ml-tiny", config_dict=base)

    # the protocol itself
    assert cfg["valid_metric"] == "NDCG@10" and recbole_overall["valid_metric"] != "NDCG@10"
    assert cfg["topk"] == [5, 10] and recbole_overall["topk"] != [5, 10]
    assert [m.lower() for m in cfg["metrics"]] == ["recall", "ndcg"]
    assert cfg["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert cfg["eval_args"]["order"] == "TO"
    assert cfg["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    # RecBole's own default for a general model is a random 8/1/1 split in random order
    assert "RS" in recbole_overall["eval_args"]["split"] and recbole_overall["eval_args"]["order"] == "RO"

    # every other plugin default wins over RecBole's
    differing = 0
    for key in ("epochs", "stopping_step", "train_batch_size", "eval_batch_size", "metric_decimal_place", "results_dir"):
        assert cfg[key] == plugin[key], key
        differing += recbole_overall.get(key) != plugin[key]
    assert differing >= 3  # epochs 300->50, stopping_step 10->5, train_batch_size 2048->256


def test_layer_precedence(base, tmp_path):
    recbole_overall = _yaml(RECBOLE_PROPERTIES / "overall.yaml")
    file1 = _write(
        tmp_path / "a.yaml",
        {"epochs": 7, "learning_rate": 0.01, "train_batch_size": 128, "valid_metric": "Recall@10", "seed": 11},
    )
    file2 = _write(tmp_path / "b.yaml", {"seed": 12})
    config_dict = dict(base, learning_rate=0.02, train_batch_size=64)
    cfg = FlexConfig(
        "SASRec", "ml-tiny", config_file_list=[file1, file2], config_dict=config_dict,
        cmd_args=["--train_batch_size=32"],
    )
    assert cfg["weight_decay"] == recbole_overall["weight_decay"]  # RecBole internal, nobody overrides
    assert cfg["stopping_step"] == 5                                  # plugin property beats RecBole's 10
    assert cfg["valid_metric"] == "Recall@10"                         # config file beats plugin property
    assert cfg["epochs"] == 7                                         # config file beats plugin (50) and RecBole (300)
    assert cfg["seed"] == 12                                          # later config file beats earlier one
    assert cfg["learning_rate"] == 0.02                               # config_dict beats config file
    assert cfg["train_batch_size"] == 32                              # cmd_args beat everything

    # peel the layers off one by one
    cfg = FlexConfig("SASRec", "ml-tiny", config_file_list=[file1], config_dict=config_dict)
    assert cfg["train_batch_size"] == 64 and cfg["learning_rate"] == 0.02
    cfg = FlexConfig("SASRec", "ml-tiny", config_file_list=[file1], config_dict=base)
    assert cfg["train_batch_size"] == 128 and cfg["learning_rate"] == 0.01
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=base)
    assert cfg["train_batch_size"] == 256 and cfg["learning_rate"] == recbole_overall["learning_rate"]


def test_cmd_args_as_dict_and_model_from_cmd_args(base):
    cfg = FlexConfig(None, "ml-tiny", config_dict=base, cmd_args=["--model=SASRec", "--epochs=3"])
    assert cfg["model"] == "SASRec" and cfg["epochs"] == 3
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=base, cmd_args={"epochs": 4, "learning_rate": 0.5})
    assert cfg["epochs"] == 4 and cfg["learning_rate"] == 0.5
    with pytest.raises(ConfigError, match="no model"):
        FlexConfig(None, "ml-tiny", config_dict=base)


def test_sys_argv_is_never_read(base, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--learning_rate=0.5", "--epochs=2"])
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=base)
    assert cfg["learning_rate"] == 0.001 and cfg["epochs"] == 50
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=base, cmd_args=["--epochs=9"])
    assert cfg["epochs"] == 9 and cfg["learning_rate"] == 0.001


def test_missing_config_file(base, tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="nope.yaml"):
        FlexConfig("SASRec", "ml-tiny", config_file_list=[missing], config_dict=base)


# -------------------------------------------------------------------- model defaults / CE


def test_recbole_models_keep_their_model_defaults(base):
    sasrec_defaults = _yaml(RECBOLE_PROPERTIES / "model" / "SASRec.yaml")
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=base)
    assert cfg["hidden_size"] == 64 and cfg["n_layers"] == 2
    for key, value in sasrec_defaults.items():
        if isinstance(value, str) and key == "layer_norm_eps":
            value = float(value)  # PyYAML reads 1e-12 as a string, RecBole's loader as a float
        assert cfg[key] == value, key
    # the plugin's own model file is not layered onto RecBole models
    flexcode_only = set(_yaml(PROPERTIES_DIR / "model" / "FlexCode.yaml")) - set(cfg.final_config_dict)
    assert "token_budget" in flexcode_only
    # user layers still override model defaults
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=dict(base, hidden_size=16), cmd_args=["--n_layers=1"])
    assert cfg["hidden_size"] == 16 and cfg["n_layers"] == 1


def test_plugin_model_properties_are_layered(base):
    flexcode_defaults = _yaml(PROPERTIES_DIR / "model" / "FlexCode.yaml")
    cfg = FlexConfig("FlexCode", "ml-tiny", config_dict=base, cmd_args=["--token_budget=5"])
    for key, value in flexcode_defaults.items():
        if key == "train_neg_sample_args" and value is None:
            assert cfg[key]["distribution"] == "none"  # RecBole normalises None to this dict
        elif key != "token_budget":
            assert cfg[key] == value, key
    assert cfg["token_budget"] == 5


def test_ce_models_get_no_negative_sampling(base, monkeypatch):
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=base)
    assert cfg["loss_type"] == "CE"
    assert cfg["train_neg_sample_args"]["distribution"] == "none"
    assert FlexConfig("GRU4Rec", "ml-tiny", config_dict=base)["train_neg_sample_args"]["distribution"] == "none"

    # plain RecBole refuses SASRec on any dataset but ml-100k (its default sampling clashes with CE)
    monkeypatch.setattr(sys, "argv", ["prog"])
    with pytest.raises(ValueError, match="train_neg_sample_args"):
        Config("SASRec", "ml-tiny", config_dict=base)

    # BPR loss: RecBole's default uniform sampling stays
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=base, cmd_args=["--loss_type=BPR"])
    assert cfg["train_neg_sample_args"]["distribution"] == "uniform"
    # a pairwise model keeps its sampling too
    assert FlexConfig("BPR", "ml-tiny", config_dict=base)["train_neg_sample_args"]["distribution"] == "uniform"


def test_user_train_neg_sample_args_are_kept(base):
    sampling = {"distribution": "popularity", "sample_num": 3}
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=dict(base, loss_type="BPR", train_neg_sample_args=sampling))
    assert cfg["train_neg_sample_args"]["distribution"] == "popularity"
    assert cfg["train_neg_sample_args"]["sample_num"] == 3
    # with CE the user's (incompatible) value is not silently replaced: RecBole's own check sees it
    with pytest.raises(ValueError, match="loss_type is CE"):
        FlexConfig("SASRec", "ml-tiny", config_dict=dict(base, train_neg_sample_args=dict(sampling)))


# ------------------------------------------------------------------------- parse_overrides


def test_parse_overrides_yaml_values():
    parsed = parse_overrides(
        [
            "--learning_rate=0.01",
            "--topk=[5,10]",
            "--eval_args={LS: valid_and_test}",
            "--model=abc",
            "--epochs=3",
            "--show_progress=False",
            "--gpu_id=~",
            "--note=",
            "--expr=a=b",
            "--broken=[1,",
        ]
    )
    assert parsed["learning_rate"] == 0.01 and isinstance(parsed["learning_rate"], float)
    assert parsed["topk"] == [5, 10]
    assert parsed["eval_args"] == {"LS": "valid_and_test"}
    assert parsed["model"] == "abc" and isinstance(parsed["model"], str)
    assert parsed["epochs"] == 3 and isinstance(parsed["epochs"], int)
    assert parsed["show_progress"] is False
    assert parsed["gpu_id"] is None
    assert parsed["note"] == ""
    assert parsed["expr"] == "a=b"          # split on the first '=' only
    assert parsed["broken"] == "[1,"        # not YAML: kept as the string given
    # the same key twice with the same value is fine
    assert parse_overrides(["--epochs=2", "--epochs=2"]) == {"epochs": 2}
    assert parse_overrides([]) == {}


def test_parse_overrides_never_evaluates_python():
    parsed = parse_overrides(["--x=__import__('os').getcwd()", "--y=!!python/object/apply:os.getcwd []"])
    assert parsed["x"] == "__import__('os').getcwd()"
    assert parsed["y"] == "!!python/object/apply:os.getcwd []"  # safe_load refuses the tag: kept verbatim


@pytest.mark.parametrize("arg", ["--epochs", "epochs=1", "-e=1", "--=1", "--"])
def test_parse_overrides_rejects_bad_args(arg):
    with pytest.raises(ConfigError, match="cannot parse argument"):
        parse_overrides([arg])


def test_parse_overrides_rejects_conflicting_duplicates():
    with pytest.raises(ConfigError, match="epochs"):
        parse_overrides(["--epochs=1", "--epochs=2"])


def test_parse_overrides_scientific_notation_is_a_float():
    """RecBole's own command line reads 1e-3 as 0.001; PyYAML's safe_load reads it as the string '1e-3'."""
    parsed = parse_overrides(["--learning_rate=1e-3", "--layer_norm_eps=1e-12"])
    assert parsed["learning_rate"] == pytest.approx(0.001)
    assert parsed["layer_norm_eps"] == pytest.approx(1e-12)


# --------------------------------------------------------------------------- ml-100k path


def test_ml100k_uses_wheel_copy_without_user_files(tmp_path):
    cfg = FlexConfig("SASRec", "ml-100k", config_dict={"data_path": str(tmp_path)})
    assert os.path.realpath(cfg["data_path"]) == os.path.realpath(RECBOLE_ML100K)
    (tmp_path / "ml-100k").mkdir()  # an empty folder does not count
    cfg = FlexConfig("SASRec", "ml-100k", config_dict={"data_path": str(tmp_path)})
    assert os.path.realpath(cfg["data_path"]) == os.path.realpath(RECBOLE_ML100K)
    cfg.check_dataset()  # the wheel copy is there


def test_ml100k_prefers_user_folder(tmp_path):
    from recbole.data import create_dataset

    folder = tmp_path / "ml-100k"
    folder.mkdir()
    n_users = 30
    with open(RECBOLE_ML100K / "ml-100k.inter", encoding="utf-8") as src, open(
        folder / "ml-100k.inter", "w", encoding="utf-8"
    ) as dst:
        dst.write(src.readline())
        for line in src:
            if int(line.split("\t", 1)[0]) <= n_users:
                dst.write(line)
    for config_source in ({"config_dict": {"data_path": str(tmp_path)}}, {"cmd_args": [f"--data_path={tmp_path}"]}):
        cfg = FlexConfig("SASRec", "ml-100k", **config_source)
        assert os.path.realpath(cfg["data_path"]) == os.path.realpath(folder)
    cfg.check_dataset()
    # the plugin's ml-100k properties still apply
    assert cfg["user_inter_num_interval"] == "[5,inf)"
    assert "timestamp" in cfg["load_col"]["inter"] and "text_fields" in cfg.parameters["Dataset"]
    # and the data really comes from the user's file (the wheel copy has 943 users)
    dataset = create_dataset(cfg)
    assert dataset.user_num - 1 == n_users


def test_check_dataset_reports_missing_files(tmp_path):
    cfg = FlexConfig("SASRec", "nope", config_dict={"data_path": str(tmp_path)})
    with pytest.raises(ConfigError, match="dataset 'nope' not found") as info:
        cfg.check_dataset()
    assert str(tmp_path / "nope" / "nope.inter") in str(info.value)


# -------------------------------------------------------------------------------- models


def test_get_model_class_resolves_recbole_and_plugin_models():
    from recbole.model.sequential_recommender import SASRec

    assert get_model_class("SASRec") is SASRec
    assert get_model_class("FlexCode").__name__ == "FlexCode"


@pytest.mark.parametrize("name", ["NoSuchModel", "sasrec", "foo.bar"])
def test_unknown_model_is_a_config_error(name, base):
    with pytest.raises(ConfigError, match=f"'{name}'"):
        get_model_class(name)
    with pytest.raises(ConfigError, match=f"'{name}'"):
        FlexConfig(name, "ml-tiny", config_dict=base)
