"""The stages before the model (recbole_flexcode.pipeline) and their caches, on the tiny ml-100k slice.

Issue requirement: the same seed gives the same metrics whatever the cache state. One cold-cache
FlexCode run is the reference; every other run starts from a copy of its cache in which one stage's
entry is missing or damaged (or the cache cannot be written at all) and must reproduce its valid
and test metrics exactly, report the damage and rebuild the entry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.config import FlexConfig
from recbole_flexcode.embeddings import text as text_mod
from recbole_flexcode.embeddings.cache import ArrayCache
from recbole_flexcode.pipeline import prepare, stages_of
from recbole_flexcode.tokenizer.item_tokenizer import WEIGHTS_FILE, ItemTokenizer
from conftest import TINY_FLEXCODE, tiny_config

DATASET = "ml-tiny"


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


@contextlib.contextmanager
def every_stage_must_hit_its_cache():
    """Patch the text encoder, the CF SASRec and the tokenizer fit to raise."""
    from recbole.model.sequential_recommender import SASRec

    with mock.patch.object(text_mod, "encode_texts", _raise), mock.patch.object(text_mod, "load_encoder", _raise), \
            mock.patch.object(SASRec, "calculate_loss", _raise), mock.patch.object(ItemTokenizer, "fit", _raise):
        yield


def run_flexcode(data_path, cache_dir, work: Path, **extra) -> dict:
    """One ``quick_start.run`` (1 epoch) whose checkpoints, results and RecBole log stay under ``work``."""
    from recbole_flexcode.quick_start import run

    work.mkdir(parents=True, exist_ok=True)
    cfg = {**base_config_dict(data_path, cache_dir), "checkpoint_dir": str(work / "saved"),
           "results_dir": str(work / "results"), **extra}
    with single_thread(), pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # RecBole's log/ folder
        return run("FlexCode", DATASET, config_dict={**cfg, "epochs": 1}, result_file=str(work / "run.json"))


def outcome(result) -> dict:
    """What must not depend on the cache state: metrics, validation curve, diagnostics, model report."""
    return {
        "valid": result["best_valid_result"], "test": result["test_result"],
        "valid_curve": result["training"]["valid_curve"], "diagnostics": result.get("diagnostics"),
        "model_report": result["model_report"],
    }


def entries(cache_dir) -> dict:
    """The one text-embedding, CF-embedding and tokenizer entry of a FlexCode cache."""
    folder = Path(cache_dir) / DATASET
    found = {"text_emb": sorted(folder.glob("text_emb-*.npz")), "cf_emb": sorted(folder.glob("cf_emb-*.npz")),
             "tokenizer": sorted(p for p in folder.glob("tokenizer-*") if p.is_dir())}
    assert all(len(v) == 1 for v in found.values()), found
    return {k: v[0] for k, v in found.items()}


def npz_arrays(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def cold(tiny_data, tmp_path_factory):
    """The reference: a run on an empty cache (every stage computed and cached)."""
    root = tmp_path_factory.mktemp("pipeline")
    result = run_flexcode(tiny_data, root / "cache", root / "work")
    assert set(result["timings_s"]["stages"]) == {"text_embeddings", "collaborative_embeddings", "tokenizer"}
    return {"cache": root / "cache", "result": result, "outcome": outcome(result), "entries": entries(root / "cache")}


def _copy_cache(cold, tmp_path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(cold["cache"], cache)
    return cache


# ----------------------------------------------------------------------------- (a) any cache state, same metrics


def _zero_npz(path: Path) -> None:
    """Rewrite a valid ``.npz`` whose arrays are zeros (its metadata and checksums kept)."""
    data = npz_arrays(path)
    with open(path, "wb") as fh:
        np.savez(fh, **{k: v if k.startswith("__") else np.zeros_like(v) for k, v in data.items()})


DAMAGES = {
    "missing": lambda p: shutil.rmtree(p) if p.is_dir() else p.unlink(),
    "garbage": lambda p: (p / WEIGHTS_FILE if p.is_dir() else p).write_bytes(b"\x00garbage\xff" * 64),
    "zeroed": _zero_npz,
}
# every entry missing; every kind of damage on some entry (garbage text embeddings take the same
# ArrayCache path as garbage CF ones, and each recompute of the text costs the sentence encoder)
CASES = [("all_cached", None), ("text_emb", "missing"), ("text_emb", "zeroed"), ("cf_emb", "missing"),
         ("cf_emb", "garbage"), ("cf_emb", "zeroed"), ("tokenizer", "missing"), ("tokenizer", "garbage")]


@pytest.mark.parametrize("entry,damage", CASES, ids=[f"{e}-{d}" if d else e for e, d in CASES])
def test_same_seed_same_metrics_whatever_the_cache_state(entry, damage, cold, tiny_data, tmp_path, caplog):
    cache = _copy_cache(cold, tmp_path)
    target = entries(cache)[entry] if damage else None
    if damage:
        DAMAGES[damage](target)
    with caplog.at_level(logging.WARNING):
        result = run_flexcode(tiny_data, cache, tmp_path / "work")
    assert outcome(result) == cold["outcome"]
    reports = [r for r in caplog.records if r.levelno >= logging.WARNING and target is not None and target.name in r.getMessage()]
    if damage in ("garbage", "zeroed"):
        assert len(reports) == 1, [r.getMessage() for r in reports]  # reported in one line ...
    else:
        assert not reports
    # ... and rebuilt: the entry is back, equal to the cold run's
    now, ref = entries(cache), cold["entries"]
    assert {k: p.name for k, p in now.items()} == {k: p.name for k, p in ref.items()}
    for name in ("text_emb", "cf_emb"):
        a, b = npz_arrays(now[name]), npz_arrays(ref[name])
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a if k != "__meta__"), name
    assert torch.equal(ItemTokenizer.load(now["tokenizer"]).paths, ItemTokenizer.load(ref["tokenizer"]).paths)


def test_array_cache_reports_zeroed_arrays_and_returns_none(tmp_path, caplog):
    cache = ArrayCache(tmp_path)
    arrays = {"embeddings": np.arange(12, dtype=np.float32).reshape(3, 4), "flags": np.array([True, False, True])}
    path = cache.save("stage", "k", arrays, meta={"n": 3})
    assert all(np.array_equal(cache.load("stage", "k")[k], v) for k, v in arrays.items())
    _zero_npz(path)
    with caplog.at_level(logging.WARNING):
        assert cache.load("stage", "k") is None and cache.load_meta("stage", "k") is None
    damaged = [r for r in caplog.records if path.name in r.getMessage()]
    assert len(damaged) == 2 and "embeddings" in damaged[0].getMessage()  # one line per read
    # an array added or removed after writing is damage too
    cache.save("stage", "k", arrays)
    data = npz_arrays(path)
    with open(path, "wb") as fh:
        np.savez(fh, extra=np.zeros(2), **data)
    assert cache.load("stage", "k") is None


# ----------------------------------------------------------------------------- (b) damaged tokenizer, rebuilt


@pytest.fixture(scope="module")
def tiny_split(tiny_data, tmp_path_factory):
    """(settings, training dataset) for calling prepare() directly."""
    from recbole.data import create_dataset, data_preparation

    settings = base_config_dict(tiny_data, tmp_path_factory.mktemp("unused-cache"))
    with single_thread():
        config = FlexConfig("FlexCode", DATASET, config_dict=settings)
        train, _, _ = data_preparation(config, create_dataset(config))
    return settings, train._dataset


def _prepare(tiny_split, cache, **overrides):
    settings, dataset = tiny_split
    config = FlexConfig("FlexCode", DATASET, config_dict={**settings, "cache_dir": str(cache), **overrides})
    with single_thread():
        return prepare(config, dataset)


def test_damaged_tokenizer_entry_is_reported_and_rebuilt(cold, tiny_split, tmp_path, caplog):
    cache = _copy_cache(cold, tmp_path)
    folder = entries(cache)["tokenizer"]
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit: still a readable safetensors file
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))
    from recbole.model.sequential_recommender import SASRec

    with caplog.at_level(logging.WARNING), mock.patch.object(text_mod, "encode_texts", _raise), \
            mock.patch.object(SASRec, "calculate_loss", _raise):  # only the tokenizer is rebuilt
        stages = _prepare(tiny_split, cache)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and folder.name in r.getMessage()]
    assert len(warned) == 1 and "damaged" in warned[0] and "rebuilding" in warned[0]
    rebuilt = ItemTokenizer.load(folder)  # it verifies again
    reference = ItemTokenizer.load(cold["entries"]["tokenizer"])
    assert torch.equal(rebuilt.paths, reference.paths) and torch.equal(stages.tokenizer.paths, reference.paths)
    assert stages_of(tiny_split[1]) is stages
    caplog.clear()
    with caplog.at_level(logging.WARNING), every_stage_must_hit_its_cache():
        _prepare(tiny_split, cache)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "tokenizer" in r.getMessage()]


# ----------------------------------------------------------------------------- (c) a cache that cannot be written


def test_unwritable_cache_runs_uncached_with_a_warning(cold, tiny_data, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    cache = blocker / "cache"  # below a regular file: nothing can be created there, even as root
    with caplog.at_level(logging.WARNING):
        result = run_flexcode(tiny_data, cache, tmp_path / "work")
    assert outcome(result) == cold["outcome"]
    warned = [r.getMessage() for r in caplog.records if "not writable" in r.getMessage()]
    assert len(warned) == 1 and "uncached" in warned[0]
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_read_only_cache_folder_runs_uncached(cold, tiny_data, tmp_path, caplog):
    """A cache folder with mode 0o555 (effective only when not root)."""
    cache = _copy_cache(cold, tmp_path)
    folder = cache / DATASET
    before = sorted(os.listdir(folder))
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: chmod does not make the folder read-only")
        with caplog.at_level(logging.WARNING):
            result = run_flexcode(tiny_data, cache, tmp_path / "work")
    finally:
        folder.chmod(0o755)
    assert outcome(result) == cold["outcome"]
    assert any("not writable" in r.getMessage() for r in caplog.records)
    assert sorted(os.listdir(folder)) == before


# ----------------------------------------------------------------------------- (d) stage: embed | tokenize


def test_stage_embed_then_tokenize_then_train_from_the_caches(cold, tiny_data, tmp_path, monkeypatch):
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer

    cache = tmp_path / "cache"
    with mock.patch.object(Trainer, "fit", _raise):
        embedded = run_flexcode(tiny_data, cache, tmp_path / "w1", stage="embed")
        assert embedded["stage"] == "embed" and set(embedded["timings_s"]["stages"]) == {"text_embeddings", "collaborative_embeddings"}
        folder = cache / DATASET
        assert len(list(folder.glob("text_emb-*.npz"))) == 1 and len(list(folder.glob("cf_emb-*.npz"))) == 1
        assert not list(folder.glob("tokenizer-*"))
        with mock.patch.object(text_mod, "encode_texts", _raise), mock.patch.object(SASRec, "calculate_loss", _raise):
            tokenized = run_flexcode(tiny_data, cache, tmp_path / "w2", stage="tokenize")
    assert tokenized["stage"] == "tokenize" and tokenized["timings_s"]["stages_total"] > 0
    assert "test_result" not in tokenized
    assert {k: p.name for k, p in entries(cache).items()} == {k: p.name for k, p in cold["entries"].items()}
    for work in ("w1", "w2"):  # nothing trained, nothing written
        assert not (tmp_path / work / "saved").exists() and not (tmp_path / work / "results").exists()
        assert not (tmp_path / work / "run.json").exists()
    # the run that trains finds every stage in the cache and gives the cold run's numbers
    with every_stage_must_hit_its_cache():
        trained = run_flexcode(tiny_data, cache, tmp_path / "w3")
    assert outcome(trained) == cold["outcome"]


# ----------------------------------------------------------------------------- (e) what the tokenizer depends on


def test_tokenizer_folder_shared_by_settings_it_does_not_depend_on(cold, tiny_split, tmp_path):
    cache = _copy_cache(cold, tmp_path)
    folder = cache / DATASET
    ref = _prepare(tiny_split, cache, stage="tokenize")
    with every_stage_must_hit_its_cache():
        for extra in ({"hidden_size": 32, "n_heads": 4}, {"history_item_embedding": True}, {"router_hidden_size": 4}):
            other = _prepare(tiny_split, cache, stage="tokenize", **extra)
            assert other.tokenizer.spec["cache_key"] == ref.tokenizer.spec["cache_key"], extra
    assert len([p for p in folder.glob("tokenizer-*") if p.is_dir()]) == 1
    # another seed: its own CF embeddings and tokenizer
    seeded = _prepare(tiny_split, cache, stage="tokenize", seed=7)
    assert seeded.tokenizer.spec["cache_key"] != ref.tokenizer.spec["cache_key"]
    assert len([p for p in folder.glob("tokenizer-*") if p.is_dir()]) == 2
    assert len(list(folder.glob("cf_emb-*.npz"))) == 2 and len(list(folder.glob("text_emb-*.npz"))) == 1
    # a tokenizer setting: a third folder (the embeddings are shared)
    from recbole.model.sequential_recommender import SASRec

    with mock.patch.object(text_mod, "encode_texts", _raise), mock.patch.object(SASRec, "calculate_loss", _raise):
        _prepare(tiny_split, cache, stage="tokenize", codebook_size=8)
    assert len([p for p in folder.glob("tokenizer-*") if p.is_dir()]) == 3
