"""Collaborative embeddings from RecBole SASRec on the training split (FlexCode §4.1.2).

Besides shapes and caching, these tests check that the stage cannot leak evaluation data:
the SASRec only ever sees training rows, and the held-out interactions of a user do not
influence the cache key or the embeddings.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.config import FlexConfig
from recbole_flexcode.embeddings.collaborative import collaborative_embeddings, sasrec_settings
from conftest import tiny_config

FIELDS = ["movie_title", "release_year", "class"]
CF = dict(epochs=2, learning_rate=1e-3, batch_size=256)


class TrainingCalled(RuntimeError):
    """Raised by a patched SASRec.calculate_loss: the stage tried to train (cache miss)."""


def config_dict(data_path, **extra) -> dict:
    return tiny_config(data_path, **{"cf_hidden_size": 16, "cf_inner_size": 32, "cf_n_layers": 1, **extra})


def build(data_path, **extra):
    from recbole.data import create_dataset, data_preparation

    config = FlexConfig("FlexCode", "ml-tiny", config_dict=config_dict(data_path, **extra))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, dataset, train, valid, test


def _raise(*args, **kwargs):
    raise TrainingCalled("SASRec training was started")


def no_training():
    from recbole.model.sequential_recommender import SASRec

    return mock.patch.object(SASRec, "calculate_loss", _raise)


def held_out_targets(loader) -> dict[int, int]:
    inter = loader._dataset.inter_feat
    users, items = inter["user_id"].tolist(), inter["item_id"].tolist()
    assert len(set(users)) == len(users)  # leave-one-out: one target per user
    return dict(zip(users, items))


@pytest.fixture(scope="module")
def stage(tiny_data, tmp_path_factory):
    """Data splits plus one real (recorded) run of the stage, with its own cache directory."""
    from recbole.model.sequential_recommender import SASRec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config, dataset, train, valid, test = build(tiny_data)
        cache_dir = tmp_path_factory.mktemp("cf-cache")
        seen = defaultdict(list)
        original = SASRec.calculate_loss

        def recording(self, interaction):
            seen["user"].append(interaction["user_id"].cpu())
            seen["target"].append(interaction["item_id"].cpu())
            seen["history"].append(interaction["item_id_list"].cpu())
            return original(self, interaction)

        with mock.patch.object(SASRec, "calculate_loss", recording):
            result = collaborative_embeddings(config, train._dataset, cache_dir=str(cache_dir), show_progress=False, **CF)
    finally:
        torch.set_num_threads(threads)
    seen = {k: torch.cat(v) for k, v in seen.items()}
    return dict(root=tiny_data, config=config, dataset=dataset, train=train, valid=valid, test=test, cache_dir=cache_dir, result=result, seen=seen)


def test_shapes_and_padding(stage):
    emb, unc = stage["result"]["embeddings"], stage["result"]["uncertainty"]
    n_items = stage["dataset"].item_num
    assert emb.shape == (n_items, 16) and emb.dtype == np.float32
    assert unc.shape == (n_items,) and unc.dtype == np.float32
    assert np.isfinite(emb).all() and np.isfinite(unc).all()
    assert np.all(unc >= 0)
    assert np.all(emb[0] == 0) and unc[0] == 0
    # trained embeddings of distinct items differ, and two epochs give a non-trivial variance
    assert np.linalg.matrix_rank(emb[1:]) == 16
    assert (unc[1:] > 0).mean() > 0.9


def test_sasrec_settings_take_cf_overrides(stage):
    settings = sasrec_settings(stage["config"])
    assert settings["hidden_size"] == 16 and settings["inner_size"] == 32 and settings["n_layers"] == 1
    assert settings["loss_type"] == "CE"
    assert isinstance(settings["layer_norm_eps"], float)


def test_second_call_is_a_cache_hit(stage):
    files = sorted(p.name for p in stage["cache_dir"].iterdir())
    assert len(files) == 1 and files[0].startswith("cf_emb-") and files[0].endswith(".npz")
    with no_training():
        again = collaborative_embeddings(
            stage["config"], stage["train"]._dataset, cache_dir=str(stage["cache_dir"]), show_progress=False, **CF
        )
    for name in ("embeddings", "uncertainty"):
        np.testing.assert_array_equal(again[name], stage["result"][name])
    assert sorted(p.name for p in stage["cache_dir"].iterdir()) == files


def test_changed_setting_invalidates_cache(stage):
    before = set(stage["cache_dir"].iterdir())
    # a different number of epochs must not be served from the cache...
    with no_training(), pytest.raises(TrainingCalled):
        collaborative_embeddings(
            stage["config"], stage["train"]._dataset, cache_dir=str(stage["cache_dir"]), show_progress=False,
            **{**CF, "epochs": 1},
        )
    # ...and really trains, into a new cache entry
    torch.set_num_threads(1)
    other = collaborative_embeddings(
        stage["config"], stage["train"]._dataset, cache_dir=str(stage["cache_dir"]), show_progress=False,
        **{**CF, "epochs": 1},
    )
    assert len(set(stage["cache_dir"].iterdir()) - before) == 1
    assert not np.array_equal(other["embeddings"], stage["result"]["embeddings"])
    # a SASRec setting (cf_hidden_size) and the learning rate are part of the key too
    config2, _, train2, _, _ = build(stage["root"], cf_hidden_size=8)
    for cfg, kwargs in ((config2, CF), (stage["config"], {**CF, "learning_rate": 5e-3})):
        with no_training(), pytest.raises(TrainingCalled):
            collaborative_embeddings(cfg, train2._dataset, cache_dir=str(stage["cache_dir"]), show_progress=False, **kwargs)


# ----------------------------------------------------------------------------- no leakage


def test_training_rows_hold_no_held_out_item(stage):
    """The dataset the stage gets (train_data._dataset) has no validation/test target of its user."""
    valid_t, test_t = held_out_targets(stage["valid"]), held_out_targets(stage["test"])
    assert set(valid_t) == set(test_t) and len(valid_t) == stage["dataset"].user_num - 1
    inter = stage["train"]._dataset.inter_feat
    users, targets, histories = inter["user_id"], inter["item_id"], inter["item_id_list"]
    for u in valid_t:
        rows = users == u
        held = torch.tensor([valid_t[u], test_t[u]])
        assert rows.any()
        assert not torch.isin(targets[rows], held).any(), u
        assert not torch.isin(histories[rows], held).any(), u
    # the training split is exactly the full sequences minus their last two items
    # (the built dataset holds one row per target, in time order, with its history)
    full = stage["dataset"].inter_feat
    for u in list(valid_t)[:10]:
        rows_full = full["user_id"] == u
        seq = full["item_id"][rows_full].tolist()
        assert seq[-2:] == [valid_t[u], test_t[u]]
        everything = set(seq) | (set(full["item_id_list"][rows_full].flatten().tolist()) - {0})
        train_items = set(targets[users == u].tolist()) | (set(histories[users == u].flatten().tolist()) - {0})
        assert train_items == everything - {valid_t[u], test_t[u]}


def test_sasrec_only_sees_training_rows(stage):
    """Every batch the SASRec trained on came from the training split (recorded during the real run)."""
    seen = stage["seen"]
    inter = stage["train"]._dataset.inter_feat
    assert len(seen["target"]) == CF["epochs"] * len(inter)
    valid_t, test_t = held_out_targets(stage["valid"]), held_out_targets(stage["test"])
    held = torch.zeros(int(seen["user"].max()) + 1, 2, dtype=torch.long)
    for u in valid_t:
        held[u] = torch.tensor([valid_t[u], test_t[u]])
    h = held[seen["user"]]  # [rows, 2]: the held-out items of each row's user
    assert not (seen["target"].unsqueeze(1) == h).any()
    assert not (seen["history"].unsqueeze(-1) == h.unsqueeze(1)).any()
    # and the (user, target) pairs seen are exactly the training rows, each once per epoch
    pairs = lambda u, i: sorted(zip(u.tolist(), i.tolist()))  # noqa: E731
    assert pairs(seen["user"], seen["target"]) == sorted(pairs(inter["user_id"], inter["item_id"]) * CF["epochs"])


def _raw_rows(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], [line.split("\t") for line in lines[1:]]


def _rewrite_held_out(src: Path, dst_root: Path) -> tuple[str, list[str], list[str]]:
    """Copy ml-tiny to ``dst_root`` replacing one user's last two items by other items.

    The replacements are chosen so nothing but the held-out part can change: the user's last
    four timestamps are distinct even as float32 (the split point is unambiguous), every item involved keeps
    >= 5 interactions (5-core filtering unchanged) and has an earlier row in the file (RecBole's
    id mapping, by first appearance, unchanged).  The test checks these consequences directly.
    """
    header, rows = _raw_rows(src / "ml-tiny.inter")
    count = defaultdict(int)
    first_row = {}
    for r, (u, i, *_rest) in enumerate(rows):
        count[i] += 1
        first_row.setdefault(i, r)
    by_user = defaultdict(list)
    for r, row in enumerate(rows):
        by_user[row[0]].append(r)
    popular = sorted(count, key=lambda i: (-count[i], int(i)))
    for user in sorted(by_user, key=int):
        order = sorted(by_user[user], key=lambda r: int(rows[r][3]))
        if len(order) < 8:
            continue
        # RecBole keeps timestamps as float32 (64 s resolution here): compare them as such
        last4 = [float(np.float32(rows[r][3])) for r in order[-4:]]
        if not last4[0] < last4[1] < last4[2] < last4[3]:
            continue
        held = order[-2:]
        if any(count[rows[r][1]] < 7 or first_row[rows[r][1]] >= r for r in held):
            continue
        rated = {rows[r][1] for r in by_user[user]}
        subs = [i for i in popular if i not in rated and first_row[i] < min(held)][:2]
        if len(subs) < 2:
            continue
        old = [rows[r][1] for r in held]
        for r, new in zip(held, subs):
            rows[r] = [rows[r][0], new, *rows[r][2:]]
        folder = dst_root / "ml-tiny"
        folder.mkdir(parents=True)
        (folder / "ml-tiny.inter").write_text("\n".join([header, *("\t".join(x) for x in rows)]) + "\n", encoding="utf-8")
        shutil.copy(src / "ml-tiny.item", folder / "ml-tiny.item")
        return user, old, subs
    raise AssertionError("no suitable user found in ml-tiny")


def test_held_out_interactions_do_not_affect_the_stage(stage, tiny_data, tmp_path):
    user, old, new = _rewrite_held_out(Path(tiny_data) / "ml-tiny", tmp_path)
    config2, dataset2, train2, valid2, test2 = build(tmp_path)
    ds1 = stage["dataset"]
    uid = int(ds1.field2token_id["user_id"][user])
    # the edit reached the evaluation data: that user's validation and test targets changed ...
    tok = lambda ds, i: str(ds.field2id_token["item_id"][i])  # noqa: E731
    assert [tok(ds1, held_out_targets(stage["valid"])[uid]), tok(ds1, held_out_targets(stage["test"])[uid])] == old
    assert [tok(dataset2, held_out_targets(valid2)[uid]), tok(dataset2, held_out_targets(test2)[uid])] == new
    # ... while the id mappings and every training row are unchanged
    for field in ("user_id", "item_id"):
        assert list(dataset2.field2id_token[field]) == list(ds1.field2id_token[field])
    t1, t2 = stage["train"]._dataset.inter_feat, train2._dataset.inter_feat
    for field in ("user_id", "item_id", "item_id_list", "item_length", "timestamp"):
        assert torch.equal(t1[field], t2[field]), field
    # so the stage's cache key is the same: served from the cache (no training), same arrays
    with no_training():
        out = collaborative_embeddings(config2, train2._dataset, cache_dir=str(stage["cache_dir"]), show_progress=False, **CF)
    for name in ("embeddings", "uncertainty"):
        np.testing.assert_array_equal(out[name], stage["result"][name])


def test_training_interactions_do_affect_the_stage(stage, tmp_path):
    """Control for the test above: the key does see the training rows."""
    train = stage["train"]._dataset
    changed = train.copy(train.inter_feat[1:])  # drop one training row
    with no_training(), pytest.raises(TrainingCalled):
        collaborative_embeddings(stage["config"], changed, cache_dir=str(stage["cache_dir"]), show_progress=False, **CF)
    from recbole.data.interaction import Interaction

    inter = Interaction({k: v.clone() for k, v in train.inter_feat.interaction.items()})  # leave the original alone
    row = int((inter["item_length"] > 1).nonzero()[0, 0])
    inter["item_id_list"][row, 0] = inter["item_id_list"][row, 1]  # edit one history item only
    assert not torch.equal(inter["item_id_list"], train.inter_feat["item_id_list"])
    edited = train.copy(inter)
    with no_training(), pytest.raises(TrainingCalled):
        collaborative_embeddings(stage["config"], edited, cache_dir=str(stage["cache_dir"]), show_progress=False, **CF)


def test_sasrec_settings_parse_floats_without_a_recbole_config():
    """A Config unpickled from a checkpoint has no yaml_loader; RecBole's floats must stay floats."""
    settings = sasrec_settings({})
    assert isinstance(settings["layer_norm_eps"], float) and settings["layer_norm_eps"] == 1e-12
    assert settings["loss_type"] == "CE"
    assert sasrec_settings({"cf_hidden_size": 16})["hidden_size"] == 16
