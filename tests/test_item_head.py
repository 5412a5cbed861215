"""The output-side item head (recbole_flexcode/model/item_head.py) inside FlexCode, on the tiny slice."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import TINY_FLEXCODE, tiny_config
from recbole_flexcode.model.item_head import ItemHead, NoItemHead

TINY = {**TINY_FLEXCODE, "variant": "fix"}


@pytest.fixture(scope="module")
def built(tiny_data, tmp_path_factory):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_flexcode.config import FlexConfig
    from recbole_flexcode.model.flexcode import FlexCode
    from recbole_flexcode.pipeline import prepare

    cache = tmp_path_factory.mktemp("item-head-cache")
    models, data = {}, None
    for weight in (0.0, 1.0):
        config = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(tiny_data, cache_dir=str(cache), item_head_weight=weight, **TINY))
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train, valid, test = data_preparation(config, dataset)
        prepare(config, train._dataset)
        init_seed(config["seed"], config["reproducibility"])
        models[weight] = FlexCode(config, train._dataset)
        data = (train, valid, test)
    return models, data


def seeded_model(tiny_data, tmp_path, **settings):
    """A FlexCode model on the tiny data with ``TINY`` and ``settings``, its stages built, seeded as RecBole
    seeds a run, so two calls differing only in ``settings`` start from the same weights; with its train and
    test loaders."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_flexcode.config import FlexConfig
    from recbole_flexcode.model.flexcode import FlexCode
    from recbole_flexcode.pipeline import prepare

    config = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(tiny_data, cache_dir=str(tmp_path), **{**TINY, **settings}))
    init_seed(config["seed"], config["reproducibility"])
    train, _, test = data_preparation(config, create_dataset(config))
    prepare(config, train._dataset)
    init_seed(config["seed"], config["reproducibility"])
    return FlexCode(config, train._dataset), train, test


def test_off_by_default_and_on_when_weighted(built):
    models, _ = built
    assert type(models[0.0].item_head) is NoItemHead
    assert isinstance(models[1.0].item_head, ItemHead)
    assert torch.all(models[1.0].item_head.items.weight == 0)


def test_untrained_head_does_not_change_the_ranking(built):
    """With every e_i = 0 the head adds the same log(1/(N-1)) to every item: ranks are the generator's."""
    models, (_, _, test) = built
    m = models[1.0]
    batch = next(iter(test))[0][torch.arange(6)]
    m.eval()
    with torch.no_grad():
        with_head = m.full_sort_predict(batch)
        plain = copy.deepcopy(m)
        plain.item_head = NoItemHead()
        without = plain.full_sort_predict(batch)
    finite = torch.isfinite(without)
    assert torch.equal(finite, torch.isfinite(with_head))
    shift = (with_head - without)[finite]
    assert torch.allclose(shift, torch.full_like(shift, -torch.log(torch.tensor(m.n_items - 1.0)).item()), atol=1e-5)


def test_head_loss_is_added_and_trains_the_target_items(built):
    models, (train, _, _) = built
    m = copy.deepcopy(models[1.0])
    batch = next(iter(train))
    target = batch[m.POS_ITEM_ID]
    m.train()
    memory, pad = m.forward(batch[m.ITEM_SEQ], batch[m.ITEM_SEQ_LEN])
    before = m.item_head.log_probs(memory, pad).gather(1, target[:, None]).mean().item()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(15):
        opt.zero_grad()
        m.calculate_loss(batch).backward()
        opt.step()
    assert m.item_head.items.weight.grad[target].abs().sum() > 0
    m.eval()
    with torch.no_grad():
        memory, pad = m.forward(batch[m.ITEM_SEQ], batch[m.ITEM_SEQ_LEN])
        after = m.item_head.log_probs(memory, pad).gather(1, target[:, None]).mean().item()
    assert after > before + 1.0  # the head memorises the batch's targets: item-level capacity


def test_beam_over_the_whole_catalogue_equals_exact_scoring_with_the_head(built):
    models, (train, _, test) = built
    m = copy.deepcopy(models[1.0])
    with torch.no_grad():
        m.item_head.items.weight.normal_(0, 0.5)  # a head that reorders items
    batch = next(iter(test))[0][torch.arange(4)]
    m.eval()
    m.beam_size = m.n_items - 1
    with torch.no_grad():
        beam = m.full_sort_predict(batch)
        m.decode_mode = "exact"
        exact = m.full_sort_predict(batch)
        predicted = m.predict(type(batch)({**{k: batch[k] for k in batch.interaction}, m.ITEM_ID: beam[:, 1:].argmax(1) + 1}))
    assert torch.equal(beam[:, 1:].argsort(1, descending=True)[:, :10], exact[:, 1:].argsort(1, descending=True)[:, :10])
    top = beam[:, 1:].argmax(1) + 1
    assert torch.allclose(predicted, exact.gather(1, top[:, None]).squeeze(1), atol=1e-4)


def test_rescore_weight_is_chosen_on_validation_tested_and_restored(built):
    """``diagnose --rescore_sweep``: every weight on validation, the best and the trained one on test."""
    from recbole.utils import get_trainer

    from recbole_flexcode.analysis.flexcode import rescore_sweep

    models, (_, valid, test) = built
    m = copy.deepcopy(models[1.0])
    torch.manual_seed(0)
    with torch.no_grad():  # a head that disagrees with the generator, so the weight matters
        m.item_head.items.weight.normal_(0.0, 3.0)
    config = m._config
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, m)
    seen = []

    def evaluate(data):
        seen.append(("valid" if data is valid else "test", m.item_head.rescore_weight))
        return trainer.evaluate(data, load_best_model=False, show_progress=False)

    weights = [0.0, 1.0, 8.0]
    out = rescore_sweep(m, evaluate, valid, test, weights)
    scores = [r["valid"]["ndcg@10"] for r in out["weights"]]
    assert len(set(scores)) > 1  # the weight changes the ranking
    assert out["chosen_weight"] == weights[scores.index(max(scores))]
    assert seen[:3] == [("valid", w) for w in weights]
    assert seen[3:] == [("test", w) for w in dict.fromkeys((out["chosen_weight"], 1.0))]
    assert m.item_head.rescore_weight == 1.0 and out["trained_weight"] == 1.0
    # weight 0 is the generator's own ranking
    m.item_head.rescore_weight = 0.0
    plain = trainer.evaluate(valid, load_best_model=False, show_progress=False)
    assert plain["ndcg@10"] == pytest.approx(out["weights"][0]["valid"]["ndcg@10"])
    with pytest.raises(ValueError, match="no item head"):
        rescore_sweep(models[0.0], evaluate, valid, test, weights)


def test_proposed_candidates_join_the_beam_with_their_exact_scores(built):
    """``item_head_candidates: K``: the head's top K items are ranked beside the beam's, each at the
    score exact decoding gives it, so an item the beam missed can be retrieved."""
    models, (_, _, test) = built
    m = copy.deepcopy(models[1.0])
    torch.manual_seed(1)
    with torch.no_grad():
        m.item_head.items.weight.normal_(0, 3.0)  # a head that disagrees with the generator
    batch = next(iter(test))[0][torch.arange(5)]
    m.eval()
    m.beam_size, m.item_head.n_candidates = 10, 15
    with torch.no_grad():
        extended = m.full_sort_predict(batch)
        m.item_head.n_candidates = 0
        beam_only = m.full_sort_predict(batch)
        m.decode_mode = "exact"
        exact = m.full_sort_predict(batch)
        memory, pad = m.forward(batch[m.ITEM_SEQ], batch[m.ITEM_SEQ_LEN])
        proposed = m.item_head.log_probs(memory, pad).topk(15, dim=1).indices
    finite = torch.isfinite(extended)
    assert torch.isfinite(beam_only).sum(1).eq(10).all()
    assert finite.gather(1, proposed).all()  # every proposed item is ranked
    assert (finite.sum(1) > 10).all()  # and some of them were outside the beam
    assert torch.equal(finite, torch.isfinite(beam_only) | torch.zeros_like(finite).scatter(1, proposed, True))
    assert torch.allclose(extended[finite], exact[finite], atol=1e-4)  # one scale for beam and proposed items


def _sweep_setup(built, record, **attrs):
    """A copy of the weighted model whose head vectors are random (so the head's settings change the
    ranking), with ``attrs`` set on it, and ``evaluate(data)`` for the sweep, which appends
    ``("valid" | "test", *record(head))`` to ``seen``. Returns ``m, evaluate, seen, valid, test``."""
    from recbole.utils import get_trainer

    models, (_, valid, test) = built
    m = copy.deepcopy(models[1.0])
    torch.manual_seed(0)
    with torch.no_grad():
        m.item_head.items.weight.normal_(0.0, 3.0)
    for key, value in attrs.items():
        setattr(m, key, value)
    trainer = get_trainer(m._config["MODEL_TYPE"], m._config["model"])(m._config, m)
    seen = []

    def evaluate(data):
        seen.append(("valid" if data is valid else "test", *record(m.item_head)))
        return trainer.evaluate(data, load_best_model=False, show_progress=False)

    return m, evaluate, seen, valid, test


def test_sweep_chooses_rescore_weight_and_candidates_together(built):
    from recbole_flexcode.analysis.flexcode import rescore_sweep

    m, evaluate, seen, valid, test = _sweep_setup(built, lambda h: (h.rescore_weight, h.n_candidates), beam_size=10)
    out = rescore_sweep(m, evaluate, valid, test, [0.0, 2.0], candidates=[0, 30], by_group=lambda d: {"n": 1})
    assert seen[:4] == [("valid", 0.0, 0), ("valid", 0.0, 30), ("valid", 2.0, 0), ("valid", 2.0, 30)]
    scores = [r["valid"]["ndcg@10"] for r in out["weights"]]
    best = out["weights"][scores.index(max(scores))]
    assert (out["chosen_weight"], out["chosen_candidates"]) == (best["rescore_weight"], best["candidates"])
    assert seen[4] == ("test", out["chosen_weight"], out["chosen_candidates"])
    assert out["test_at_chosen"]["groups"] == {"n": 1}
    assert all(r["valid_groups"] == {"n": 1} for r in out["weights"])  # every setting, on validation
    assert (m.item_head.rescore_weight, m.item_head.n_candidates) == (1.0, 0)  # restored
    assert (out["trained_weight"], out["trained_candidates"]) == (1.0, 0)


def test_prior_correction_divides_the_training_popularity_out_and_proposes_by_it(built):
    """``item_head_prior: β``: every ranked item's score drops by exactly ``β · log p_train(i)``
    (add-one smoothed training frequency), so rare items rise against popular ones, and the head's
    proposals are its top items under that corrected term."""
    models, (train, _, test) = built
    m = copy.deepcopy(models[1.0])
    head = m.item_head
    counts = torch.as_tensor(m.item_counts, dtype=torch.float32)
    expected = torch.log((counts[1:] + 1) / (counts[1:] + 1).sum())
    assert torch.allclose(head.log_prior[1:], expected)
    assert head.prior_weight == 0.0 and "log_prior" not in m.state_dict()  # rebuilt from the data, not saved
    torch.manual_seed(2)
    with torch.no_grad():
        head.items.weight.normal_(0, 1.0)
    batch = next(iter(test))[0][torch.arange(5)]
    m.eval()
    m.decode_mode = "exact"  # every item ranked: the shift is visible on all of them
    with torch.no_grad():
        plain = m.full_sort_predict(batch)
        head.prior_weight = 0.5
        corrected = m.full_sort_predict(batch)
    shift = corrected[:, 1:] - plain[:, 1:]
    assert torch.allclose(shift, (-0.5 * expected).expand_as(shift), atol=1e-4)
    rare, popular = int(counts[1:].argmin()) + 1, int(counts[1:].argmax()) + 1
    assert counts[rare] < counts[popular]
    gain = (corrected[:, rare] - corrected[:, popular]) - (plain[:, rare] - plain[:, popular])
    assert (gain > 0).all()
    with torch.no_grad():  # proposals follow the corrected term, which differs from the plain head's top items
        memory, pad = m.forward(batch[m.ITEM_SEQ], batch[m.ITEM_SEQ_LEN])
        lp = head.log_probs(memory, pad)
        head.prior_weight, head.n_candidates = 5.0, 10
        ids, _ = head.rescore_beam(torch.full((5, 1), -1), torch.full((5, 1), float("-inf")), memory, pad,
                                   lambda items: torch.zeros(items.shape))
    want = (lp - 5.0 * head.log_prior).topk(10, dim=1).indices
    assert torch.equal(ids[:, 1:], want)
    assert not torch.equal(want, lp.topk(10, dim=1).indices)


@pytest.mark.parametrize("key", ["item_head_prior", "item_head_shrink"])
def test_inference_settings_need_the_item_head(tiny_data, tmp_path, key):
    from recbole_flexcode.config import ConfigError, FlexConfig
    from recbole_flexcode.model.item_head import build_item_head

    config = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(tiny_data, cache_dir=str(tmp_path), **{key: 0.5}, **TINY))
    with pytest.raises(ConfigError, match=f"{key} needs the item head"):
        build_item_head(config, 10, 8)


def test_shrinkage_scores_rare_items_by_the_head_and_keeps_popular_paths(built):
    """``item_head_shrink: τ``: item i's path log-probability g_i becomes ``λ_i g_i + (1 − λ_i) h_i`` with
    ``λ_i = c_i / (c_i + τ)`` (c_i: training interactions, h_i: the head's log-probability) before the head's
    term is added; the beam's items and the head's proposals are scored by the same formula."""
    models, (_, _, test) = built
    m = copy.deepcopy(models[1.0])
    head = m.item_head
    assert head.shrink == 0.0 and "counts" not in m.state_dict()  # inference only, rebuilt from the data
    torch.manual_seed(3)
    with torch.no_grad():
        head.items.weight.normal_(0, 2.0)  # a head that disagrees with the generator
    batch = next(iter(test))[0][torch.arange(5)]
    counts = torch.as_tensor(m.item_counts, dtype=torch.float32)
    assert counts[1:].max() > 4 * counts[1:].min()  # rare and popular items both present
    m.eval()
    with torch.no_grad():
        memory, pad = m.forward(batch[m.ITEM_SEQ], batch[m.ITEM_SEQ_LEN])
        h = head.log_probs(memory, pad)
        m.decode_mode = "exact"
        plain = m.full_sort_predict(batch)  # g + w h, w = 1
        head.shrink = 4.0
        shrunk = m.full_sort_predict(batch)
        g = plain - h  # the generator's own path scores
        trust = counts / (counts + 4.0)
        want = trust * g + (1 - trust) * h + h
        assert torch.allclose(shrunk[:, 1:], want[:, 1:], atol=1e-4)
        assert torch.isinf(shrunk[:, 0]).all()  # the padding item stays unscored
        head.shrink = 1e9  # every item scored by the head alone, twice over
        assert torch.allclose(m.full_sort_predict(batch)[:, 1:], 2 * h[:, 1:], atol=1e-3)
        # under beam decoding: beam and proposed items alike get the exact score of their items
        head.shrink, head.n_candidates, m.beam_size = 4.0, 15, 10
        m.decode_mode = "beam"
        beam = m.full_sort_predict(batch)
    ranked = torch.isfinite(beam)
    assert (ranked.sum(1) > 10).all()  # some proposed items outside the beam are ranked
    assert torch.allclose(beam[ranked], shrunk[ranked], atol=1e-4)
    rare, popular = int(counts[1:].argmin()) + 1, int(counts[1:].argmax()) + 1
    moved = (shrunk - plain).abs()
    assert torch.allclose(moved[:, rare], (1 - trust[rare]) * (g - h)[:, rare].abs(), atol=1e-4)
    assert trust[popular] > trust[rare]


def test_sweep_chooses_the_shrinkage_on_validation_and_restores_it(built):
    from recbole_flexcode.analysis.flexcode import rescore_sweep

    m, evaluate, seen, valid, test = _sweep_setup(built, lambda h: (h.shrink,), decode_mode="exact")
    out = rescore_sweep(m, evaluate, valid, test, [1.0], shrinks=[0.0, 3.0, 1e9])
    assert seen[:3] == [("valid", 0.0), ("valid", 3.0), ("valid", 1e9)]
    scores = [r["valid"]["ndcg@10"] for r in out["weights"]]
    assert len(set(scores)) > 1  # the shrinkage changes the ranking
    assert out["chosen_shrink"] == [r["shrink"] for r in out["weights"]][scores.index(max(scores))]
    assert seen[3] == ("test", out["chosen_shrink"])
    assert m.item_head.shrink == 0.0 and out["trained_shrink"] == 0.0
    assert (out["trained_weight"], out["trained_candidates"], out["trained_prior"]) == (1.0, 0, 0.0)


def test_tail_floor_tests_the_best_setting_whose_validation_tail_reaches_it(built):
    """``diagnose --tail_floor``: besides the best setting on validation, the best among those whose
    validation tail N@10 reaches the floor is tested too (both chosen on validation only)."""
    from recbole_flexcode.analysis.flexcode import rescore_sweep

    m, evaluate, seen, valid, test = _sweep_setup(built, lambda h: (h.shrink,), decode_mode="exact")
    shrinks = [0.0, 3.0, 1e9]
    tail_of = {0.0: 0.01, 3.0: 0.02, 1e9: 0.03}  # the shrinkage trades head for tail, as on Beauty

    def by_group(data):
        return {"tail": {"ndcg@10": tail_of[m.item_head.shrink]}}

    plain = rescore_sweep(m, evaluate, valid, test, [1.0], shrinks=shrinks, by_group=by_group)
    scores = {r["shrink"]: r["valid"]["ndcg@10"] for r in plain["weights"]}
    assert len(set(scores.values())) > 1
    # only the head alone (τ → ∞) reaches this floor, and it is not the best setting on validation, so the
    # floor's choice must differ from the unconstrained one
    floor, expected = 0.03, 1e9
    assert plain["chosen_shrink"] != expected
    del seen[:]
    out = rescore_sweep(m, evaluate, valid, test, [1.0], shrinks=shrinks, by_group=by_group, tail_floor=floor)
    assert (out["tail_floor"], out["floor_shrink"], out["floor_weight"]) == (floor, expected, 1.0)
    assert ("test", expected) in seen[3:] and out["test_at_floor"]["groups"]["tail"]["ndcg@10"] == tail_of[expected]
    assert out["chosen_shrink"] == plain["chosen_shrink"]  # the unconstrained choice is unchanged
    assert m.item_head.shrink == 0.0  # restored
    # no setting reaches the floor: nothing more is tested
    del seen[:]
    none = rescore_sweep(m, evaluate, valid, test, [1.0], shrinks=shrinks, by_group=by_group, tail_floor=0.5)
    assert none["test_at_floor"] is None and none["floor_shrink"] is None
    assert len(seen) == 3 + len({none["chosen_shrink"], 0.0})
    with pytest.raises(ValueError, match="by_group"):
        rescore_sweep(m, evaluate, valid, test, [1.0], shrinks=shrinks, tail_floor=0.01)


def test_mean_last_user_reads_the_latest_history_position(tiny_data, tmp_path):
    """``item_head_user: mean_last``: the head's user vector sees the mean of the encoded history and,
    separately, the latest real position's state, so two histories with one mean but different
    latest items get different item scores; padding never enters. ``last`` reads that state alone, so
    histories that differ only before it score alike. FlexCode trains and ranks with either."""
    from recbole_flexcode.config import ConfigError, FlexConfig
    from recbole_flexcode.model.item_head import last_pool, mean_last_pool

    memory = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    pad = torch.tensor([[False, False, True, True], [False, False, False, False]])
    pooled = mean_last_pool(memory, pad)
    assert torch.equal(pooled[0], torch.cat([memory[0, :2].mean(0), memory[0, 1]]))
    assert torch.equal(pooled[1], torch.cat([memory[1].mean(0), memory[1, 3]]))
    swapped = memory.clone()
    swapped[0, [0, 1]] = memory[0, [1, 0]]  # same mean, another latest state
    head = ItemHead(6, 3, 1.0, 1.0, user_pool="mean_last")
    with torch.no_grad():
        head.items.weight.normal_()
        assert not torch.allclose(head.log_probs(memory, pad)[0], head.log_probs(swapped, pad)[0])
        garbage = memory.clone()
        garbage[0, 2:] = 1e3  # padded positions
        assert torch.allclose(head.log_probs(memory, pad), head.log_probs(garbage, pad))
    assert torch.equal(last_pool(memory, pad), torch.stack([memory[0, 1], memory[1, 3]]))
    last = ItemHead(6, 3, 1.0, 1.0, user_pool="last")
    earlier = memory.clone()
    earlier[0, 0] += 5.0  # another history before the same latest state
    with torch.no_grad():
        last.items.weight.normal_()
        assert last.user.in_features == 3
        assert torch.allclose(last.log_probs(memory, pad), last.log_probs(earlier, pad))
        assert not torch.allclose(last.log_probs(memory, pad)[0], last.log_probs(swapped, pad)[0])
    with pytest.raises(ConfigError, match="item_head_user.*must be one of mean \\| mean_last \\| last, got 'first'"):
        FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(tiny_data, cache_dir=str(tmp_path), item_head_user="first"))
    for pool, width in (("mean_last", 2), ("last", 1)):
        model, train, test = seeded_model(tiny_data, tmp_path, item_head_weight=1.0, item_head_user=pool)
        assert model.item_head.user.in_features == width * model.generator.hidden_size
        model.calculate_loss(next(iter(train))).backward()
        assert model.item_head.items.weight.grad.abs().sum() > 0  # e_i start at zero: the user side moves from step 2
        model.eval()
        with torch.no_grad():
            scores = model.full_sort_predict(next(iter(test))[0])
        assert torch.isfinite(scores).sum(1).ge(model.beam_size).all()


def test_item_features_score_an_item_by_its_embeddings(tiny_data, tmp_path):
    """``item_head_features: both``: the head's item vector is ``e_i + W x_i`` with ``x_i`` the tokenizer's
    standardised CF and text embeddings of item ``i`` and ``W`` zero at the start. Training moves ``W``, so
    an item with no free parameters of its own but a target's embeddings is scored like that target."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_flexcode.config import ConfigError, FlexConfig
    from recbole_flexcode.model.flexcode import FlexCode
    from recbole_flexcode.model.item_head import ItemFeatures, build_item_head
    from recbole_flexcode.pipeline import prepare

    config = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(
        tiny_data, cache_dir=str(tmp_path), item_head_weight=1.0, item_head_features="both", **TINY))
    init_seed(config["seed"], config["reproducibility"])
    train, _, test = data_preparation(config, create_dataset(config))
    prepare(config, train._dataset)
    model = FlexCode(config, train._dataset)
    feats = model.item_head.features
    assert isinstance(feats, ItemFeatures)
    inputs = model.tokenizer.inputs()
    assert torch.equal(feats.x[0], torch.zeros(feats.x.shape[1]))  # padding
    assert torch.allclose(feats.x[1:], torch.cat([inputs["collaborative"], inputs["semantic"]], 1))
    assert torch.all(feats.proj.weight == 0)
    state = model.state_dict()
    assert "item_head.features.proj.weight" in state and "item_head.features.x" not in state  # x is the tokenizer's

    batch = next(iter(train))
    target = batch[model.POS_ITEM_ID]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(15):
        opt.zero_grad()
        model.calculate_loss(batch).backward()
        opt.step()
    assert feats.proj.weight.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        memory, pad = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        row = 0
        a = int(target[row])
        # item b: no free vector, item a's embeddings (an item never seen in training, described like a)
        b = next(i for i in range(1, model.n_items) if i not in set(target.tolist()))
        model.item_head.items.weight[b] = 0
        feats.x[b] = feats.x[a]
        lp = model.item_head.log_probs(memory, pad)[row]
        assert lp[b] > lp[1:].median() + 1.0
        feats.x[b] = 0  # without the embeddings it falls back to the zero vector's score
        assert model.item_head.log_probs(memory, pad)[row, b] < lp[b] - 1.0
        scores = model.full_sort_predict(next(iter(test))[0])
    assert torch.isfinite(scores).sum(1).ge(model.beam_size).all()

    off = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(
        tiny_data, cache_dir=str(tmp_path), item_head_features="semantic", **TINY))
    with pytest.raises(ConfigError, match="item_head_features needs the item head"):
        build_item_head(off, 10, 8, tokenizer=model.tokenizer)
    with pytest.raises(ConfigError, match="item_head_features.*must be one of none \\| collaborative \\| semantic \\| both"):
        FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(tiny_data, cache_dir=str(tmp_path), item_head_features="text"))


def test_tied_head_scores_items_by_their_history_embeddings(tiny_data, tmp_path):
    """``item_head_tied``: the head's item vectors are the history's per-item embeddings, one parameter,
    so a training step moves an item's head score through the histories it appears in, even when it is
    never a target; the tie survives a checkpoint. It needs ``history_item_embedding`` and the head."""
    from recbole_flexcode.config import ConfigError

    def build(**extra):
        return seeded_model(tiny_data, tmp_path, **{"item_head_weight": 1.0, "history_item_embedding": True, **extra})

    tied, train, test = build(item_head_tied=True)
    free, _, _ = build()
    assert tied.item_head.items is tied.history_id_embedding
    assert free.item_head.items is not free.history_id_embedding
    assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in free.parameters()) - tied.n_items * tied.generator.hidden_size

    free_state = free.state_dict()
    assert all(torch.equal(v, free_state[k]) for k, v in tied.state_dict().items())  # same start
    batch = next(iter(train))
    for m in (tied, free):
        m.eval()  # no dropout: the two forward passes are the same
        m.zero_grad()
        m.calculate_loss(batch).backward()
    # one vector, two roles: its gradient is the free head's plus the free history embedding's
    both = free.item_head.items.weight.grad + free.history_id_embedding.weight.grad
    assert free.history_id_embedding.weight.grad.abs().sum() > 0
    assert torch.allclose(tied.history_id_embedding.weight.grad, both, atol=1e-6)
    history_only = sorted(set(batch[tied.ITEM_SEQ].flatten().tolist()) - set(batch[tied.POS_ITEM_ID].tolist()) - {0})
    with torch.no_grad():
        tied.history_id_embedding.weight[history_only[0]] += 1.0
    again, _, _ = build(item_head_tied=True)
    again.load_state_dict(tied.state_dict())
    assert again.item_head.items is again.history_id_embedding
    assert torch.equal(again.item_head.items.weight, tied.history_id_embedding.weight)
    again.eval()
    with torch.no_grad():
        scores = again.full_sort_predict(next(iter(test))[0])
    assert torch.isfinite(scores).sum(1).ge(again.beam_size).all()

    with pytest.raises(ConfigError, match="item_head_tied needs history_item_embedding: True"):
        build(item_head_tied=True, history_item_embedding=False)
    with pytest.raises(ConfigError, match="item_head_tied needs the item head"):
        build(item_head_tied=True, item_head_weight=0.0)


@pytest.mark.parametrize("history_encoding", ["pooled", "tokens"])
def test_code_features_score_items_by_their_whole_history_vector(tiny_data, tmp_path, history_encoding):
    """``item_head_features: codes`` with ``item_head_tied``: the head's item vectors are the history's whole
    item vectors (code embeddings summed, plus the item's own), so the head's loss trains the generator's
    code embeddings through the item side too; a checkpoint reloads to the same scores."""
    from recbole_flexcode.config import ConfigError
    from recbole_flexcode.model.item_head import CodeVectors

    def build(**extra):
        return seeded_model(tiny_data, tmp_path, **{"item_head_weight": 1.0, "history_item_embedding": True,
                                                     "item_head_tied": True, "history_encoding": history_encoding, **extra})

    model, train, test = build(item_head_features="codes")
    plain, _, _ = build()
    head = model.item_head
    assert isinstance(head.features, CodeVectors)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())  # no new parameters
    assert not any(k.startswith("item_head.features") for k in model.state_dict())
    model.eval()
    batch = next(iter(train))
    with torch.no_grad():
        head.items.weight.normal_()  # trained-like own vectors, so the codes are not the whole vector
        table = model._code_table(model.split_probs())
        codes = table if history_encoding == "pooled" else table.tokens.sum(1)
        memory, pad = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        u = head.user(head.pool(memory, pad))
        want = torch.log_softmax((u @ (head.items.weight + codes).t())[:, 1:], -1)
        assert torch.allclose(head.log_probs(memory, pad)[:, 1:], want, atol=1e-5)
        if history_encoding == "pooled":  # exactly the vector the history reads each item by
            assert torch.allclose(head.items.weight + head.features(), model._item_vectors(model.split_probs()))

    # the head's loss alone, with the history side held fixed, reaches the code embeddings only with codes
    for m in (model, plain):
        m.zero_grad()
        memory, pad = m.forward(batch[m.ITEM_SEQ], batch[m.ITEM_SEQ_LEN])
        m.item_head.add_loss(0.0, memory.detach(), pad, batch[m.POS_ITEM_ID]).backward()
    assert model.generator.token_embedding.weight.grad.abs().sum() > 0
    grad = plain.generator.token_embedding.weight.grad
    assert grad is None or grad.abs().sum() == 0

    again, _, _ = build(item_head_features="codes")
    again.load_state_dict(model.state_dict())
    again.eval()
    with torch.no_grad():
        first = next(iter(test))[0]
        assert torch.equal(again.full_sort_predict(first), model.full_sort_predict(first))
        assert torch.isfinite(again.full_sort_predict(first)).sum(1).ge(again.beam_size).all()
    with pytest.raises(ConfigError, match="item_head_features needs the item head"):
        build(item_head_features="codes", item_head_weight=0.0, item_head_tied=False, history_item_embedding=False)
