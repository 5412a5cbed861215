"""The speed work of issue #14 item 6 (docs/design.md, "Speed on a 2-core CPU"): every fast path gives the
numbers of the path it replaces, and ml-100k's FlexCode settings reach FlexCode only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.config import ConfigError, FlexConfig, dataset_model_section
from recbole_flexcode.model.generation import shared_prefix_tree, tree_nll
from recbole_flexcode.model.generator import PathGenerator, SemanticIDGenerator
from conftest import tiny_config


# ------------------------------------------------------------------------------ generator


def _generator(vocab=40, path_length=4, seed=0):
    torch.manual_seed(seed)
    return SemanticIDGenerator(vocab, path_length, max_seq_length=6, hidden_size=16, n_heads=2, inner_size=32,
                               n_encoder_layers=1, n_decoder_layers=2, dropout=0.2).eval()


def _split_paths(batch=5, levels=3, seed=1):
    """Paths of every budget split ``s`` of ``batch`` targets: ``s`` collaborative tokens, then semantic ones, then
    a disambiguation token (disjoint id ranges per source and level, as in the tokenizer's vocabulary)."""
    g = torch.Generator().manual_seed(seed)
    cf = torch.randint(0, 4, (batch, levels), generator=g) + 1 + 4 * torch.arange(levels)
    sem = torch.randint(0, 4, (batch, levels), generator=g) + 13 + 4 * torch.arange(levels)
    paths = []
    for s in range(levels + 1):
        disamb = torch.randint(0, 3, (batch, 1), generator=g) + 30
        paths.append(torch.cat([cf[:, :s], sem[:, : levels - s], disamb], dim=1))
    return torch.stack(paths, dim=1)  # [B, L+1, L+1]


def test_prefix_tree_of_budget_splits():
    paths = _split_paths()
    tree = shared_prefix_tree(paths)
    assert tree.n_nodes == 4 + 6  # L + 1 + L(L+1)/2 at L = 3, instead of 16
    # every candidate's position j is a node of depth j holding its own prefix
    assert torch.equal(tree.depth[tree.node_of], torch.arange(4).expand(4, -1))
    for m in range(4):
        for j in range(4):
            rep = tree.rep[tree.node_of[m, j]]
            assert torch.equal(paths[:, rep, :j], paths[:, m, :j])
    # nothing shared but the start token: one BOS position instead of M; one candidate: no tree
    assert shared_prefix_tree(torch.arange(24).reshape(2, 3, 4)).n_nodes == 1 + 3 * 3
    assert shared_prefix_tree(paths[:, :1]) is None


def test_tree_decoding_equals_packed_decoding_values_and_gradients():
    gen = _generator()
    paths = _split_paths()
    items = torch.randint(1, 9, (9, 16))
    seq = torch.randint(1, 9, (5, 6))
    lengths = torch.tensor([6, 3, 1, 5, 2])
    memory, pad = gen.encode_history(gen.token_embedding(torch.arange(9)), seq, lengths)
    fast = gen.sequence_nll(memory, pad, paths)
    slow = PathGenerator.sequence_nll(gen, memory, pad, paths)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    weights = torch.rand(5, 4)
    params = [p for p in gen.parameters() if p.requires_grad]
    g_fast = torch.autograd.grad((weights * fast).sum(), params, retain_graph=True, allow_unused=True)
    g_slow = torch.autograd.grad((weights * slow).sum(), params, allow_unused=True)
    for a, b in zip(g_fast, g_slow):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # one split per row (decoupled router, fixed splits): the packed path itself
    torch.testing.assert_close(gen.sequence_nll(memory, pad, paths[:, 2:3]),
                               PathGenerator.sequence_nll(gen, memory, pad, paths[:, 2:3]))
    del items


def test_tree_nll_backward_is_the_softmax_gradient():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 6, 11, generator=g, dtype=torch.float64, requires_grad=True)
    paths = _split_paths(batch=3, levels=2) % 11
    tree = shared_prefix_tree(_split_paths(batch=3, levels=2))
    assert tree is not None and tree.n_nodes == 3 + 3  # L + 1 + L(L+1)/2 at L = 2
    torch.autograd.gradcheck(lambda x: tree_nll(x, tree, paths), (logits,))
    ref = -torch.log_softmax(logits, -1)[torch.arange(3)[:, None, None], tree.node_of, paths].sum(-1)
    torch.testing.assert_close(tree_nll(logits, tree, paths), ref)


def test_next_token_log_probs_is_the_last_position():
    gen = _generator()
    seq = torch.randint(1, 9, (4, 6))
    memory, pad = gen.encode_history(gen.token_embedding(torch.arange(9)), seq, torch.tensor([6, 2, 4, 1]))
    for k in range(4):
        prefix = torch.randint(1, 40, (4, 7, k))
        torch.testing.assert_close(gen.next_token_log_probs(memory, pad, prefix),
                                   gen.decode_log_probs(memory, pad, prefix)[..., -1, :])
    # more candidates than one packed chunk holds
    prefix = torch.randint(1, 40, (4, 50, 3))
    torch.testing.assert_close(gen.next_token_log_probs(memory, pad, prefix),
                               gen.decode_log_probs(memory, pad, prefix)[..., -1, :])


# ------------------------------------------------------------------------- CF SASRec windows


@pytest.fixture(scope="module")
def tiny_train(tiny_data):
    from recbole.data import create_dataset, data_preparation

    config = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(
        tiny_data, cf_hidden_size=16, cf_inner_size=32, cf_n_layers=1, MAX_ITEM_LIST_LENGTH=10))
    train, _, _ = data_preparation(config, create_dataset(config))
    return config, train._dataset


def test_windows_count_every_training_target_once(tiny_train):
    from recbole_flexcode.embeddings.collaborative import sequence_windows, user_sequences

    config, ds = tiny_train
    inter = ds.inter_feat
    seqs, t0 = user_sequences(ds, 10)
    inputs, targets = sequence_windows(seqs, t0, 10)
    assert inputs.shape[1] == 10 and len(inputs) < len(inter) / 3
    assert int((targets > 0).sum()) == len(inter)
    # (history, target) of every counted window position is a training row's, history truncated to the window
    rows = {}
    hist, length = inter["item_id_list"].numpy(), inter["item_length"].numpy()
    for h, n, t in zip(hist, length, inter["item_id"].numpy()):
        rows.setdefault(int(t), []).append(tuple(h[:n]))
    inputs, targets = inputs.numpy(), targets.numpy()
    for w in range(len(inputs)):
        for j in np.flatnonzero(targets[w]):
            context = tuple(inputs[w, : j + 1])
            assert any(r[-len(context):] == context for r in rows[int(targets[w, j])])
            assert j + 1 >= min(10 - 10 // 2 + 1, 10) or len(context) == j + 1


def test_window_loss_equals_recbole_prefix_losses(tiny_train):
    """On sequences no longer than a window, the all-position loss is RecBole's per-row loss averaged."""
    from recbole.model.sequential_recommender import SASRec

    from recbole_flexcode.embeddings.collaborative import (
        _sub_config, sasrec_settings, sequence_windows, user_sequences, window_loss)

    config, ds = tiny_train
    sub = _sub_config(config, {**sasrec_settings(config), "train_batch_size": 64})
    torch.manual_seed(0)
    model = SASRec(sub, ds).eval()
    seqs, t0 = user_sequences(ds, 10)
    short = [s[:8] for s in seqs[:5]]  # 7 targets each, one window per user
    inputs, targets = sequence_windows(short, t0[:5], 10)
    assert len(inputs) == 5
    fast = window_loss(model, inputs, targets)
    losses = []
    for s in short:
        for t in range(1, len(s)):
            seq = torch.zeros(1, 10, dtype=torch.long)
            seq[0, :t] = torch.as_tensor(s[:t])
            out = model.forward(seq, torch.tensor([t]))
            losses.append(torch.nn.functional.cross_entropy(out @ model.item_embedding.weight.t(),
                                                            torch.as_tensor([s[t]])))
    torch.testing.assert_close(fast, torch.stack(losses).mean(), rtol=1e-5, atol=1e-6)
    assert "gather_indexes" not in model.__dict__  # the method is SASRec's own again


def test_windowed_stage_trains_and_caches(tiny_train, tmp_path):
    from recbole_flexcode.embeddings.collaborative import collaborative_embeddings

    config, ds = tiny_train
    torch.set_num_threads(1)
    out = collaborative_embeddings(config, ds, epochs=2, batch_size=16, cache_dir=str(tmp_path), show_progress=False,
                                   sequences="windows")
    assert out["embeddings"].shape == (ds.item_num, 16) and np.all(out["embeddings"][0] == 0)
    assert (out["uncertainty"][1:] > 0).mean() > 0.9
    prefixes = collaborative_embeddings(config, ds, epochs=2, batch_size=16, cache_dir=str(tmp_path),
                                        show_progress=False, sequences="prefixes")
    assert len(list(tmp_path.iterdir())) == 2  # its own cache entry
    assert not np.array_equal(prefixes["embeddings"], out["embeddings"])


# --------------------------------------------------------------------- per-dataset model settings


@pytest.mark.parametrize("dataset", ["ml-100k", "Amazon_Beauty"])
def test_dataset_flexcode_section_reaches_flexcode_only(dataset):
    from recbole_flexcode.config import _read_yaml, PROPERTIES_DIR

    section = _read_yaml(PROPERTIES_DIR / "dataset" / f"{dataset}.yaml")["FlexCode"]
    model_yaml = _read_yaml(PROPERTIES_DIR / "model" / "FlexCode.yaml")
    flex = FlexConfig("FlexCode", dataset)
    sasrec = FlexConfig("SASRec", dataset)
    for key, value in section.items():
        assert flex[key] == value, key
        if key in model_yaml:
            assert value != model_yaml[key] or key in ("cf_sequences",), key
        assert "FlexCode" not in sasrec.final_config_dict
        if key in _read_yaml(PROPERTIES_DIR / "overall.yaml"):
            assert sasrec[key] == _read_yaml(PROPERTIES_DIR / "overall.yaml")[key], key
    assert "FlexCode" not in flex.final_config_dict
    # the user still wins over the section
    some = next(iter(section))
    assert FlexConfig("FlexCode", dataset, cmd_args=[f"--{some}={model_yaml.get(some, 1)}"])[some] == model_yaml.get(some, 1)


def test_dataset_model_section_is_checked(tmp_path):
    path = tmp_path / "x.yaml"
    assert dataset_model_section(path, "SASRec", {"FlexCode": {"cf_epochs": 3}}) == {}
    assert dataset_model_section(path, "FlexCode", {"FlexCode": {"cf_epochs": 3, "epochs": 4}}) == {"cf_epochs": 3, "epochs": 4}
    with pytest.raises(ConfigError, match="not a setting"):
        dataset_model_section(path, "FlexCode", {"FlexCode": {"cf_epoch": 3}})
    with pytest.raises(ConfigError, match="cf_epochs"):
        dataset_model_section(path, "FlexCode", {"FlexCode": {"cf_epochs": 0}})
    with pytest.raises(ConfigError, match="mapping"):
        dataset_model_section(path, "FlexCode", {"FlexCode": [1]})
    with pytest.raises(ConfigError, match="section"):
        FlexConfig("FlexCode", "ml-100k", cmd_args=["--FlexCode={epochs: 1}"])


def test_model_defaults_row_takes_back_a_dataset_section():
    """Benchmark row ``FlexCode-model_defaults`` on Amazon_Beauty trains with the model YAML's values for
    every key Beauty's FlexCode section sets (the configuration of the first H100 runs)."""
    from recbole_flexcode.benchmark import runner
    from recbole_flexcode.config import _read_yaml, PROPERTIES_DIR

    section = _read_yaml(PROPERTIES_DIR / "dataset" / "Amazon_Beauty.yaml")["FlexCode"]
    defaults = {**_read_yaml(PROPERTIES_DIR / "overall.yaml"), **_read_yaml(PROPERTIES_DIR / "model" / "FlexCode.yaml")}
    spec = runner.parse_row("FlexCode-model_defaults")
    config = FlexConfig(spec.model, "Amazon_Beauty", cmd_args=dict(spec.overrides))
    for key in section:
        assert config[key] == defaults[key], key
    assert FlexConfig("FlexCode", "Amazon_Beauty", cmd_args=dict(runner.parse_row("FlexCode-no_item_head").overrides))[
        "item_head_weight"] == 0.0


def _row_config(row, dataset="Amazon_Beauty"):
    """The configuration benchmark row ``row`` trains with on ``dataset`` (its row settings over the sections)."""
    from recbole_flexcode.benchmark import runner

    spec = runner.parse_row(row)
    return FlexConfig(spec.model, dataset, cmd_args=dict(spec.overrides))


def test_rows_measured_before_the_tie_keep_the_untied_core():
    """Beauty's defaults tie the item head to the history's per-item embedding; the rows of the tail ablation
    measured without it (and the head-less rows, which cannot have it) still train untied."""
    tied = _row_config("FlexCode")
    assert tied["history_item_embedding"] and tied["item_head_tied"] and tied["item_head_shrink"] > 0  # τ: inference only
    for row in ("FlexCode-full_user_last", "FlexCode-no_item_head", "FlexCode-tiger", "FlexCode-cf_only_user_last"):
        c = _row_config(row)
        assert not c["history_item_embedding"] and not c["item_head_tied"] and c["item_head_shrink"] == 0.0, row
    assert _row_config("FlexCode-full_user_last_item_emb")["history_item_embedding"]
    assert not _row_config("FlexCode-full_user_last_item_emb")["item_head_tied"]
    # the tied row of the ablation is today's default core
    row = _row_config("FlexCode-full_user_last_tied")
    for key in ("history_item_embedding", "item_head_tied", "item_head_weight", "item_head_candidates"):
        assert row[key] == tied[key], key
    assert row["item_head_user"] == "mean_last"  # the head it was measured with (Beauty's section reads last since)


def test_rows_measured_with_the_mean_last_head_keep_it():
    """Beauty's section scores with the head reading the latest history state alone (``item_head_user: last``);
    the rows measured with the mean beside it keep ``mean_last`` by name, the plain variant rows follow the
    section, and the rows trained as the section's twin give the section's configuration."""
    assert _row_config("FlexCode")["item_head_user"] == "last"
    for row in ("FlexCode-mean_last", "FlexCode-dropout0", "FlexCode-dropout01", "FlexCode-fix_cf1",
                "FlexCode-fix_cf1_dropout01", "FlexCode-fix_cf1_dropout02", "FlexCode-fix_cf1_dropout01_codes"):
        assert _row_config(row)["item_head_user"] == "mean_last", row
    assert _row_config("FlexCode-semantic_only")["item_head_user"] == "last"
    section, twin = _row_config("FlexCode"), _row_config("FlexCode-last")
    assert all(section[k] == twin[k] for k in ("variant", "item_head_user", "dropout_prob", "item_head_shrink"))
    before = _row_config("FlexCode-mean_last")
    assert before["dropout_prob"] == section["dropout_prob"] and before["variant"] == "full"


def test_rows_measured_with_the_expected_loss_router_keep_it():
    """Beauty's section trains the decoupled router (docs/design.md, "Beauty's router"); the router rows measured
    with the expected-loss router keep it by name, the plain variant rows follow the section, the row the
    decoupled runs were trained as gives the section's configuration, and the expected-loss row differs from the
    section in the router alone."""
    section = _row_config("FlexCode")
    assert section["router_mode"] == "decoupled"
    assert _row_config("FlexCode-no_align")["router_mode"] == "decoupled"  # the plain variant rows follow the section
    for row in ("FlexCode-expected_loss", "FlexCode-no_align_expected_loss", "FlexCode-last", "FlexCode-mean_last",
                "FlexCode-dropout0", "FlexCode-full_user_last", "FlexCode-no_item_head", "FlexCode-model_defaults",
                "FlexCode-rkmeans", "FlexCode-t5"):
        assert _row_config(row)["router_mode"] == "expected_loss", row
    keys = ("variant", "item_head_user", "dropout_prob", "item_head_shrink", "item_head_tied", "align_weight",
            "epochs", "learning_rate", "router_warmup_epochs", "router_warmup_steps")
    twin, before = _row_config("FlexCode-decoupled"), _row_config("FlexCode-expected_loss")
    assert all(section[k] == twin[k] for k in keys + ("router_mode",))
    assert all(section[k] == before[k] for k in keys)
    assert _row_config("FlexCode-no_align_expected_loss")["variant"] == "no_align"
    assert _row_config("FlexCode", "ml-100k")["router_mode"] == "expected_loss"


def test_rows_measured_before_dropout_keep_dropout_zero():
    """Beauty's section trains with dropout 0.1; the rows measured at dropout 0 (the 1 + 2 split beside its
    dropout twins, the untied ablation, the section's own twin) keep 0, and the dropout rows their rates."""
    from recbole_flexcode.benchmark import runner

    def dropout(row, dataset="Amazon_Beauty"):
        return _row_config(row, dataset)["dropout_prob"]

    assert dropout("FlexCode") == dropout("FlexCode-dropout01") == dropout("FlexCode-fix_cf1_dropout01") == 0.1
    assert dropout("FlexCode-semantic_only") == 0.1  # the plain variant rows follow the section
    for row in ("FlexCode-dropout0", "FlexCode-fix_cf1", "FlexCode-full_user_last", "FlexCode-full_user_last_tied",
                "FlexCode-no_item_head"):
        assert dropout(row) == 0.0, row
    assert dropout("FlexCode-fix_cf1_dropout02") == 0.2
    assert dropout("FlexCode-tiger") == runner.RECIPE["dropout_prob"]  # the recipe's own rate wins over the pin
    assert dropout("FlexCode", "ml-100k") == 0.0
