"""Each RecBole 1.2.1 compatibility fix in recbole_flexcode.compat, proven on the real stack."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import recbole_flexcode
from recbole_flexcode import compat

REPO = Path(__file__).resolve().parent.parent


class Payload:
    """A non-tensor object: torch's weights_only unpickler refuses it."""

    def __init__(self, value):
        self.value = value


# ------------------------------------------------------------------------- imports / numpy


def test_recbole_quick_start_imports_and_uses_plugin_loader():
    import recbole.quick_start
    import recbole.quick_start.quick_start as qs_module

    assert recbole.quick_start.load_data_and_model is compat.load_data_and_model
    assert qs_module.load_data_and_model is compat.load_data_and_model
    from recbole.quick_start import load_data_and_model

    assert load_data_and_model is compat.load_data_and_model


@pytest.mark.parametrize(
    "alias, target",
    [
        ("float", np.float64),
        ("float_", np.float64),
        ("bool8", np.bool_),
        ("bool", np.bool_),
        ("int", np.int_),
        ("complex_", np.complex128),
        ("unicode_", np.str_),
        ("object", np.object_),
        ("long", np.int_),
    ],
)
def test_numpy_aliases(alias, target):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = getattr(np, alias)
    # on an old NumPy the alias may be the builtin type; either way it makes arrays of the target type
    assert np.dtype(value).type is np.dtype(target).type


def test_recbole_metrics_run_with_numpy_aliases():
    """RecBole's NDCG uses ``np.float`` (removed in NumPy 1.24); it must compute the right value."""
    from recbole.evaluator.metrics import NDCG

    pos_index = np.array([[False, True, False], [True, False, False]])
    pos_len = np.array([1, 1])
    metric = NDCG.__new__(NDCG)
    result = metric.metric_info(pos_index, pos_len)
    assert result[:, -1] == pytest.approx([1 / math.log2(3), 1.0])


def test_pkg_resources_available():
    import pkg_resources

    assert pkg_resources.get_distribution("numpy").version == np.__version__
    assert pkg_resources.get_distribution("torch").version == importlib.metadata.version("torch")
    parse = pkg_resources.packaging.version.parse
    assert parse("1.10.0") > parse("1.9.3")
    assert str(parse("2.6.3")) == "2.6.3"
    with pytest.raises(pkg_resources.DistributionNotFound):
        pkg_resources.get_distribution("surely-not-an-installed-distribution-xyz")


def test_pkg_resources_stand_in_offers_what_ray_calls():
    mod = compat._make_pkg_resources()
    assert mod.get_distribution("numpy").version == np.__version__
    assert mod.require("numpy>=1.0")[0].version == np.__version__
    assert mod.packaging.version.parse("1.2") < mod.packaging.version.parse("1.10")
    from pkg_resources._vendor.packaging.version import parse  # noqa: F401  (registered by the stand-in or real)


def test_anomaly_detection_off_after_importing_sequential_models():
    import recbole.model.sequential_recommender  # noqa: F401
    import recbole.model.sequential_recommender.sine  # noqa: F401

    assert torch.is_anomaly_enabled() is False


def test_fixes_are_needed_without_the_plugin():
    """Control: in a fresh interpreter without recbole_flexcode, the problems are real."""
    code = r"""
import importlib.util, json, sys, warnings
import numpy as np, torch
warnings.simplefilter("ignore")
import recbole.model.sequential_recommender.sine
out = {"anomaly": torch.is_anomaly_enabled(), "np_float": hasattr(np, "float"),
       "has_pkg_resources": importlib.util.find_spec("pkg_resources") is not None}
try:
    import recbole.quick_start
    out["quick_start"] = True
except ImportError:
    out["quick_start"] = False
out["plugin_loaded"] = "recbole_flexcode" in sys.modules
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=str(REPO.parent),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["plugin_loaded"] is False
    assert out["anomaly"] is True  # RecBole's sine.py switches it on for the whole process
    if np.lib.NumpyVersion(np.__version__) >= "1.24.0":
        assert out["np_float"] is False
    if not out["has_pkg_resources"]:
        assert out["quick_start"] is False  # ray needs pkg_resources


def test_plugin_works_where_ray_is_absent():
    """recbole.quick_start imports ray; on an image without ray the plugin must still load and run."""
    code = r"""
import sys
sys.modules["ray"] = None  # import of ray fails, as where it is not installed
import recbole_flexcode
from recbole_flexcode import compat, quick_start
import recbole.trainer.trainer as t
print("ok", "recbole.quick_start" in sys.modules, type(t.torch).__name__)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", "False", "_TorchProxy"]


# ------------------------------------------------------------------------ trusted checkpoints


def _refused(_path=None):
    return pytest.raises((pickle.UnpicklingError, RuntimeError))


def test_trusted_checkpoint_round_trip(tmp_path):
    path = tmp_path / "mine.pth"
    obj = {"payload": Payload(3), "state_dict": {"w": torch.arange(4.0)}}
    compat.save_checkpoint(obj, path)
    assert compat.is_trusted_checkpoint(path)
    assert compat.is_trusted_checkpoint(str(path))
    loaded = compat.load_trusted_checkpoint(path)
    assert isinstance(loaded["payload"], Payload) and loaded["payload"].value == 3
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(4.0))
    # map_location and friends pass through
    assert compat.load_trusted_checkpoint(str(path), map_location="cpu")["payload"].value == 3
    # an explicit weights_only=True from the caller is respected even for our own file
    with _refused(path):
        compat.load_trusted_checkpoint(path, weights_only=True)


def test_recbole_config_checkpoint_loads(tmp_path, tiny_data):
    from recbole_flexcode.config import FlexConfig

    cfg = FlexConfig("SASRec", "ml-tiny", config_dict={"data_path": str(tiny_data), "hidden_size": 16})
    path = tmp_path / "cfg.pth"
    compat.save_checkpoint({"config": cfg, "state_dict": {}}, path)
    loaded = compat.load_trusted_checkpoint(path)
    assert loaded["config"]["hidden_size"] == 16 and loaded["config"]["model"] == "SASRec"
    with _refused(path):
        torch.load(path)


def test_a_checkpoint_config_gets_the_keys_added_after_it_was_saved(tiny_data):
    """An older FlexCode checkpoint lacks later keys (``item_head_candidates``): they come at their
    defaults, and every value the run saved stays."""
    from recbole_flexcode.config import FlexConfig

    cfg = FlexConfig("FlexCode", "ml-tiny", config_dict={"data_path": str(tiny_data), "item_head_rescore": 2.0})
    del cfg.final_config_dict["item_head_candidates"]
    cfg.final_config_dict["beam_size"] = 33
    compat._add_new_defaults(cfg)
    assert cfg["item_head_candidates"] == 0
    assert cfg["item_head_rescore"] == 2.0 and cfg["beam_size"] == 33
    sasrec = FlexConfig("SASRec", "ml-tiny", config_dict={"data_path": str(tiny_data)})
    before = dict(sasrec.final_config_dict)
    compat._add_new_defaults(sasrec)  # a RecBole model: nothing to add
    assert sasrec.final_config_dict == before


def test_foreign_and_modified_checkpoints_are_refused(tmp_path):
    mine = tmp_path / "mine.pth"
    compat.save_checkpoint({"payload": Payload(1)}, mine)

    foreign = tmp_path / "copy.pth"
    shutil.copyfile(mine, foreign)  # same bytes, but not written by us
    assert not compat.is_trusted_checkpoint(foreign)
    with _refused(foreign):
        compat.load_trusted_checkpoint(foreign)

    # replaced after saving (different bytes at the trusted path): no longer trusted
    torch.save({"payload": Payload(2)}, mine)
    assert not compat.is_trusted_checkpoint(mine)
    with _refused(mine):
        compat.load_trusted_checkpoint(mine)

    # a plain-tensor checkpoint from anywhere still loads under the safe default
    weights = tmp_path / "weights.pth"
    torch.save({"w": torch.ones(2)}, weights)
    assert torch.equal(compat.load_trusted_checkpoint(weights)["w"], torch.ones(2))


def test_torch_load_default_is_unchanged(tmp_path):
    path = tmp_path / "mine.pth"
    compat.save_checkpoint({"payload": Payload(5)}, path)
    assert compat.is_trusted_checkpoint(path)
    assert torch.load is compat._torch_load and torch.save is compat._torch_save
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") in (None, "", "0")
    with _refused(path):
        torch.load(path)  # weights_only=True is still torch's global default
    assert torch.load(path, weights_only=False)["payload"].value == 5


def test_trust_checkpoint_makes_foreign_file_loadable(tmp_path):
    source = tmp_path / "src.pth"
    torch.save({"payload": Payload(7)}, source)
    with _refused(source):
        compat.load_trusted_checkpoint(source)
    compat.trust_checkpoint(source)
    assert compat.load_trusted_checkpoint(source)["payload"].value == 7
    # trusting is by content: replacing the file revokes it
    torch.save({"payload": Payload(8), "pad": list(range(10))}, source)
    with _refused(source):
        compat.load_trusted_checkpoint(source)


def test_recbole_trainer_sees_the_trusted_torch():
    import recbole.trainer.trainer as trainer_module

    proxy = trainer_module.torch
    assert proxy is not torch
    assert proxy.save is compat.save_checkpoint
    assert proxy.load is compat.load_trusted_checkpoint
    assert proxy.nn is torch.nn and proxy.no_grad is torch.no_grad and proxy.Tensor is torch.Tensor


def test_apply_is_idempotent():
    import recbole.trainer.trainer as trainer_module

    proxy = trainer_module.torch
    recbole_flexcode.compat.apply()
    assert trainer_module.torch is proxy


def test_trainer_gradscaler_notice_is_filtered_and_nothing_else():
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # pytest's own config ignores FutureWarning: start from nothing
        recbole_flexcode.compat._quiet_recbole_notices()
        torch.cuda.amp.GradScaler(enabled=False)  # what RecBole's Trainer.__init__ builds
        warnings.warn("another deprecation", FutureWarning)
    messages = [str(w.message) for w in caught]
    assert messages == ["another deprecation"]


# ------------------------------------------------------------------------- RecBole round trip


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """SASRec trained for one epoch through RecBole's own Trainer, checkpoint saved."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_trainer, init_seed

    from recbole_flexcode.config import FlexConfig

    work = tmp_path_factory.mktemp("compat_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # RecBole's trainer writes log_tensorboard/ into the working directory
        config = FlexConfig(
            "SASRec",
            "ml-tiny",
            config_dict={
                "data_path": str(tiny_data),
                "epochs": 1,
                "MAX_ITEM_LIST_LENGTH": 10,
                "show_progress": False,
                "hidden_size": 16,
                "inner_size": 32,
                "checkpoint_dir": str(work / "saved"),
                "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            },
        )
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"], config["reproducibility"])
        from recbole.model.sequential_recommender import SASRec

        model = SASRec(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        in_memory = dict(trainer.evaluate(test_data, load_best_model=False, show_progress=False))
        best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    torch.set_num_threads(threads)
    return {
        "config": config, "trainer": trainer, "test_data": test_data, "in_memory": in_memory,
        "best_state": best_state, "work": work,
    }


def _assert_finite_metrics(result):
    assert set(result) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    for value in result.values():
        assert math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0
    assert any(float(v) > 0 for v in result.values())  # the comparisons below are not 0 == 0


def test_fit_then_evaluate_best_checkpoint(trained):
    trainer, test_data = trained["trainer"], trained["test_data"]
    path = trainer.saved_model_file
    assert os.path.isfile(path) and compat.is_trusted_checkpoint(path)
    with _refused(path):
        torch.load(path)  # RecBole's checkpoint holds its Config: plain torch refuses it
    _assert_finite_metrics(trained["in_memory"])

    # spoil the in-memory weights: load_best_model must bring the checkpoint back
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p))
    spoiled = dict(trainer.evaluate(test_data, load_best_model=False, show_progress=False))
    result = dict(trainer.evaluate(test_data, load_best_model=True, show_progress=False))
    _assert_finite_metrics(result)
    assert result == trained["in_memory"]
    assert spoiled != result
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, trained["best_state"][k]), k


def test_load_data_and_model_round_trip(trained, monkeypatch):
    import recbole.quick_start
    from recbole.utils import get_trainer

    monkeypatch.chdir(trained["work"])  # load_data_and_model's init_logger writes ./log/
    config, model, dataset, train_data, valid_data, test_data = recbole.quick_start.load_data_and_model(
        trained["trainer"].saved_model_file
    )
    assert config["model"] == "SASRec" and config["hidden_size"] == 16
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained["best_state"][k]), k
    result = dict(
        get_trainer(config["MODEL_TYPE"], config["model"])(config, model).evaluate(
            test_data, load_best_model=False, show_progress=False
        )
    )
    _assert_finite_metrics(result)
    assert result == trained["in_memory"]  # NDCG included: np.float path works on this NumPy


def test_diagnose_item_nll_of_a_full_sort_baseline(trained, monkeypatch, tmp_path):
    """``diagnose --token_fit`` on SASRec: the target's -log softmax per popularity stratum."""
    import json

    from recbole_flexcode import diagnose

    monkeypatch.chdir(trained["work"])
    out = tmp_path / "nll.json"
    assert diagnose.main([trained["trainer"].saved_model_file, "--token_fit", "--max_rows=30", f"--out={out}"]) == 0
    fits = json.loads(out.read_text())["stratum_fit"]
    n_items = fits["valid"]["n_items"]
    assert fits["train"]["rows"] == 30 and sum(r["n_rows"] for r in fits["train"]["by_stratum"]) == 30
    valid_rows = sum(r["n_rows"] for r in fits["valid"]["by_stratum"])
    assert valid_rows == fits["valid"]["rows"] == len(trained["test_data"]._dataset.inter_feat)  # one row per user
    assert all(0 < r["item_nll"] < 50 and 0 <= r["ndcg@10"] <= r["recall@10"] <= 1
               for f in fits.values() for r in f["by_stratum"])
    # the validation recall over all strata is the trainer's own validation Recall@10
    from recbole.utils import get_trainer

    config, model, _, train_data, valid_data, _ = compat.load_data_and_model(trained["trainer"].saved_model_file)
    recbole_valid = get_trainer(config["MODEL_TYPE"], config["model"])(config, model).evaluate(
        valid_data, load_best_model=False, show_progress=False)
    ours = sum(r["recall@10"] * r["n_rows"] for r in fits["valid"]["by_stratum"]) / valid_rows
    assert ours == pytest.approx(float(recbole_valid["recall@10"]), abs=1e-4)

    # scores that do not depend on the item give every target -log(1 / n_items), in every stratum
    monkeypatch.setattr(model, "full_sort_predict", lambda inter: torch.zeros(len(inter), n_items + 1))
    flat = diagnose.stratum_fit(model, valid_data, train_data._dataset, n_strata=3)
    assert flat["uniform_nll"] == pytest.approx(math.log(n_items))
    assert [r["item_nll"] for r in flat["by_stratum"]] == pytest.approx([math.log(n_items)] * len(flat["by_stratum"]))
    assert all(r["recall@10"] == 1 for r in flat["by_stratum"])  # ties rank optimistically, as in evaluation.target_ranks
    assert sum(r["n_rows"] for r in flat["by_stratum"]) == valid_rows


def test_diagnose_by_target_on_a_full_sort_baseline(trained, monkeypatch, tmp_path, capsys):
    """``diagnose --by_target`` on SASRec: validation and test by target stratum, test at validation's mix."""
    import json

    from recbole_flexcode import diagnose
    from recbole_flexcode.evaluation import at_mix

    monkeypatch.chdir(trained["work"])
    out = tmp_path / "by_target.json"
    assert diagnose.main([trained["trainer"].saved_model_file, "--by_target", f"--out={out}"]) == 0
    groups = json.loads(out.read_text())["by_target"]
    n_users = len(trained["test_data"]._dataset.inter_feat)
    assert groups["valid"]["all"]["users"] == groups["test"]["all"]["users"] == n_users
    # the test metric is RecBole's own on the checkpoint
    assert groups["test"]["all"]["ndcg@10"] == pytest.approx(float(trained["in_memory"]["ndcg@10"]), abs=5e-5)
    printed = capsys.readouterr().out
    for key in ("by_train_count", "by_days_since_last_train"):
        valid, test = groups["valid"]["strata"][key], groups["test"]["strata"][key]
        assert [r["stratum"] for r in valid] == [r["stratum"] for r in test]
        assert sum(r["users"] for r in test) == n_users
        # test at test's own mix is test; at validation's mix, the number printed
        assert at_mix(test, test) == pytest.approx(groups["test"]["all"]["ndcg@10"])
        assert f"at validation's mix of these strata {at_mix(test, valid):.4f}" in printed


def test_diagnose_by_target_keeps_the_rows_that_pair_two_models(trained, monkeypatch, tmp_path, capsys):
    """``--rows_out``: every row's rank, consistent with the printed strata; a model paired with itself
    retrieves the same targets; the option checked before the checkpoint loads."""
    import json

    import numpy as np

    from recbole_flexcode import diagnose
    from recbole_flexcode.analysis import paired
    from recbole_flexcode.evaluation import metrics_from_ranks

    monkeypatch.chdir(trained["work"])
    rows_file, out = tmp_path / "rows.npz", tmp_path / "by_target.json"
    ckpt = trained["trainer"].saved_model_file
    assert diagnose.main([ckpt, "--by_target", f"--rows_out={rows_file}", f"--out={out}"]) == 0
    groups = json.loads(out.read_text())["by_target"]
    rows, meta = paired.load_rows(str(rows_file))
    assert meta["model"] == "SASRec" and "--rows_out" in meta["command"]
    for split in ("valid", "test"):
        r = rows[split]
        assert len(r["ranks"]) == groups[split]["all"]["users"]
        assert metrics_from_ranks(r["ranks"], (10,))["ndcg@10"] == pytest.approx(groups[split]["all"]["ndcg@10"])
        # the cross strata printed are those of the saved rows
        cross = [g for g in groups[split]["strata"]["by_count_and_days"] if g["users"]]
        pairs = [p for p in paired.paired_strata(r, r) if p["stratum"] != "all"]
        assert [(p["stratum"], p["users"]) for p in pairs] == [(g["stratum"], g["users"]) for g in cross]
        assert all(p["only_a"] == p["only_b"] == 0 for p in pairs)
        assert np.isfinite(r["gap_days"]).any()  # ml-100k has times
    capsys.readouterr()
    assert diagnose.main(["missing.pth", "--rows_out=rows.npz"]) == 2
    assert "--rows_out goes with --by_target" in capsys.readouterr().err
    assert diagnose.main(["missing.pth", "--by_target", "--rows_out=rows.json"]) == 2
    # the shrinkage τ is FlexCode's item head's: on SASRec one error line, nothing written
    assert diagnose.main([ckpt, "--by_target", "--item_head_shrink=3", f"--rows_out={tmp_path / 'no.npz'}"]) == 2
    assert "needs a FlexCode checkpoint with an item head" in capsys.readouterr().err
    assert not (tmp_path / "no.npz").exists()


def test_atomic_file_with_leading_quote_loads(tmp_path):
    """A title starting with '"' (as in Amazon_Beauty) used to break RecBole's pandas reader."""
    from recbole.data import create_dataset

    from recbole_flexcode.config import FlexConfig

    folder = tmp_path / "quoted"
    folder.mkdir()
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(3):
        for i in range(4):
            rows.append(f"u{u}\ti{i}\t{u * 10 + i}")
    (folder / "quoted.inter").write_text("\n".join(rows) + "\n")
    (folder / "quoted.item").write_text(
        'item_id:token\ttitle:token_seq\n'
        'i0\t"Cucumber Delight" eye gel\n'
        'i1\tplain title\n'
        'i2\tsay "hi" twice\n'
        'i3\tlast\n'
    )
    config = FlexConfig("Pop", "quoted", config_dict={
        "data_path": str(tmp_path), "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]},
    })
    dataset = create_dataset(config)
    assert dataset.item_num == 5  # four items + padding: no line swallowed by a quote
    tokens = set(dataset.field2id_token["title"])
    assert {'"Cucumber', 'Delight"', '"hi"', "last"} <= tokens
