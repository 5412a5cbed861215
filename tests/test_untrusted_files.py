"""Compat fix 7: RecBole's pickled dataset / dataloader caches are unpickled only when trusted.

RecBole 1.2.1 unpickles ``<checkpoint_dir>/<dataset>-SequentialDataset.pth`` (``create_dataset``) and
``<checkpoint_dir>/<dataset>-for-<model>-dataloader.pth`` (``data_preparation``) whenever they exist.
Here such files are planted with a payload that, if ever unpickled, writes a marker file and raises.
"""

from __future__ import annotations

import json
import logging
import math
import pickle

import pytest

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode import compat
from recbole_flexcode.config import FlexConfig
from conftest import tiny_config

SMALL_SASREC = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1}


class Planted:
    """Unpickling this runs code: it writes ``marker`` and raises."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        code = f"open({self.marker!r}, 'w').write('ran'); raise RuntimeError('planted pickle executed')"
        return (exec, (code,))


def plant(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(Planted(marker), f)  # the real pickle: nothing records this file as ours
    return path


def skip_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "not loading" in r.getMessage()]


def build(config):
    from recbole.data import create_dataset, data_preparation

    dataset = create_dataset(config)
    return dataset, data_preparation(config, dataset)


def summary(dataset, loaders):
    """What identifies the filtered dataset and its split."""
    return {
        "users": dataset.user_num,
        "items": dataset.item_num,
        # as a set: RecBole sorts inter_feat in place when it splits, a reloaded dataset may not be
        "inter": sorted(zip(*(dataset.inter_feat[k].tolist() for k in ("user_id", "item_id", "timestamp")))),
        "split": [len(loader._dataset.inter_feat) for loader in loaders],
        "train_targets": loaders[0]._dataset.inter_feat["item_id"].tolist(),
    }


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """The dataset and split built from the atomic files, with nothing in checkpoint_dir."""
    ckpt = tmp_path_factory.mktemp("clean_ckpt")
    config = FlexConfig("SASRec", "ml-tiny", config_dict=tiny_config(tiny_data, checkpoint_dir=str(ckpt), **SMALL_SASREC))
    dataset, loaders = build(config)
    return summary(dataset, loaders)


@pytest.mark.parametrize("where", ["checkpoint_dir", "save_paths"])
def test_planted_dataset_and_dataloaders_are_not_unpickled(tiny_data, tmp_path, caplog, reference, where):
    """(1) create_dataset + data_preparation skip planted caches, warn once per file, rebuild the same data."""
    ckpt, marker = tmp_path / "saved", tmp_path / "payload-ran"
    if where == "checkpoint_dir":  # the names RecBole derives
        dataset_file, loaders_file, extra = ckpt / "ml-tiny-SequentialDataset.pth", ckpt / "ml-tiny-for-SASRec-dataloader.pth", {}
    else:  # dataset_save_path / dataloaders_save_path
        dataset_file, loaders_file = tmp_path / "elsewhere" / "d.pth", tmp_path / "elsewhere" / "l.pth"
        extra = {"dataset_save_path": str(dataset_file), "dataloaders_save_path": str(loaders_file)}
    plant(dataset_file, marker)
    plant(loaders_file, marker)
    config = FlexConfig("SASRec", "ml-tiny", config_dict=tiny_config(tiny_data, checkpoint_dir=str(ckpt), **SMALL_SASREC, **extra))

    caplog.set_level(logging.INFO)
    dataset, loaders = build(config)

    assert not marker.exists()
    warned = skip_warnings(caplog)
    assert len(warned) == 2
    assert str(dataset_file.resolve()) in warned[0] and str(loaders_file.resolve()) in warned[1]
    assert summary(dataset, loaders) == reference
    assert not any("Load filtered dataset" in r.getMessage() or "Load split dataloaders" in r.getMessage() for r in caplog.records)


def test_recbole_pickle_load_checks_the_bytes_it_unpickles(tmp_path):
    """Second line of defence (a file swapped after the existence check): RecBole's pickle.load refuses it."""
    import recbole.data.utils as data_utils

    marker = tmp_path / "payload-ran"
    mine = tmp_path / "mine.pth"
    with open(mine, "wb") as f:
        data_utils.pickle.dump({"ok": 1}, f)  # RecBole's pickle.dump: recorded as written by us
    assert compat.is_trusted_checkpoint(mine)
    with open(mine, "rb") as f:
        assert data_utils.pickle.load(f) == {"ok": 1}

    plant(mine, marker)  # replaced after writing: same path, other bytes
    for path in (mine, plant(tmp_path / "foreign.pth", marker)):
        with open(path, "rb") as f, pytest.raises(compat.UntrustedFileError):
            data_utils.pickle.load(f)
    assert not marker.exists()


def test_quick_start_run_ignores_planted_caches(tiny_data, tmp_path, monkeypatch, caplog):
    """(2) A whole plugin run (SASRec, 1 epoch) never executes planted caches in its checkpoint_dir."""
    from recbole_flexcode.quick_start import run

    monkeypatch.chdir(tmp_path)  # RecBole writes ./log and ./log_tensorboard
    ckpt, marker = tmp_path / "saved", tmp_path / "payload-ran"
    plant(ckpt / "ml-tiny-SequentialDataset.pth", marker)
    plant(ckpt / "ml-tiny-for-SASRec-dataloader.pth", marker)
    out = tmp_path / "result.json"
    result = run("SASRec", "ml-tiny", config_dict=tiny_config(tiny_data, checkpoint_dir=str(ckpt), **SMALL_SASREC),
                 result_file=str(out))
    assert not marker.exists()
    assert len(skip_warnings(caplog)) == 2
    assert json.loads(out.read_text())["model"] == "SASRec"
    assert set(result["test_result"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in result["test_result"].values())
    assert compat.is_trusted_checkpoint(result["checkpoint"])


def test_own_saved_dataset_and_dataloaders_are_reused(tiny_data, tmp_path, caplog):
    """(3) save_dataset / save_dataloaders files written by this process load again; changed ones do not."""
    from recbole.data import create_dataset, data_preparation

    ckpt = tmp_path / "saved"
    config = FlexConfig("SASRec", "ml-tiny", config_dict=tiny_config(
        tiny_data, checkpoint_dir=str(ckpt), save_dataset=True, save_dataloaders=True, **SMALL_SASREC))
    first = create_dataset(config)
    first_loaders = data_preparation(config, first)
    dataset_file, loaders_file = ckpt / "ml-tiny-SequentialDataset.pth", ckpt / "ml-tiny-for-SASRec-dataloader.pth"
    assert compat.is_trusted_checkpoint(dataset_file) and compat.is_trusted_checkpoint(loaders_file)
    expected = summary(first, first_loaders)

    caplog.set_level(logging.INFO)
    again = create_dataset(config)
    again_loaders = data_preparation(config, again)
    messages = [r.getMessage() for r in caplog.records]
    assert any("Load filtered dataset from" in m for m in messages)
    assert any("Load split dataloaders from" in m for m in messages)
    assert not skip_warnings(caplog)
    assert again is not first and summary(again, again_loaders) == expected

    # a byte appended after saving: no longer what we wrote, so rebuilt (and saved anew, trusted again)
    caplog.clear()
    with open(dataset_file, "ab") as f:
        f.write(b"\0")
    assert not compat.is_trusted_checkpoint(dataset_file)
    rebuilt = create_dataset(config)
    assert len(skip_warnings(caplog)) == 1 and not any("Load filtered dataset" in r.getMessage() for r in caplog.records)
    assert compat.is_trusted_checkpoint(dataset_file)
    assert summary(rebuilt, data_preparation(config, rebuilt)) == expected


def test_explicitly_trusted_dataset_file_loads(tiny_data, tmp_path, caplog):
    """A dataset file from elsewhere (an earlier run) loads once the user trusts it."""
    from recbole.data import create_dataset

    config = FlexConfig("SASRec", "ml-tiny", config_dict=tiny_config(tiny_data, checkpoint_dir=str(tmp_path / "a"), **SMALL_SASREC))
    built = create_dataset(config)
    foreign = tmp_path / "earlier-run" / "ml-tiny.pth"
    foreign.parent.mkdir()
    with open(foreign, "wb") as f:
        pickle.dump(built, f)  # plain pickle: not recorded
    config = FlexConfig("SASRec", "ml-tiny", config_dict=tiny_config(
        tiny_data, checkpoint_dir=str(tmp_path / "b"), dataset_save_path=str(foreign), **SMALL_SASREC))

    caplog.set_level(logging.INFO)
    create_dataset(config)
    assert len(skip_warnings(caplog)) == 1

    caplog.clear()
    compat.trust_checkpoint(foreign)
    loaded = create_dataset(config)
    assert any("Load filtered dataset from" in r.getMessage() for r in caplog.records) and not skip_warnings(caplog)
    assert loaded.inter_feat["item_id"].tolist() == built.inter_feat["item_id"].tolist()


def test_recbole_models_that_read_a_file_get_the_guarded_loaders(tmp_path):
    """Pretrained-file loads inside RecBole models (NeuMF, S3Rec, ...) and LDiffRec's np.load(allow_pickle=True)."""
    import numpy as np
    import recbole.model.general_recommender.ldiffrec as ldiffrec

    for name in compat._RECBOLE_TORCH_LOADERS:
        module = __import__(name, fromlist=["torch"])
        assert module.torch.load is compat.load_trusted_checkpoint, name

    marker = tmp_path / "payload-ran"
    planted = tmp_path / "item_emb.npy"
    np.save(planted, np.array([Planted(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        ldiffrec.np.load(planted, allow_pickle=True)  # what LDiffRec calls
    assert not marker.exists()
    plain = tmp_path / "floats.npy"
    np.save(plain, np.eye(3))
    assert (ldiffrec.np.load(plain, allow_pickle=True) == np.eye(3)).all()
    assert ldiffrec.np.float32 is np.float32
