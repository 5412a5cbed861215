"""SOLID (recbole_flexcode.model.solid) on a 60-user ml-100k slice: generated parameters,
metacode -> codebook, clipped dual trunk, codebook matching, ablation switches, end to end.

All tests of this module share one cache directory under pytest's tmp dir (never the repo's
``cache/``): the text embeddings, SASRec embeddings, RQ-VAE and metacode are computed once, by
:func:`recbole_flexcode.pipeline.prepare` before the model is built (as ``quick_start.run`` does).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.model.solid import SOLID, semantic_ids_from_codes
from recbole_flexcode.pipeline import prepare, stages_of

TINY = {
    "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "movie_title", "release_year", "class"]},
    "text_fields": ["movie_title", "release_year", "class"],
    "user_inter_num_interval": "[5,inf)",
    "item_inter_num_interval": "[5,inf)",
    "MAX_ITEM_LIST_LENGTH": 20,
    "show_progress": False,
    "hidden_size": 16,
    "n_heads": 2,
    "inner_size": 32,
    "cf_epochs": 1,
    "cf_hidden_size": 16,
    "rqvae_epochs": 5,
    "rqvae_hidden_sizes": [32],
    "code_dim": 8,
    "semantic_vocab": 16,
    "metacode_epochs": 1,
    "epochs": 1,
    "train_batch_size": 512,
    "state": "WARNING",
}


@pytest.fixture(scope="module")
def settings(tiny_data, tmp_path_factory):
    base = dict(TINY, data_path=str(tiny_data), cache_dir=str(tmp_path_factory.mktemp("solid_cache")),
                checkpoint_dir=str(tmp_path_factory.mktemp("solid_ckpt")))
    return base


@pytest.fixture(scope="module")
def built(settings):
    """(config, train_data, default SOLID model) built once for the module."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_flexcode.config import FlexConfig

    config = FlexConfig("SOLID", "ml-tiny", config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test single-thread fixture
    try:
        prepare(config, train_data._dataset)  # the stages, before the model (quick_start.run's order)
        model = SOLID(config, train_data._dataset)
    finally:
        torch.set_num_threads(threads)
    return config, train_data, model


def _build(built, **overrides):
    from recbole_flexcode.config import FlexConfig
    from recbole.utils import init_seed

    config, train_data, _ = built
    cfg = FlexConfig("SOLID", "ml-tiny", config_dict={**dict(config.external_config_dict), **overrides})
    init_seed(cfg["seed"], cfg["reproducibility"])
    prepare(cfg, train_data._dataset)  # this setting's stages (all cached, or none for the ablations)
    return SOLID(cfg, train_data._dataset)


@pytest.fixture(scope="module")
def batch(built):
    _, train_data, _ = built
    return next(iter(train_data))


def _rows_of_distinct_users(model, batch, n=4):
    users = batch[model.USER_ID].numpy()
    _, first = np.unique(users, return_index=True)
    rows = [r for r in first if int(batch[model.ITEM_SEQ_LEN][r]) >= 3][:n]
    assert len(rows) >= 2
    return torch.as_tensor(rows)


# ----------------------------------------------------------------------------- semantic IDs


def test_semantic_ids_mixed_radix_compact():
    ids, v = semantic_ids_from_codes(np.array([[3], [0], [3], [7]]), 8)
    assert v == 3 and ids.tolist() == [2, 1, 2, 3]  # level-1 code, renumbered 1..V by code order
    ids, v = semantic_ids_from_codes(np.array([[1, 0], [0, 5], [1, 0], [0, 2]]), 8)
    # mixed-radix values 8, 5, 8, 2 -> ranks among used values {2, 5, 8}
    assert v == 3 and ids.tolist() == [3, 2, 3, 1]


def test_every_item_has_a_semantic_id(built):
    _, train_data, model = built
    sem = model.item_sem
    assert sem.shape == (train_data._dataset.item_num,)
    assert int(sem[0]) == 0 and bool((sem[1:] >= 1).all()) and int(sem.max()) == model.n_semantic
    assert model.n_semantic <= 16 and len(torch.unique(sem[1:])) == model.n_semantic
    # the item tokenizer the pipeline built: one level of semantic_vocab codes, whose code ids the
    # model's semantic IDs renumber compactly
    tokenizer = stages_of(train_data._dataset).tokenizer
    assert tokenizer.n_levels == 1 and tokenizer.codebook_size == 16
    expected, n = semantic_ids_from_codes(tokenizer.codes("semantic")[1:].numpy(), 16)
    assert n == model.n_semantic and torch.equal(sem[1:], torch.as_tensor(expected))


# ----------------------------------------------------------------------------- dynamic parameters


@torch.no_grad()
def test_generated_parameters_differ_across_users_and_histories(built, batch):
    model = built[2].eval()
    rows = _rows_of_distinct_users(model, batch)
    seq, lens = batch[model.ITEM_SEQ][rows].clone(), batch[model.ITEM_SEQ_LEN][rows].clone()
    p = model.generate_parameters(seq, lens)
    for key in ("weights", "biases", "sem_weights", "item_weights"):
        for layer in p[key]:
            assert layer.shape[0] == len(rows)
            assert (layer[0] - layer[1]).abs().max() > 1e-6, key  # two users, two parameter sets
    assert p["weights"][0].shape == (len(rows), 16, 16) and len(p["weights"]) == 2

    # same user, one history item replaced by an item of another semantic ID -> other W
    r = 0
    pos = int(lens[r]) - 1
    old = int(seq[r, pos])
    new = int(torch.nonzero(model.item_sem != model.item_sem[old])[1])  # [0] is the padding item
    changed = seq.clone()
    changed[r, pos] = new
    q = model.generate_parameters(changed, lens)
    for key in ("weights", "sem_weights", "item_weights"):
        assert (q[key][0][r] - p[key][0][r]).abs().max() > 1e-6, key
        assert torch.allclose(q[key][0][1:], p[key][0][1:])  # the other rows are untouched
    # and the model's scores follow
    u_old, _ = model(seq, lens)
    u_new, _ = model(changed, lens)
    assert (u_old[r] - u_new[r]).abs().max() > 1e-6


@torch.no_grad()
def test_clip_bounds_the_item_residual(built, batch):
    model = built[2].eval()
    t = model.clip_threshold
    assert t == 0.01
    p = model.generate_parameters(batch[model.ITEM_SEQ][:64], batch[model.ITEM_SEQ_LEN][:64])
    for kind in ("weights", "biases"):
        for raw, clipped, sem, total in zip(p[f"item_{kind}"], p[f"item_{kind}_clipped"], p[f"sem_{kind}"], p[kind]):
            assert bool((clipped.abs() <= t).all())
            assert torch.equal(clipped, raw.clamp(-t, t))
            assert torch.allclose(total - sem, clipped, atol=1e-6, rtol=0)
    assert any(bool((w.abs() > t).any()) for w in p["item_weights"])  # the clip is active


def test_metacode_initialises_the_codebook(built, batch):
    model = built[2]
    v, d = model.n_semantic, model.hidden_size
    assert model.metacode.shape == (v, d)
    assert torch.equal(model.codebook.weight[1:].detach(), model.metacode)
    assert bool((model.codebook.weight[0] == 0).all())
    # pre-training changed the table away from its random initialisation
    assert model.metacode_init.shape == (v, d)
    assert (model.metacode - model.metacode_init).abs().max() > 1e-5
    assert len(model.metacode_history) == 1 and math.isfinite(model.metacode_history[0])
    # frozen by default: a training step leaves it equal to the metacode
    assert not model.codebook.weight.requires_grad
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model.calculate_loss(batch)
    loss.backward()
    opt.step()
    assert torch.equal(model.codebook.weight[1:].detach(), model.metacode)
    assert not torch.equal(model.item_embedding.weight, state["item_embedding.weight"])
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    model.eval()


def test_unfrozen_codebook_trains(built, batch):
    model = _build(built, freeze_codebook=False)
    assert torch.equal(model.codebook.weight[1:].detach(), model.metacode)
    assert model.codebook.weight.requires_grad
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.calculate_loss(batch).backward()
    opt.step()
    assert not torch.equal(model.codebook.weight[1:].detach(), model.metacode)


def test_codebook_matching_and_con_loss(built, batch):
    model = built[2]
    seq, lens = batch[model.ITEM_SEQ][:32], batch[model.ITEM_SEQ_LEN][:32]
    emb = model.item_embedding(seq)
    codes, ids, con = model.quantize(emb, seq)
    book = model.codebook.weight[1:].detach()
    mask = seq != 0
    # nearest code in L2
    dist = torch.cdist(emb[mask].detach(), book)
    assert torch.equal(ids[mask] - 1, dist.argmin(1))
    assert torch.equal(codes[mask], book[ids[mask] - 1])
    # L_Con = MSE(E_hist, sg(c*)) over real positions, gradient only into the item embeddings
    expected = (emb[mask] - book[ids[mask] - 1]).pow(2).mean()
    assert torch.allclose(con, expected)
    model.zero_grad(set_to_none=True)
    con.backward()
    assert model.item_embedding.weight.grad is not None and model.item_embedding.weight.grad.abs().sum() > 0
    assert model.codebook.weight.grad is None
    model.zero_grad(set_to_none=True)


@torch.no_grad()
def test_full_sort_agrees_with_predict(built, batch):
    model = built[2].eval()
    rows = torch.arange(16)
    inter = batch[rows]
    full = model.full_sort_predict(inter)
    assert full.shape == (16, model.n_items) and bool(torch.isfinite(full).all())
    point = model.predict(inter)
    assert torch.allclose(full[rows, inter[model.ITEM_ID]], point, atol=1e-5)


def test_pointwise_loss_uses_labels(built, batch):
    model = built[2]
    assert model.LABEL in batch and set(batch[model.LABEL].unique().tolist()) == {0.0, 1.0}
    loss = model.calculate_loss(batch)
    assert loss.dim() == 0 and math.isfinite(float(loss.detach()))
    model.zero_grad(set_to_none=True)


@torch.no_grad()
def test_report_and_checkpoint_reload(built, batch):
    """The report (analysis.model_report) and a model built without stages, as RecBole's
    ``load_data_and_model`` does: it sizes its semantic modules from the checkpoint."""
    import copy

    from recbole_flexcode.analysis import model_report

    config, train_data, model = built
    model.eval()
    rep = model_report(model)
    assert rep["variant"] == "SOLID" and rep["use_semantics"] and rep["codebook_equals_metacode"]
    sem = rep["semantic_ids"]
    assert sem["n_semantic_ids"] == model.n_semantic and sem["sources"] == ["text", "collaborative"]
    assert len(sem["rqvae"]["levels"]) == 1 and 1 <= sem["rqvae"]["levels"][0]["used_codes"] <= 16
    assert rep["metacode_loss"] == model.metacode_history
    json.dumps(rep)  # goes into the run JSON as is

    bare_dataset = copy.copy(train_data._dataset)
    vars(bare_dataset).pop("recbole_flexcode_stages", None)
    assert stages_of(bare_dataset) is None
    bare = SOLID(config, bare_dataset)
    assert bare.variant == "SOLID" and not hasattr(bare, "codebook") and not hasattr(bare, "item_sem")
    bare.load_state_dict(model.state_dict())
    bare.eval()
    assert bare.n_semantic == model.n_semantic
    for name in ("item_sem", "metacode"):
        assert torch.equal(getattr(bare, name), getattr(model, name)), name
    assert torch.equal(bare.codebook.weight, model.codebook.weight)
    inter = batch[torch.arange(16)]
    assert torch.allclose(bare.full_sort_predict(inter), model.full_sort_predict(inter))


# ----------------------------------------------------------------------------- ablations


def test_ablation_switches_change_the_structure(built, batch):
    solid = built[2]
    duet = _build(built, use_semantics=False)
    duet_stages = stages_of(built[1]._dataset)  # what prepare() made for the DUET setting
    static = _build(built, dynamic=False)
    static_stages = stages_of(built[1]._dataset)
    names = lambda m: {n for n, _ in m.named_children()}  # noqa: E731

    assert solid.variant == "SOLID"
    # the item tokenizer is a pipeline stage now, not a submodule: the model keeps what it derived
    # from it (item_sem, the metacode-initialised codebook)
    assert {"item_generator", "sem_generator", "code_decoder", "codebook"} <= names(solid)
    assert "static_layers" not in names(solid)

    assert duet.variant == "DUET"
    assert "item_generator" in names(duet)
    assert not {"sem_generator", "code_decoder", "codebook", "tokenizer", "static_layers"} & names(duet)
    assert not hasattr(duet, "item_sem") and duet_stages.tokenizer is None and "tokenizer" not in duet_stages.timings
    p = duet.generate_parameters(batch[duet.ITEM_SEQ][:8], batch[duet.ITEM_SEQ_LEN][:8])
    assert p["weights"] is p["item_weights"] and "sem_weights" not in p
    assert any(bool((w.abs() > duet.clip_threshold).any()) for w in p["weights"])  # no clip
    assert duet.con_weight == 0.0

    assert static.variant == "static"
    assert "static_layers" in names(static)
    assert not {"item_generator", "sem_generator", "codebook", "tokenizer"} & names(static)
    assert static_stages.tokenizer is None and not static_stages.timings
    assert [tuple(l.weight.shape) for l in static.static_layers.layers] == [(16, 16), (16, 16)]
    with pytest.raises(RuntimeError):
        static.generate_parameters(batch[static.ITEM_SEQ][:2], batch[static.ITEM_SEQ_LEN][:2])
    # a static model gives one set of layers for everyone; all three train
    for m in (duet, static):
        loss = m.calculate_loss(batch)
        assert math.isfinite(float(loss.detach()))
        loss.backward()
    n_params = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert n_params(static) < n_params(duet) < n_params(solid)


# ----------------------------------------------------------------------------- end to end


def _run(settings, tmp_path, **extra):
    from recbole_flexcode.quick_start import run

    out = tmp_path / "result.json"
    result = run("SOLID", "ml-tiny", config_dict={**settings, **extra}, result_file=str(out))
    assert out.is_file()
    assert json.loads(out.read_text())["model"] == "SOLID"
    return result


def test_end_to_end_full_ranking(settings, tmp_path):
    result = _run(settings, tmp_path)
    test = result["test_result"]
    assert {"recall@10", "ndcg@10"} <= set(test)
    assert all(math.isfinite(v) for v in test.values())
    assert result["model_report"]["variant"] == "SOLID"
    assert result["model_report"]["codebook_equals_metacode"]
    # the stages ran (here: loaded from the module's cache) before the model and are timed in the result
    stages = result["timings_s"]["stages"]
    assert set(stages) == {"text_embeddings", "collaborative_embeddings", "tokenizer", "metacode"}
    assert all(v >= 0 for v in stages.values())


def test_end_to_end_sampled_gauc(settings, tmp_path):
    result = _run(
        settings, tmp_path,
        eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni100"},
        metrics=["GAUC"], valid_metric="GAUC",
    )
    for part in ("best_valid_result", "test_result"):
        gauc = result[part]["gauc"]
        assert math.isfinite(gauc) and 0.0 <= gauc <= 1.0

