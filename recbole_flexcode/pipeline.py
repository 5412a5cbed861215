"""The stages that run before a plugin model is built: item text -> embeddings -> item tokenizer.

``prepare(config, train_dataset)`` builds (or loads from ``<cache_dir>/<dataset>/``) what
``config['model']`` needs and hands it to the model through the training dataset, the one object
RecBole gives a model's constructor besides the config (RecBole's own ``run_recbole`` and
``objective_function`` reach it through the hook in :mod:`recbole_flexcode.compat`)::

    FlexCode: text embeddings (§4.1.1) -> collaborative SASRec embeddings (§4.1.2)
              -> ItemTokenizer over {semantic, collaborative} (§4.1-§4.4)
    SOLID:    text embeddings -> collaborative embeddings
              -> ItemTokenizer over one source [text | cf] -> semantic metacode (SML)

Every stage seeds itself from the run's seed, so a run's numbers do not depend on which stages
were cached. A cache folder that cannot be written is not used at all (every stage runs
uncached, with a warning); a damaged entry is reported in one line and rebuilt.
``config['stage']`` (``embed`` | ``tokenize`` | ``train``) says how far a run goes; the first
two stop after the stages (a CPU box can prepare what a GPU job trains on).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from recbole_flexcode.embeddings.cache import cache_key
from recbole_flexcode.embeddings.stages import collaborative_stage, text_stage
from recbole_flexcode.io import is_writable_dir
from recbole_flexcode.tokenizer.codebooks import COLLABORATIVE, SEMANTIC
from recbole_flexcode.tokenizer.item_tokenizer import FORMAT_VERSION, DamagedArtefact, ItemTokenizer

_ATTR = "recbole_flexcode_stages"


class StageError(ValueError):
    """A stage cannot run on this input (no item text, an impossible combination of settings)."""


@dataclass
class StageOutputs:
    """What the stages hand to a model (every field optional: a model takes what it needs)."""

    tokenizer: ItemTokenizer | None = None
    item_uncertainty: np.ndarray | None = None  # variance of each CF embedding across epochs (§4.3 feature)
    metacode: dict | None = None  # SOLID's SML result: metacode, init, history
    timings: dict = field(default_factory=dict)


def stages_of(dataset) -> StageOutputs | None:
    """The stage outputs :func:`prepare` attached to ``dataset`` (None: a model built for a checkpoint reload)."""
    return getattr(dataset, _ATTR, None)


def stage_cache_dir(config, logger) -> str | None:
    """``<cache_dir>/<dataset>``, or None (run uncached, with a warning) when it cannot be written."""
    directory = os.path.join(config["cache_dir"], config["dataset"])
    if not is_writable_dir(directory):
        logger.warning("stage cache %s is not writable: running every stage uncached", directory)
        return None
    return directory


def _timed(timings: dict, name: str, fn, *args, **kwargs):
    """Run one stage, timed, leaving every random generator as it found it.

    Stages seed themselves from the run's seed; restoring the caller's state afterwards means the
    model built next starts from the same random state whether a stage was computed or loaded.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    t = time.time()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []):
        out = fn(*args, **kwargs)
    timings[name] = time.time() - t
    random.setstate(py_state)
    np.random.set_state(np_state)
    return out


def tokenizer_stage(embeddings: dict, settings: dict, cache_dir: str | None, show_progress: bool, logger) -> ItemTokenizer:
    """Fit the item tokenizer on ``embeddings`` (source -> list of arrays), or load it from the cache.

    The key covers the embeddings and every setting, so rows and seeds with equal inputs share
    one artefact; a damaged entry is rebuilt.
    """
    key = cache_key(stage="item_tokenizer", format=FORMAT_VERSION, embeddings=embeddings, settings=settings)
    directory = Path(cache_dir, f"tokenizer-{key}") if cache_dir else None
    if directory is not None and directory.exists():
        try:
            tok = ItemTokenizer.load(directory)
            logger.info("tokenizer: cache hit %s", directory)
            return tok
        except DamagedArtefact as exc:
            logger.warning("tokenizer: damaged cache entry (%s); rebuilding it", exc)
    built_from = {name: [list(np.asarray(a).shape) for a in arrays] for name, arrays in embeddings.items()}
    # each input's content, so that two machines' tokenizers with different keys name the stage that differs
    fingerprints = {name: [cache_key(embedding=np.asarray(a)) for a in arrays] for name, arrays in embeddings.items()}
    tok = ItemTokenizer.fit(embeddings, **settings, cache_key=key,
                            built_from={"embeddings": built_from, "fingerprints": fingerprints},
                            show_progress=show_progress, logger=logger)
    _warn_unused_codes(tok, logger)
    if directory is not None:
        try:
            tok.save(directory)
            logger.info("tokenizer: saved to %s", directory)
        except OSError as exc:
            logger.warning("tokenizer: cannot write %s (%s); continuing uncached", directory, exc)
    return tok


def _warn_unused_codes(tok: ItemTokenizer, logger) -> None:
    """One line per codebook level that the catalogue leaves mostly empty (a codebook too large for it)."""
    for source, st in tok.stats().items():
        for level in st["levels"]:
            if level["used_codes"] < tok.codebook_size / 4:
                logger.warning("tokenizer: %s level %d uses %d of %d codes for %d items; a smaller codebook_size "
                               "would fit this catalogue", source, level["level"] + 1, level["used_codes"],
                               tok.codebook_size, tok.n_items - 1)


def _codebook_settings(config, n_levels: int, codebook_size: int, code_dim: int, align: dict | None = None) -> dict:
    """Tokenizer settings from the config; ``align`` = the alignment's settings (two sources only)."""
    kind = config["tokenizer"]
    if kind == "rkmeans":
        codebook, fit = {"kmeans_iterations": int(config["kmeans_iterations"])}, {}
    else:
        codebook = {"code_dim": int(code_dim), "hidden_dims": [int(h) for h in config["rqvae_hidden_sizes"]],
                    "beta": float(config["rqvae_beta"]), **(align or {})}
        fit = {"epochs": int(config["rqvae_epochs"]), "batch_size": int(config["rqvae_batch_size"]),
               "lr": float(config["rqvae_learning_rate"]), "patience": int(config["rqvae_patience"])}
    return {"kind": kind, "n_levels": int(n_levels), "codebook_size": int(codebook_size), "codebook": codebook,
            "fit": fit, "seed": int(config["seed"])}


# ----------------------------------------------------------------------------- per model


def flexcode_stages(config, dataset, cache_dir, logger, stop_after: str) -> StageOutputs:
    from recbole_flexcode.model.variants import flexcode_variant

    variant = flexcode_variant(config)  # refuses impossible combinations before any stage runs
    out = StageOutputs()
    show = bool(config["show_progress"])
    text_emb, _ = _timed(out.timings, "text_embeddings", text_stage, config, dataset, cache_dir, show, logger)
    if text_emb.shape[1] == 0:
        raise StageError(f"FlexCode: no item has text in text_fields={list(config['text_fields'])}")
    cf = _timed(out.timings, "collaborative_embeddings", collaborative_stage, config, dataset, cache_dir, show, logger)
    out.item_uncertainty = cf["uncertainty"]
    if stop_after == "embed":
        return out
    align = {"align_weight": float(config["align_weight"]) if variant.aligned else 0.0,
             "align_temperature": float(config["align_temperature"]), "proj_dim": int(config["align_proj_size"])}
    settings = _codebook_settings(config, config["token_budget"], config["codebook_size"], config["code_dim"], align)
    # joint training re-encodes items as the codebooks move, which can grow a collision group past the
    # disambiguation tokens fitted here: it gets twice the room (derived from training_mode, not a setting)
    settings.update(min_disamb=int(config["min_disamb_tokens"]),
                    disamb_headroom=2 if config["training_mode"] == "joint" else 1)
    embeddings = {SEMANTIC: [text_emb], COLLABORATIVE: [cf["embeddings"]]}
    out.tokenizer = _timed(out.timings, "tokenizer", tokenizer_stage, embeddings, settings, cache_dir, show, logger)
    return out


def solid_stages(config, dataset, cache_dir, logger, stop_after: str) -> StageOutputs:
    from recbole_flexcode.model.metacode import metacode_stage
    from recbole_flexcode.model.solid import semantic_ids_from_codes, solid_uses_semantics

    out = StageOutputs()
    if not solid_uses_semantics(config):
        return out  # DUET and the static backbone have no stages
    show = bool(config["show_progress"])
    text_emb, _ = _timed(out.timings, "text_embeddings", text_stage, config, dataset, cache_dir, show, logger)
    if not text_emb.shape[1]:
        logger.warning("SOLID: no item text (text_fields=%s); semantic IDs from collaborative embeddings only",
                       list(config["text_fields"]))
    cf = _timed(out.timings, "collaborative_embeddings", collaborative_stage, config, dataset, cache_dir, show, logger)
    if stop_after == "embed":
        return out
    parts = ([text_emb] if text_emb.shape[1] else []) + [cf["embeddings"]]
    settings = _codebook_settings(config, config["semantic_levels"], config["semantic_vocab"], config["code_dim"])
    out.tokenizer = _timed(out.timings, "tokenizer", tokenizer_stage, {SEMANTIC: parts}, settings, cache_dir, show, logger)
    item_sem, n_semantic = semantic_ids_from_codes(out.tokenizer.codes(SEMANTIC)[1:].cpu().numpy(), int(config["semantic_vocab"]))
    out.metacode = _timed(out.timings, "metacode", metacode_stage, config, dataset, np.concatenate([[0], item_sem]),
                          n_semantic, cache_dir, logger)
    return out


RECIPES = {"FlexCode": flexcode_stages, "SOLID": solid_stages}


def prepare(config, train_dataset, logger: logging.Logger | None = None) -> StageOutputs | None:
    """Build or load the stages of ``config['model']`` on ``train_dataset`` and attach them to it.

    Returns None for models without stages (RecBole's own). ``config['stage']`` ``embed`` stops after
    the embeddings, ``tokenize`` after the tokenizer (and SOLID's metacode), ``train`` builds all.
    """
    recipe = RECIPES.get(config["model"])
    if recipe is None:
        return None
    log = logger or logging.getLogger(__name__)
    stop_after = config["stage"] if "stage" in config and config["stage"] else "train"
    out = recipe(config, train_dataset, stage_cache_dir(config, log), log, stop_after)
    setattr(train_dataset, _ATTR, out)
    return out
