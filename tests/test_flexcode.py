"""The FlexCode model (recbole_flexcode.model.flexcode) on a tiny ml-100k slice.

One small model is built once per session (text embeddings, SASRec, dual tokenizer, paths,
router and generator) and reused; tests that change it work on a deep copy.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import time
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn as nn

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.config import FlexConfig
from recbole_flexcode.embeddings import text as text_mod
from recbole_flexcode.analysis.flexcode import export_artifacts, report, split_losses, token_fit, trie_path_scores
from recbole_flexcode.pipeline import prepare, stages_of
from recbole_flexcode.tokenizer.dual import DualCodebookTokenizer
from recbole_flexcode.tokenizer.router import level_masks
from conftest import TINY_FLEXCODE, FixedRouter, tiny_config

FIELDS = ["movie_title", "release_year", "class"]
L = 3


def base_config_dict(data_path, cache_dir) -> dict:
    return tiny_config(data_path, cache_dir=str(cache_dir), **TINY_FLEXCODE)


class Refit(RuntimeError):
    """Raised by patched training entry points: a stage was recomputed instead of loaded."""


def _raise(*args, **kwargs):
    raise Refit("stage recomputed")


@contextlib.contextmanager
def single_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="session")
def flex(tiny_data, tmp_path_factory):
    """Config, data loaders and one FlexCode model (full variant, staged training)."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_flexcode.model.flexcode import FlexCode

    cache_dir = tmp_path_factory.mktemp("flexcode-cache")
    cfg = base_config_dict(tiny_data, cache_dir)
    with single_thread():
        config = FlexConfig("FlexCode", "ml-tiny", config_dict=cfg)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train, valid, test = data_preparation(config, dataset)
        init_seed(config["seed"], config["reproducibility"])
        t = time.time()
        prepare(config, train._dataset)
        init_seed(config["seed"], config["reproducibility"])
        model = FlexCode(config, train._dataset)
        build_s = time.time() - t
    model.eval()
    torch.manual_seed(0)
    train_batch = next(iter(train))
    test_batch = next(iter(test))[0]
    return dict(
        cfg=cfg, config=config, dataset=dataset, train=train, valid=valid, test=test, model=model,
        cache_dir=cache_dir, build_s=build_s, train_batch=train_batch, test_batch=test_batch,
    )


def make_model(flex, **overrides):
    """Another FlexCode on the same training split with some settings changed."""
    from recbole.utils import init_seed

    from recbole_flexcode.model.flexcode import FlexCode

    config = FlexConfig("FlexCode", "ml-tiny", config_dict={**flex["cfg"], **overrides})
    with single_thread():
        prepare(config, flex["train"]._dataset)
        init_seed(config["seed"], config["reproducibility"])
        return FlexCode(config, flex["train"]._dataset)


@contextlib.contextmanager
def decoding(model, mode, beam_size=None):
    old = (model.decode_mode, model.beam_size)
    model.decode_mode = mode
    if beam_size is not None:
        model.beam_size = beam_size
    try:
        yield model
    finally:
        model.decode_mode, model.beam_size = old


def mixed_split_model(model, seed=0):
    """A copy whose items are spread over all L+1 splits (an untrained router picks split 0)."""
    m = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    m.split_policy.router = FixedRouter(torch.softmax(3 * torch.randn(m.n_items, m.budget + 1, generator=gen), -1))
    return m


# ----------------------------------------------------------------------------- config and construction


def test_config_has_no_negative_sampling(flex):
    config = flex["config"]
    assert config["loss_type"] == "CE"
    assert config["train_neg_sample_args"]["distribution"] == "none"
    batch = flex["train_batch"]
    assert "neg_item_id" not in batch.interaction
    # one training row per target: nothing sampled on top of the training split
    n_rows = sum(len(b) for b in flex["train"])
    assert n_rows == len(flex["train"]._dataset.inter_feat)


def test_construction_stages_and_shapes(flex):
    m = flex["model"]
    n = flex["dataset"].item_num
    assert m.n_items == n
    assert m.tokenizer.paths.shape == (L + 1, n, L + 1)
    assert m.tokenizer.level_tokens("collaborative").shape == m.tokenizer.level_tokens("semantic").shape == (n, L)
    assert m.split_policy.features.shape == (n, 4) and torch.all(m.split_policy.features[0] == 0)
    assert float(m.split_policy.features[1:].min()) >= 0 and float(m.split_policy.features[1:].max()) <= 1
    assert set(stages_of(flex["train"]._dataset).timings) >= {"text_embeddings", "collaborative_embeddings", "tokenizer"}
    assert len(m.tokenizer.spec["collisions"]) == L + 1
    assert m.split_policy.strata.shape == (n - 1,) and int(m.split_policy.strata.max()) < m.split_policy.n_strata
    # staged training: the tokenizer is frozen
    assert not any(p.requires_grad for p in m.tokenizer.parameters())
    # semantic codes come from the text of the items: the tokenizer saw 384-d MiniLM vectors
    assert m.tokenizer.spec["sources"] == {"semantic": {"dims": [384]}, "collaborative": {"dims": [16]}}


def test_split_paths_unique_and_well_formed(flex):
    m = flex["model"]
    lay = m.tokenizer.layout
    real = m.tokenizer.paths[:, 1:]
    for s in range(L + 1):
        p = real[s]
        assert torch.unique(p, dim=0).shape[0] == m.n_items - 1, s
        assert torch.equal(p[:, :s], m.tokenizer.level_tokens("collaborative")[1:, :s])
        assert torch.equal(p[:, s:L], m.tokenizer.level_tokens("semantic")[1:, : L - s])
        assert int(p[:, -1].min()) >= lay.disamb_offset and int(p[:, -1].max()) < lay.vocab_size
    # paths of different splits never coincide
    assert torch.unique(real.reshape(-1, L + 1), dim=0).shape[0] == (L + 1) * (m.n_items - 1)
    assert int(real.min()) >= 1  # BOS is never a target
    for st in m.tokenizer.spec["collisions"]:
        assert 0.0 <= st["collision_rate"] <= 1.0
        assert lay.n_disamb >= st["max_group_size"]


def test_trie_accepts_exactly_the_inference_paths(flex):
    m = mixed_split_model(flex["model"])
    splits = m.item_splits()[1:]
    assert len(torch.unique(splits)) == L + 1  # every split in use
    trie = m.tokenizer.trie(m.item_splits())
    paths, items = m.inference_paths()
    assert len(trie) == m.n_items - 1 and torch.equal(items, torch.arange(1, m.n_items))
    for item, path in zip(items.tolist(), paths.tolist()):
        assert trie.item_of(path) == item
        assert path == m.tokenizer.paths[splits[item - 1], item].tolist()
    # the paths of other splits are not in the trie
    gen = torch.Generator().manual_seed(1)
    for item in torch.randint(1, m.n_items, (50,), generator=gen).tolist():
        for s in range(L + 1):
            if s != int(splits[item - 1]):
                assert not trie.contains(m.tokenizer.paths[s, item].tolist())
    # random token paths are rejected
    real = {tuple(p) for p in paths.tolist()}
    rejected = 0
    for _ in range(200):
        p = torch.randint(1, m.tokenizer.layout.vocab_size, (L + 1,), generator=gen).tolist()
        if tuple(p) not in real:
            assert not trie.contains(p)
            rejected += 1
    assert rejected > 150
    assert not trie.contains(paths[0, :-1].tolist())  # a prefix is not an item
    # a router change rebuilds the trie
    m.split_policy.router = FixedRouter(torch.nn.functional.one_hot(torch.full((m.n_items,), L), L + 1).float())
    assert m.tokenizer.trie(m.item_splits()).item_of(m.tokenizer.paths[L, 1].tolist()) == 1


# ----------------------------------------------------------------------------- loss and gradients


def test_calculate_loss_gradients_staged(flex):
    m = copy.deepcopy(flex["model"])
    m.train()
    with single_thread():
        loss = m.calculate_loss(flex["train_batch"])
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
    router_grads = [p.grad for p in m.split_policy.router.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in router_grads)
    assert m.split_policy.router.mlp[-1].weight.grad.abs().sum() > 0
    gen_grads = [p.grad for p in m.generator.parameters() if p.grad is not None]
    assert gen_grads and sum(float(g.abs().sum()) for g in gen_grads) > 0
    assert all(p.grad is None for p in m.tokenizer.parameters())


def test_training_steps_reduce_loss(flex):
    m = copy.deepcopy(flex["model"])
    batch = flex["train_batch"]
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    with single_thread():
        m.eval()
        with torch.no_grad():
            before = float(m.calculate_loss(batch))
        torch.manual_seed(0)
        for _ in range(15):
            m.train()
            loss = m.calculate_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            after = float(m.calculate_loss(batch))
    assert math.isfinite(after)
    assert after < 0.8 * before, (before, after)


# ----------------------------------------------------------------------------- decoding


@pytest.fixture(scope="module")
def trained(flex):
    """A copy with a few training steps and items spread over all splits (non-trivial scores)."""
    m = copy.deepcopy(flex["model"])
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    with single_thread():
        for i, batch in enumerate(flex["train"]):
            if i == 10:
                break
            m.train()
            loss = m.calculate_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    m = mixed_split_model(m, seed=3)
    m.eval()
    return m


def test_full_sort_predict_beam(flex, trained):
    batch = flex["test_batch"]
    with single_thread(), torch.no_grad(), decoding(trained, "beam", 20):
        scores = trained.full_sort_predict(batch)
    b = len(batch)
    assert scores.shape == (b, trained.n_items)
    finite = torch.isfinite(scores)
    assert torch.all(finite.sum(1) == 20)
    assert not finite[:, 0].any()  # never the padding item
    assert torch.all(scores[~finite] == float("-inf"))
    assert torch.all(scores[finite] <= 0)  # log-probabilities
    # the beam holds real items from the trie, and differs between users
    assert len({tuple(torch.nonzero(r).flatten().tolist()) for r in finite}) > 1


def test_beam_scores_equal_exact_scores(flex, trained):
    batch = flex["test_batch"][torch.arange(16)]
    with single_thread(), torch.no_grad():
        with decoding(trained, "exact"):
            exact = trained.full_sort_predict(batch)
        with decoding(trained, "beam", 20):
            beam = trained.full_sort_predict(batch)
        with decoding(trained, "beam", trained.n_items):
            full_beam = trained.full_sort_predict(batch)
    assert exact.shape == beam.shape == full_beam.shape == (16, trained.n_items)
    assert torch.all(exact[:, 0] == float("-inf")) and torch.isfinite(exact[:, 1:]).all()
    # a beam item's score is its exact sequence log-probability
    hit = torch.isfinite(beam)
    torch.testing.assert_close(beam[hit], exact[hit], atol=1e-4, rtol=1e-4)
    # an exhaustive beam (beam_size >= #items) scores every item exactly ...
    assert torch.isfinite(full_beam[:, 1:]).all()
    torch.testing.assert_close(full_beam[:, 1:], exact[:, 1:], atol=1e-4, rtol=1e-4)
    # ... so its top-10 is the exact top-10
    top_beam, top_exact = full_beam.topk(10, dim=1), exact.topk(10, dim=1)
    torch.testing.assert_close(top_beam.values, top_exact.values, atol=1e-4, rtol=1e-4)
    assert torch.equal(top_beam.indices, top_exact.indices)
    # and the 20-beam finds the exact top-k at least mostly (beam search is approximate)
    overlap = 0
    for r in range(16):
        top10 = set(exact[r].topk(10).indices.tolist())
        overlap += len(top10 & set(torch.nonzero(hit[r]).flatten().tolist()))
    assert overlap >= 0.5 * 16 * 10


def test_predict_equals_exact_score(flex, trained):
    batch = flex["test_batch"][torch.arange(16)]
    with single_thread(), torch.no_grad():
        with decoding(trained, "exact"):
            exact = trained.full_sort_predict(batch)
        pred = trained.predict(batch)
    items = batch["item_id"]
    assert pred.shape == (16,)
    torch.testing.assert_close(pred, exact[torch.arange(16), items], atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- variants


@pytest.mark.parametrize(
    "overrides, split, aligned",
    [
        ({"variant": "semantic_only"}, 0, False),
        ({"variant": "cf_only"}, L, False),
        ({"variant": "fix"}, math.ceil(L / 2), True),
        ({"variant": "no_align"}, None, False),
        ({"variant": "full", "token_budget": 4}, None, True),
    ],
    ids=["semantic_only", "cf_only", "fix", "no_align", "budget4"],
)
def test_variants(flex, overrides, split, aligned):
    m = make_model(flex, **overrides)
    budget = overrides.get("token_budget", L)
    assert m.budget == budget and m.tokenizer.layout.n_levels == budget
    assert m.tokenizer.paths.shape == (budget + 1, m.n_items, budget + 1)
    for s in range(budget + 1):
        assert torch.unique(m.tokenizer.paths[s, 1:], dim=0).shape[0] == m.n_items - 1
    splits = m.item_splits()[1:]
    if split is not None:
        assert m.variant.fixed_split == split
        assert torch.all(splits == split)
        probs = m.split_probs()
        assert torch.all(probs[:, split] == 1)
        paths, items = m.inference_paths()
        assert torch.equal(paths, m.tokenizer.paths[split, items])
    else:
        assert m.variant.fixed_split is None
        assert int(splits.min()) >= 0 and int(splits.max()) <= budget
    if aligned:
        assert m.variant.aligned and m.tokenizer.codebooks.dual.align_weight == pytest.approx(0.1)
    else:
        assert not m.variant.aligned and m.tokenizer.codebooks.dual.align_weight == 0.0
    m.train()
    with single_thread():
        loss = m.calculate_loss(flex["train_batch"])
        assert torch.isfinite(loss)
        loss.backward()
    router = getattr(m.split_policy, "router", None)  # fixed splits have none
    router_used = router is not None and any(p.grad is not None and p.grad.abs().sum() > 0 for p in router.parameters())
    assert router_used == (split is None)
    m.eval()
    with single_thread(), torch.no_grad():
        scores = m.full_sort_predict(flex["test_batch"][torch.arange(4)])
    assert torch.all(torch.isfinite(scores).sum(1) == m.beam_size)


def test_fix_variant_custom_split(flex):
    m = make_model(flex, variant="fix", fixed_cf_tokens=1)
    assert torch.all(m.item_splits() == 1)


@pytest.mark.parametrize(
    "overrides",
    [{"variant": "bogus"}, {"training_mode": "sometimes"}, {"decode_mode": "greedy"}, {"beam_size": 5}, {"token_budget": 0}],
)
def test_invalid_settings_raise(flex, overrides):
    with pytest.raises(ValueError):
        make_model(flex, **overrides)


def test_joint_training_updates_the_tokenizer(flex):
    m = make_model(flex, training_mode="joint", recode_every=1000)
    assert all(p.requires_grad for p in m.tokenizer.parameters())
    before = {k: v.clone() for k, v in m.tokenizer.state_dict().items()}
    batch = flex["train_batch"]
    m.train()
    with single_thread():
        loss = m.calculate_loss(batch)
        assert torch.isfinite(loss)
        loss.backward()
    dual = m.tokenizer.codebooks.dual
    for part in (dual.semantic.encoder, dual.collaborative.encoder, dual.alignment):
        grads = [p.grad for p in part.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.split_policy.router.parameters())
    # the joint loss is the staged loss plus the tokenizer terms on the batch's items
    staged = make_model(flex, min_disamb_tokens=m.tokenizer.layout.n_disamb)  # joint mode reserves disambiguation headroom
    staged.load_state_dict(m.state_dict())
    staged.train(False), m.train(False)
    with torch.no_grad():
        items = torch.unique(batch["item_id"])
        tok = m.tokenizer.loss(items)
        torch.testing.assert_close(m.calculate_loss(batch), staged.calculate_loss(batch) + tok, atol=1e-4, rtol=1e-4)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m.train()
    with single_thread():
        for _ in range(2):
            loss = m.calculate_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    changed = [k for k, v in m.tokenizer.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("codebooks.dual.semantic.") for k in changed)
    assert any(k.startswith("codebooks.dual.collaborative.") for k in changed)
    assert any(k.startswith("codebooks.dual.alignment.") for k in changed)


def test_joint_training_survives_recoding(flex):
    """Every ``recode_every`` steps all items are re-encoded; training must go on through it."""
    # a disambiguation vocabulary wide enough that a re-encoding is never refused
    m = make_model(flex, training_mode="joint", recode_every=2, min_disamb_tokens=64)
    batch = flex["train_batch"]
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m.train()
    recode = mock.patch.object(type(m.tokenizer), "recode", autospec=True, side_effect=type(m.tokenizer).recode)
    with single_thread(), recode as spy:
        for step in range(1, 5):
            loss = m.calculate_loss(batch)
            assert torch.isfinite(loss)
            assert spy.call_count == step // 2  # re-encoded at steps 2 and 4
            if step % 2 == 0:  # the targets now follow the current codebooks
                codes = m.tokenizer.codebooks.encode(m.tokenizer.inputs())
                assert torch.equal(m.tokenizer.level_tokens("collaborative")[1:], m.tokenizer.layout.level_tokens(codes["collaborative"], semantic=False))
                assert torch.equal(m.tokenizer.level_tokens("semantic")[1:], m.tokenizer.layout.level_tokens(codes["semantic"], semantic=True))
                for s in range(L + 1):
                    assert torch.unique(m.tokenizer.paths[s, 1:], dim=0).shape[0] == m.n_items - 1
            opt.zero_grad()
            loss.backward()  # the step that re-encoded must still backpropagate
            opt.step()


# ----------------------------------------------------------------------------- caching


def test_second_construction_hits_every_cache(flex):
    from recbole.model.sequential_recommender import SASRec

    with mock.patch.object(DualCodebookTokenizer, "fit", _raise), mock.patch.object(
        SASRec, "calculate_loss", _raise
    ), mock.patch.object(text_mod, "encode_texts", _raise), mock.patch.object(text_mod, "load_encoder", _raise):
        t = time.time()
        m = make_model(flex)
        elapsed = time.time() - t
    ref = flex["model"]
    assert torch.equal(m.tokenizer.paths, ref.tokenizer.paths) and torch.equal(m.split_policy.features, ref.split_policy.features)
    for (k, v), (k2, v2) in zip(m.tokenizer.state_dict().items(), ref.tokenizer.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert elapsed < max(10.0, 0.5 * flex["build_s"]), (elapsed, flex["build_s"])
    files = sorted(os.listdir(os.path.join(flex["cache_dir"], "ml-tiny")))
    assert sum(f.startswith("text_emb-") for f in files) >= 1
    assert sum(f.startswith("cf_emb-") for f in files) == 1


def test_text_field_change_invalidates_text_cache(flex):
    from recbole.model.sequential_recommender import SASRec

    calls = []

    def fake_encode(texts, **kwargs):
        calls.append(list(texts))
        gen = np.random.default_rng(len(calls))
        v = gen.normal(size=(len(texts), 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cache = os.path.join(flex["cache_dir"], "ml-tiny")
    before = {f for f in os.listdir(cache) if f.startswith("text_emb-")}
    # the collaborative stage does not depend on the text: still a cache hit
    with mock.patch.object(text_mod, "encode_texts", fake_encode), mock.patch.object(SASRec, "calculate_loss", _raise):
        make_model(flex, text_fields=["movie_title"])
    encoded = [t for chunk in calls for t in chunk]  # encoded in a few chunks, for progress lines
    assert len(encoded) == flex["model"].n_items - 1  # every item's text once
    assert all(t.startswith("movie_title: ") and "class:" not in t for t in encoded)
    after = {f for f in os.listdir(cache) if f.startswith("text_emb-")}
    assert len(after - before) == 1
    # and the original field list is still served from the cache
    with mock.patch.object(text_mod, "encode_texts", _raise), mock.patch.object(DualCodebookTokenizer, "fit", _raise):
        make_model(flex)


# ----------------------------------------------------------------------------- reporting and end to end


def test_export_artifacts(flex, tmp_path):
    m = mixed_split_model(flex["model"])
    written = export_artifacts(m, str(tmp_path / "art"))
    csv_path, png_path = tmp_path / "art" / "item_splits.csv", tmp_path / "art" / "split_vs_popularity.png"
    assert sorted(written) == sorted([str(csv_path), str(png_path)])
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == m.n_items - 1
    assert [int(r["item_id"]) for r in rows] == list(range(1, m.n_items))
    splits = m.item_splits()[1:].tolist()
    for r, s, c in zip(rows, splits, m.item_counts[1:]):
        assert int(r["cf_tokens"]) == s and int(r["cf_tokens"]) + int(r["semantic_tokens"]) == L
        assert int(r["train_interactions"]) == int(c)
        assert 0.0 <= float(r["alpha"]) <= 1.0
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path / "art") if p.endswith(".tmp") or ".tmp." in p]


def test_report(flex):
    rep = report(flex["model"])
    assert rep["variant"] == "full" and rep["token_budget"] == L
    assert sum(rep["split_histogram"]) == flex["model"].n_items - 1
    assert len(rep["collisions"]) == L + 1
    json.dumps(rep)  # JSON-serialisable

    # the fingerprints name the content of each stage's output: the text and CF embeddings as their
    # stages give them again (cache hits), the tokenizer's paths as the model holds them
    import logging

    from recbole_flexcode.embeddings.cache import cache_key
    from recbole_flexcode.embeddings.stages import collaborative_stage, text_stage
    from recbole_flexcode.pipeline import stage_cache_dir

    log = logging.getLogger("test")
    directory = stage_cache_dir(flex["config"], log)
    text, _ = text_stage(flex["config"], flex["train"]._dataset, directory, False, log)
    cf = collaborative_stage(flex["config"], flex["train"]._dataset, directory, False, log)
    prints = rep["stage_fingerprints"]
    assert prints["inputs"] == {"semantic": [cache_key(embedding=text)], "collaborative": [cache_key(embedding=cf["embeddings"])]}
    assert prints["inputs"]["semantic"] != prints["inputs"]["collaborative"]
    assert prints["tokenizer"] == flex["model"].tokenizer.spec["cache_key"]
    assert prints["paths"] == cache_key(paths=flex["model"].tokenizer.paths.cpu().numpy())
    changed = flex["model"].tokenizer.paths.cpu().numpy().copy()
    changed[0, 1, 0] += 1
    assert cache_key(paths=changed) != prints["paths"]


def test_quick_start_run_end_to_end(flex, tmp_path, monkeypatch):
    from recbole_flexcode.quick_start import run

    monkeypatch.chdir(tmp_path)  # RecBole writes ./log and ./log_tensorboard
    result_file = tmp_path / "out" / "flexcode.json"
    cfg = {**flex["cfg"], "checkpoint_dir": str(tmp_path / "saved")}
    with single_thread():
        result = run("FlexCode", "ml-tiny", config_dict=cfg, result_file=str(result_file), command="pytest")
    assert result_file.is_file()
    on_disk = json.loads(result_file.read_text())
    assert on_disk["model"] == "FlexCode" and on_disk["dataset"] == "ml-tiny"
    for name in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
        value = result["test_result"][name]
        assert math.isfinite(value) and 0.0 <= value <= 1.0
        assert on_disk["test_result"][name] == pytest.approx(value)
    assert result["n_test_users"] == flex["dataset"].user_num - 1
    rep = on_disk["model_report"]
    assert len(rep["collisions"]) == L + 1
    assert all(0.0 <= c["collision_rate"] <= 1.0 for c in rep["collisions"])
    for name in ("semantic", "collaborative"):
        st = rep["tokenizer"][name]
        assert math.isfinite(st["recon_mse"]) and len(st["levels"]) == L
    assert sum(rep["split_histogram"]) == flex["dataset"].item_num - 1
    assert set(on_disk["popularity_groups"]) >= {"head", "tail", "all"}
    artifacts = on_disk["artifacts"]
    assert any(a.endswith("item_splits.csv") for a in artifacts)
    assert all(os.path.isfile(a) for a in artifacts)
    assert os.path.isfile(on_disk["checkpoint"])
    strata = on_disk["diagnostics"]["strata"]
    assert sum(r["n_targets"] for r in strata) == flex["dataset"].user_num - 1  # one validation row per user

    # the diagnose CLI reloads the checkpoint and reproduces the stored block
    from recbole_flexcode import diagnose

    out = tmp_path / "diag.json"
    with single_thread():
        assert diagnose.main([on_disk["checkpoint"], "--trust", f"--out={out}"]) == 0
    again = json.loads(out.read_text())
    for mine, stored in zip(again["strata"], strata):
        assert mine["n_targets"] == stored["n_targets"]
        assert mine["router_split_histogram"] == stored["router_split_histogram"]
        if stored["n_targets"]:
            assert mine["mean_nll_by_split"] == pytest.approx(stored["mean_nll_by_split"], rel=1e-4)
    assert diagnose.main([str(tmp_path / "missing.pth")]) == 2
    with single_thread():  # the item head's sweeps need an item head: one clear error, no sweep
        assert diagnose.main([on_disk["checkpoint"], "--trust", "--candidates_sweep=0,20"]) == 2
        assert diagnose.main([on_disk["checkpoint"], "--trust", "--prior_sweep=0,1"]) == 2
        assert diagnose.main([on_disk["checkpoint"], "--trust", "--shrink_sweep=0,10"]) == 2
    # --token_fit: validation in full, training rows capped
    fit_out = tmp_path / "fit.json"
    with single_thread():
        assert diagnose.main([on_disk["checkpoint"], "--trust", "--token_fit", "--max_rows=20", f"--out={fit_out}"]) == 0
        assert diagnose.main([on_disk["checkpoint"], "--trust", "--token_fit", "--max_rows=0"]) == 2
    written = json.loads(fit_out.read_text())
    fit = written["token_fit"]
    assert fit["valid"]["rows"] == sum(r["n_targets"] for r in strata) and fit["train"]["rows"] == 20
    # beam-search recall per stratum, weighted back together, is the run's best validation recall
    ranks = written["stratum_fit"]["valid"]["by_stratum"]
    recall = sum(r["recall@10"] * r["n_rows"] for r in ranks) / sum(r["n_rows"] for r in ranks)
    assert recall == pytest.approx(float(on_disk["best_valid_result"]["recall@10"]), abs=1e-4)
    assert all("item_nll" not in r for r in ranks)  # beam scores are not a softmax


def test_router_warmup_trains_every_split_and_leaves_the_router_alone(flex):
    m = make_model(flex, router_warmup_steps=2)
    m.train()
    batch = flex["train_batch"]
    seen_nll_weights = []
    original = m.generator.sequence_nll

    last_nll = []

    def spy(memory, pad, paths):
        seen_nll_weights.append(paths.shape[1])
        out = original(memory, pad, paths)
        last_nll[:] = [out.detach()]
        return out

    m.generator.sequence_nll = spy
    with single_thread():
        for step in range(3):
            m.zero_grad(set_to_none=True)
            loss = m.calculate_loss(batch)
            loss.backward()
            router_grad = sum(float(p.grad.abs().sum()) for p in m.split_policy.router.parameters() if p.grad is not None)
            if step < 2:
                assert router_grad == 0.0, f"router trained during warm-up step {step}"
                # every split weighted equally; no router regularisers
                assert float(loss) == pytest.approx(m.arg_weight * float(last_nll[0].mean(-1).mean()), rel=1e-5)
            else:
                assert router_grad > 0.0, "router not trained after warm-up"
    # every step decodes the target under all L+1 splits
    assert seen_nll_weights == [L + 1] * 3
    assert int(m.split_policy.steps) == 3
    # evaluation never counts as a training step
    m.eval()
    with torch.no_grad():
        m.calculate_loss(batch)
    assert int(m.split_policy.steps) == 3


def test_router_warmup_draws_real_one_hot_splits(flex):
    m = make_model(flex, router_warmup_steps=5)
    torch.manual_seed(0)
    probs = m.split_policy._warmup_plan(flex["train_batch"]["item_id"]).history_probs
    assert probs.shape == (m.n_items, L + 1)
    assert torch.all(probs.sum(1) == 1) and torch.all((probs == 0) | (probs == 1))
    # with ~60 items every split is drawn
    assert torch.all(probs[1:].sum(0) > 0)


def test_negative_router_warmup_is_refused(flex):
    with pytest.raises(ValueError, match="router_warmup_steps"):
        make_model(flex, router_warmup_steps=-1)


def test_diagnose_reports_split_losses_per_stratum(flex):
    m = copy.deepcopy(flex["model"])
    with single_thread():
        d = split_losses(m, flex["valid"])
    rows = d["strata"]
    assert len(rows) == m.split_policy.n_strata
    n_valid = len(flex["valid"]._dataset.inter_feat)
    assert sum(r["n_targets"] for r in rows) == n_valid
    for r in rows:
        if r["n_targets"]:
            assert len(r["mean_nll_by_split"]) == L + 1
            assert all(math.isfinite(x) and x > 0 for x in r["mean_nll_by_split"])
            assert r["best_split"] == int(np.argmin(r["mean_nll_by_split"]))
    assert sum(sum(r["router_split_histogram"]) for r in rows) == m.n_items - 1
    # the per-stratum means agree with a direct per-row computation
    nlls, strata = [], []
    with torch.no_grad():
        for batch in flex["valid"]:
            target = batch[0][m.ITEM_ID]
            memory, pad = m.forward(batch[0][m.ITEM_SEQ], batch[0][m.ITEM_SEQ_LEN])
            nlls.append(m.generator.sequence_nll(memory, pad, m.tokenizer.paths[:, target].permute(1, 0, 2)))
            strata.append(m.split_policy.strata[target - 1])
    nll, stratum = torch.cat(nlls).double(), torch.cat(strata)
    for r in rows:
        sel = stratum == r["stratum"]
        assert int(sel.sum()) == r["n_targets"]
        if r["n_targets"]:
            assert r["mean_nll_by_split"] == pytest.approx(nll[sel].mean(0).tolist(), rel=1e-5)


def test_token_diagnose_splits_the_path_loss_by_position(flex):
    m = copy.deepcopy(flex["model"])
    with single_thread():
        fit = token_fit(m, flex["valid"], topk=5)
    n_valid = len(flex["valid"]._dataset.inter_feat)
    assert fit["rows"] == n_valid and sum(g["n_rows"] for g in fit["groups"]) == n_valid
    splits = m.item_splits()
    # per (stratum, split) the positions add up to the sequence NLL of the router's path
    nll, keys = [], []
    with torch.no_grad():
        for batch in flex["valid"]:
            target = batch[0][m.ITEM_ID]
            memory, pad = m.forward(batch[0][m.ITEM_SEQ], batch[0][m.ITEM_SEQ_LEN])
            nll.append(m.generator.sequence_nll(memory, pad, m.tokenizer.paths[splits[target], target][:, None])[:, 0])
            keys.append(torch.stack([m.split_policy.strata[target - 1], splits[target]], 1))
    nll, keys = torch.cat(nll).double(), torch.cat(keys)
    for g in fit["groups"]:
        sel = (keys[:, 0] == g["stratum"]) & (keys[:, 1] == g["split"])
        assert int(sel.sum()) == g["n_rows"] > 0
        assert sum(g["mean_nll_by_position"]) == pytest.approx(nll[sel].mean().item(), rel=1e-5)
        assert g["sources"] == ["cf"] * g["split"] + ["sem"] * (L - g["split"]) + ["disamb"]
        assert all(0 <= a <= b <= 1 for a, b in zip(g["top1_by_position"], g["top5_by_position"]))
        # renormalising over the trie's allowed tokens can only raise the gold token's probability
        assert all(0 <= c <= f + 1e-6 for c, f in zip(g["mean_trie_nll_by_position"], g["mean_nll_by_position"]))
        assert g["item_nll"] == pytest.approx(sum(g["mean_trie_nll_by_position"]))
    # the trie-normalised item log-probabilities of one user sum to one over the catalogue
    batch = next(iter(flex["valid"]))[0][torch.arange(1)]
    with torch.no_grad():
        memory, pad = m.forward(batch[m.ITEM_SEQ], batch[m.ITEM_SEQ_LEN])
        items = torch.arange(1, m.n_items)
        path = m.tokenizer.paths[splits[items], items]
        lp = m.generator.decode_log_probs(memory.expand(len(items), -1, -1), pad.expand(len(items), -1), path[:, None, :-1])[:, 0]
        nll, above = trie_path_scores(lp, path, m.tokenizer.trie(m.item_splits()))
    total = (-nll.double().sum(1)).exp()
    # exactly one item is top-1 at every step of its path: the greedy decode
    assert int((above == 0).all(1).sum()) == 1
    assert total.sum().item() == pytest.approx(1.0, abs=1e-4)
    # a row cap is honoured on training batches too
    with single_thread():
        capped = token_fit(m, flex["train"], max_rows=7)
    assert capped["rows"] == 7 and sum(g["n_rows"] for g in capped["groups"]) == 7


def test_history_item_embedding_gives_history_items_their_own_parameters(flex):
    plain = make_model(flex)
    assert plain.history_id_embedding is None
    m = make_model(flex, history_item_embedding=True)
    assert m.history_id_embedding.weight.shape == (m.n_items, m.generator.hidden_size)
    probs = m.split_probs()
    # zero at start: the same history representation as the paper's model
    assert torch.equal(m._item_vectors(probs), m.generator.item_table(m.tokenizer.level_tokens("collaborative"), m.tokenizer.level_tokens("semantic"), *level_masks(probs, L)))
    m.train()
    batch = flex["train_batch"]
    m.calculate_loss(batch).backward()
    grad = m.history_id_embedding.weight.grad
    in_history = torch.zeros(m.n_items, dtype=torch.bool)
    in_history[batch[m.ITEM_SEQ].unique()] = True
    in_history[0] = False  # padding
    nonzero = grad.abs().sum(1) > 0
    assert bool(nonzero[in_history].all()) and not bool(nonzero[~in_history].any())
    with torch.no_grad():
        m.history_id_embedding.weight[1:] += 1.0
    assert not torch.equal(m._item_vectors(probs), m.generator.item_table(m.tokenizer.level_tokens("collaborative"), m.tokenizer.level_tokens("semantic"), *level_masks(probs, L)))


def test_diagnose_skips_fixed_split_variants(flex):
    m = make_model(flex, variant="cf_only")
    assert split_losses(m, flex["valid"]) is None


# ----------------------------------------------------------------------------- decoupled router


def test_router_mode_settings_are_checked(flex):
    with pytest.raises(ValueError, match="router_mode"):
        make_model(flex, router_mode="sometimes")
    with pytest.raises(ValueError, match="warm-up > 0"):
        make_model(flex, router_mode="decoupled", router_warmup_epochs=0)
    # fixed-split variants have no router to decouple: no warm-up needed
    assert make_model(flex, router_mode="decoupled", variant="fix").variant.fixed_split is not None
    with pytest.raises(ValueError, match="not both"):
        make_model(flex, router_warmup_steps=3, router_warmup_epochs=1)
    with pytest.raises(ValueError, match=">= 0"):
        make_model(flex, router_warmup_epochs=-1)


def test_router_warmup_in_epochs_counts_the_trainers_steps(flex):
    steps_per_epoch = len(flex["train"])  # RecBole's training loader: batches per epoch
    assert make_model(flex, router_warmup_epochs=2).split_policy.warmup_steps == 2 * steps_per_epoch
    assert make_model(flex, router_warmup_epochs=0.5).split_policy.warmup_steps == math.ceil(0.5 * steps_per_epoch)
    # the decoupled router's default warm-up is router_decoupled_warmup_epochs (5); the expected-loss router has none
    default = flex["config"]["router_decoupled_warmup_epochs"]
    assert default == 5
    assert make_model(flex, router_mode="decoupled").split_policy.warmup_steps == default * steps_per_epoch
    assert flex["model"].split_policy.warmup_steps == 0


def test_decoupled_router_fits_the_split_posterior_then_freezes(flex):
    m = make_model(flex, router_mode="decoupled", router_warmup_steps=1)
    # a router that is not uniform, so that the stratum weighting of its loss shows in the value
    torch.manual_seed(5)
    with torch.no_grad():
        nn.init.normal_(m.split_policy.router.mlp[-1].weight, std=2.0)
        nn.init.normal_(m.split_policy.router.mlp[-1].bias, std=2.0)
    m.train()
    batch = flex["train_batch"]
    target = batch[m.POS_ITEM_ID]
    calls = []
    original = m.generator.sequence_nll

    def spy(memory, pad, paths):
        out = original(memory, pad, paths)
        calls.append((paths.detach().clone(), out.detach().clone()))
        return out

    m.generator.sequence_nll = spy
    gen_params = [p for p in m.generator.parameters() if p.requires_grad]

    # warm-up step: loss = uniform generator loss + router's expected *detached* loss + regularisers
    torch.manual_seed(3)
    m.zero_grad(set_to_none=True)
    with single_thread():
        loss = m.calculate_loss(batch)
        loss.backward()
    paths, nll = calls[-1]
    assert paths.shape[1] == L + 1
    router_grad = sum(float(p.grad.abs().sum()) for p in m.split_policy.router.parameters() if p.grad is not None)
    assert router_grad > 0.0
    with torch.no_grad():
        probs = m.split_policy.router(m.split_policy.features)
        from recbole_flexcode.tokenizer.router import popularity_smoothness, stratified_load_balance

        # the router fits the posterior over splits given the target, each stratum weighted equally
        posterior = torch.softmax(-nll, -1)
        ce = -(posterior * probs[target].log()).sum(-1)
        stratum = m.split_policy.strata[target - 1]
        per_stratum = [ce[stratum == k].mean() for k in range(m.split_policy.n_strata) if bool((stratum == k).any())]
        expected = (
            m.arg_weight * nll.mean(-1).mean()
            + torch.stack(per_stratum).mean()
            + m.split_policy.lb_weight * stratified_load_balance(probs[1:], m.split_policy.strata, m.split_policy.n_strata)
            + m.split_policy.smooth_weight * popularity_smoothness(m.split_policy.router.alpha(probs), m.split_policy.popularity_order)
        )
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # the router's term does not reach the generator: its gradients equal those of the uniform loss alone
    full_grads = [p.grad.clone() for p in gen_params]
    m.split_policy.steps.fill_(0)
    torch.manual_seed(3)
    m.zero_grad(set_to_none=True)
    with single_thread():
        uniform = m.arg_weight * original(*_warmup_memory(m, batch), paths).mean(-1).mean()
        uniform.backward()
    for p, g in zip(gen_params, full_grads):
        assert torch.allclose(p.grad, g, atol=1e-6)

    # after the warm-up: one decoder pass per row on the router's split, and no router gradient
    m.split_policy.steps.fill_(1)
    m.zero_grad(set_to_none=True)
    with single_thread():
        loss = m.calculate_loss(batch)
        loss.backward()
    paths, nll = calls[-1]
    assert paths.shape[1] == 1
    chosen = m.item_splits()[target]
    assert torch.equal(paths[:, 0], m.tokenizer.paths[chosen, target])
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0.0 for p in m.split_policy.router.parameters())
    assert float(loss) == pytest.approx(m.arg_weight * float(nll[:, 0].mean()), rel=1e-5)


def _warmup_memory(m, batch):
    probs = m.split_policy._warmup_plan(batch["item_id"]).history_probs
    return m.generator.encode_history(m._item_vectors(probs), batch[m.ITEM_SEQ], batch[m.ITEM_SEQ_LEN])


@pytest.mark.parametrize("mode", ["decoupled", "expected_loss"])
def test_router_follows_popularity_dependent_split_losses(flex, mode):
    """If tail targets are predicted best from semantic tokens, middle ones from a mix and head
    ones from collaborative tokens, the decoupled router learns that allocation (the premise of
    PATA, §4.3). The expected-loss router, trained on the same losses, does not: its softmax
    saturates on the head's split and the tail's gradient vanishes (docs/design.md, "router")."""
    warmup = 10**6 if mode == "decoupled" else 0
    m = make_model(flex, router_mode=mode, router_warmup_steps=warmup)
    m.train()
    top = m.split_policy.n_strata - 1
    # synthetic split losses: stratum 0 (tail) prefers split 0, the top stratum split L, others split 1
    best = torch.ones(m.n_items, dtype=torch.long)
    best[1:][m.split_policy.strata == 0] = 0
    best[1:][m.split_policy.strata == top] = L
    cost = 2.0 + 3.0 * (torch.arange(L + 1).unsqueeze(0) != best.unsqueeze(1)).float()  # [N, L+1]
    current = {}

    def fake_nll(memory, pad, paths):
        return cost[current["target"]] + 0.0 * memory.sum()

    m.generator.sequence_nll = fake_nll
    opt = torch.optim.Adam(m.split_policy.router.parameters(), lr=0.01)
    flex["train"].generator.manual_seed(0)  # the same batches whichever tests iterated the loader before
    with single_thread():
        for _ in range(10):
            for batch in flex["train"]:
                current["target"] = batch[m.POS_ITEM_ID]
                opt.zero_grad(set_to_none=True)
                m.calculate_loss(batch).backward()
                opt.step()
    splits = m.item_splits()[1:]
    tail, head = m.split_policy.strata == 0, m.split_policy.strata == top
    tail_ok = float((splits[tail] == 0).float().mean())
    head_ok = float((splits[head] == L).float().mean())
    if mode == "decoupled":
        assert tail_ok > 0.8 and head_ok > 0.8
    else:
        assert tail_ok < 0.2


def test_stage_tokenize_builds_and_caches_the_stages_without_training(flex, tmp_path, monkeypatch):
    """``stage: tokenize`` prepares the caches (e.g. on a CPU box) and trains nothing, writes no result."""
    import shutil

    from recbole.trainer import Trainer

    from recbole_flexcode import quick_start

    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    (cache / "ml-tiny").mkdir(parents=True)
    for f in os.listdir(os.path.join(flex["cache_dir"], "ml-tiny")):
        if f.startswith("text_emb-"):  # the sentence encoder is not under test here
            shutil.copy(os.path.join(flex["cache_dir"], "ml-tiny", f), cache / "ml-tiny" / f)
    cfg = {**flex["cfg"], "cache_dir": str(cache), "results_dir": str(tmp_path / "results"),
           "checkpoint_dir": str(tmp_path / "saved"), "stage": "tokenize"}
    with single_thread(), mock.patch.object(Trainer, "fit", _raise):
        result = quick_start.run("FlexCode", "ml-tiny", config_dict=cfg)
    assert result["stage"] == "tokenize" and result["timings_s"]["stages_total"] > 0
    files = os.listdir(cache / "ml-tiny")
    assert sum(f.startswith("cf_emb-") for f in files) == 1
    tokenizers = [f for f in files if f.startswith("tokenizer-")]
    assert len(tokenizers) == 1 and os.path.isfile(cache / "ml-tiny" / tokenizers[0] / "tokenizer.safetensors")
    assert not (tmp_path / "results").exists() and not (tmp_path / "saved").exists()
    # what it cached is what a training run then loads: building again refits nothing
    from recbole.model.sequential_recommender import SASRec

    with single_thread(), mock.patch.object(DualCodebookTokenizer, "fit", _raise), \
            mock.patch.object(SASRec, "calculate_loss", _raise), mock.patch.object(text_mod, "encode_texts", _raise), \
            mock.patch.object(Trainer, "fit", _raise):
        again = quick_start.run("FlexCode", "ml-tiny", config_dict=cfg)
    assert again["stage"] == "tokenize"


def test_decoding_check_compares_beam_search_with_exact_scoring(flex):
    """``diagnose --decode_check``: a beam as wide as the catalogue has no search error; a narrow one may."""
    from recbole_flexcode.diagnose import _FirstUsers, decoding_check, format_decoding_check

    m = flex["model"]
    n_real = int(m.n_items - 1)
    before = (m.decode_mode, m.beam_size)
    with single_thread():
        check = decoding_check(m, flex["valid"], flex["train"]._dataset, n_users=25, beam_sizes=(10, n_real))
    assert (m.decode_mode, m.beam_size) == before  # the model's own settings are restored
    assert check["n_users"] == 25 and check["k"] == 10  # the loader's batch was cut to 25 users
    assert sum(1 for _ in _FirstUsers(flex["valid"], 25)) == 1
    names = [r["decode"] for r in check["rows"]]
    assert names == ["exact", "beam 10", f"beam {n_real}"]
    exact, narrow, full = check["rows"]
    for r in check["rows"]:
        assert r["all"]["users"] == 25 == r["head"]["users"] + r["tail"]["users"]
        assert 0.0 <= r["all"]["ndcg@10"] <= r["all"]["recall@10"] <= 1.0
    # a beam over every item finds every path: the same ranks as exact scoring
    assert full["all"] == pytest.approx(exact["all"]) and full["exact_top10_missed"]["all"] == 0.0
    assert 0.0 <= narrow["exact_top10_missed"]["all"] <= 1.0
    table = format_decoding_check(check)
    assert table.count("\n") == 4 and "| beam 10 |" in table
