"""Benchmark runner: every (row, seed) through :func:`recbole_flexcode.quick_start.run`, resumable.

Usage::

    python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty \\
        --models=SASRec,BERT4Rec,GRU4Rec,Caser,FlexCode,FlexCode-semantic_only,FlexCode-cf_only,FlexCode-fix,FlexCode-no_align \\
        [--budgets=3,4,5,6] [--seeds=2020,2021,2022] [--data_path=DIR] [--out=results] \\
        [--config_files="a.yaml b.yaml"] [--tables-only] [--key=value ...]

Rows (``--models``, comma-separated):

* a RecBole or plugin model name (``SASRec``, ``BERT4Rec``, ``GRU4Rec``, ``Caser``, ...) -> that model;
* ``FlexCode`` -> FlexCode with ``variant=full``;
* ``FlexCode-<variant>`` -> ``variant=<variant>`` (``semantic_only``, ``cf_only``, ``fix``, ``no_align``, ``full``);
* ``FlexCode-decoupled`` -> the full variant with ``router_mode=decoupled`` (its warm-up: 5 epochs,
  or ``--router_warmup_epochs``, which then applies to every FlexCode row of the invocation);
  ``FlexCode-expected_loss`` / ``FlexCode-no_align_expected_loss`` -> ``router_mode=expected_loss``, whatever
  the dataset's section says;
* ``FlexCode-item_emb`` -> the full variant with ``history_item_embedding=True`` (ours);
* ``FlexCode-L<n>`` / ``FlexCode-<variant>-L<n>`` -> ``token_budget=n`` (the budget table);
* ``SASRec-<setting>`` -> RecBole's SASRec with one setting changed (``SASREC_ROWS``: ``h128``,
  ``dropout02``, ``len50``, ``lr0003``), the grid a tuned SASRec is chosen from on validation;
* ``SOLID``, ``SOLID-DUET`` (``use_semantics=False``), ``SOLID-static`` (``dynamic=False``);
  ``--budgets=3,4,5,6`` appends ``FlexCode-L3 .. FlexCode-L6``.

Every other ``--key=value`` is a RecBole/plugin setting given to every run (``--data_path`` too).
A row's own settings (variant, token budget) and the seed win over them; ``--seed`` is refused
(use ``--seeds``).

Each (row, seed) writes ``<out>/<dataset>/runs/<row>-seed<seed>.json``: :func:`quick_start.run`'s
result plus a ``benchmark`` section with what this runner measures:

* ``inference_users_per_s``: test users / wall seconds of RecBole's test pass in ``run()``
  (``timings_s.test``: loading the best checkpoint, full-sort scoring of every test user in
  batches of ``eval_batch_size``, metric computation) — no separate timing pass;
* ``peak_memory_bytes``: on a GPU run ``torch.cuda.max_memory_allocated()`` over the run (peak
  statistics reset before it); on CPU the process's peak resident set size over the run (Linux
  ``VmHWM``, reset before the run through ``/proc/self/clear_refs``; where that reset is refused,
  the process-lifetime ``ru_maxrss``, flagged ``peak_rss_reset: false``);
* ``device``: the GPU's name, or the CPU model from ``/proc/cpuinfo``;
* ``train_s`` (``timings_s.train``: RecBole ``trainer.fit``, including per-epoch validation),
  ``stages_s`` (the sum of ``timings_s.stages``: FlexCode's and SOLID's text-embedding / CF-SASRec /
  tokenizer (/ metacode) stages, near zero when they come from the cache) and ``wall_s`` (the whole ``run()`` call).

``--stage=tokenize`` (or ``--stage=embed``) builds every row's stages and trains nothing: the cached
stages of FlexCode and SOLID rows (text embeddings and CF SASRec; with ``tokenize`` also the item
tokenizer per variant, budget and seed, and SOLID's metacode) are made for a later run, e.g. on a
CPU machine before a GPU one; no run files are written.

Resume: a (row, seed) whose JSON exists *with* its ``benchmark`` section is skipped ("skip (done)").
``run()`` writes its JSON atomically and the runner then rewrites it atomically with the
``benchmark`` section, so an interrupted run leaves either nothing or a file without that
section, which the next invocation reruns.  Tables (:mod:`.tables`) are rewritten after every
finished run and at the end; ``--tables-only`` rewrites them from the run JSONs without training.
``--adopt`` first takes in results that ``run_flexcode.py --result_file=<out>/<dataset>/runs/<row>-seed<seed>.json``
wrote (same protocol, no cost bookkeeping): see :func:`adopt_runs`.

Exit status: 0 success; 2 bad arguments (unknown row, bad seeds, bad ``--key=value``) or a
configuration error raised by ``run()`` (missing dataset, ...); 1 when some run failed (the
others still ran); 130 interrupted.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field

from recbole_flexcode.io import write_json
from recbole_flexcode.reporting import cpu_model

DEFAULT_MODELS = (
    "SASRec,BERT4Rec,GRU4Rec,Caser,FlexCode,FlexCode-semantic_only,"
    "FlexCode-cf_only,FlexCode-fix,FlexCode-no_align"
)
DEFAULT_SEEDS = "2020,2021,2022"
#: FlexCode variants (kept in step with ``recbole_flexcode.model.variants.VARIANTS`` without importing torch;
#: a test checks).
FLEXCODE_VARIANTS = ("full", "semantic_only", "cf_only", "fix", "no_align")
#: A T5 generator over token-level histories at the size of the strong public recipes (SPEC §6: T5 4 + 4,
#: d 128, 6 heads of 64, FFN 1024, dropout 0.1) with ActionPiece's optimiser (AdamW lr 1e-3, weight decay
#: 0.15, clipping at 1, cosine decay) and a warm-up of 1,000 steps (ours: theirs is 10k, longer than a
#: 10-minute GPU window trains); one row setting, so baselines in the same run keep their own.
RECIPE = {"generator": "t5", "history_encoding": "tokens", "hidden_size": 128, "n_heads": 6, "head_size": 64,
          "inner_size": 1024, "n_encoder_layers": 4, "n_decoder_layers": 4, "dropout_prob": 0.1,
          "learner": "adamw", "weight_decay": 0.15, "lr_warmup_steps": 1000, "lr_schedule": "cosine",
          "learning_rate": 0.001, "clip_grad_norm": {"max_norm": 1.0}, "bf16": True}

#: The core before the tie (item_head_tied) became a dataset setting: no per-item history embedding, the head's
#: own item vectors, no path-score shrinkage, and no dropout (Beauty's section then); rows measured on it keep
#: their meaning under today's defaults, and rows without the item head need it (the tie and the shrinkage are
#: parts of the head).
UNTIED = {"history_item_embedding": False, "item_head_tied": False, "item_head_shrink": 0.0, "dropout_prob": 0.0}
#: Rows measured on the tied core before Beauty's section took dropout 0.1 keep dropout 0 by name.
NO_DROPOUT = {"dropout_prob": 0.0}
#: Rows measured with the head reading the history's mean beside its latest state keep it by name.
MEAN_LAST = {"item_head_user": "mean_last"}
#: Rows of the router measured with the expected-loss router, before Beauty's section took the decoupled one, keep
#: it by name (the model default; fixed-split and single-codebook rows have no router).
EXPECTED_LOSS = {"router_mode": "expected_loss"}

def _model_defaults(*keys) -> dict:
    """These keys' values in ``properties/overall.yaml`` < ``properties/model/FlexCode.yaml``."""
    from recbole_flexcode.config import PROPERTIES_DIR, _read_yaml

    merged = {**_read_yaml(PROPERTIES_DIR / "overall.yaml"), **_read_yaml(PROPERTIES_DIR / "model" / "FlexCode.yaml")}
    return {k: merged[k] for k in keys}


#: Rows of the full variant with one of our settings (docs/design.md: "router", "history item embedding").
FLEXCODE_SETTING_ROWS = {
    "decoupled": {"variant": "full", "router_mode": "decoupled"},
    # the paper's reading of the router, trained end to end with the generator (Beauty's section before it took the
    # decoupled router; the model default), with and without the alignment term
    "expected_loss": {"variant": "full", **EXPECTED_LOSS},
    "no_align_expected_loss": {"variant": "no_align", **EXPECTED_LOSS},
    "item_emb": {"variant": "full", "history_item_embedding": True, **EXPECTED_LOSS},
    # ours (issue #13): output-side item capacity, alone and with the history item embedding
    "item_head": {"variant": "full", "item_head_weight": 1.0, **EXPECTED_LOSS},
    "item_emb_head": {"variant": "full", "history_item_embedding": True, "item_head_weight": 1.0, **EXPECTED_LOSS},
    # ... and one more change on top of both (the CPU pilot's cumulative ablation)
    "item_emb_head_decoupled": {"variant": "full", "history_item_embedding": True, "item_head_weight": 1.0,
                                "router_mode": "decoupled"},
    "item_emb_head_tokens": {"variant": "full", "history_item_embedding": True, "item_head_weight": 1.0,
                             "history_encoding": "tokens", **EXPECTED_LOSS},
    # the fixed split the other way round: 1 CF + 2 semantic tokens (the variant fix gives the odd token to CF)
    "fix_cf1": {"variant": "fix", "fixed_cf_tokens": 1, **NO_DROPOUT, **MEAN_LAST},
    # ... with dropout 0.1: its validation peaked at epoch 8 of 10 on two seeds of three, the per-item vectors
    # overfitting as they did untied without dropout (docs/results.md, "the history item embedding now hurts")
    "fix_cf1_dropout01": {"variant": "fix", "fixed_cf_tokens": 1, "dropout_prob": 0.1, **MEAN_LAST},
    "fix_cf1_dropout02": {"variant": "fix", "fixed_cf_tokens": 1, "dropout_prob": 0.2, **MEAN_LAST},
    # ... with the head scoring each item by its whole history vector (item_head_features: codes; the head
    # alone ranks stale rare targets below SASRec, docs/results.md "Fourteenth session")
    "fix_cf1_dropout01_codes": {"variant": "fix", "fixed_cf_tokens": 1, "dropout_prob": 0.1, "item_head_features": "codes",
                                **MEAN_LAST},
    # ... with the head's user vector the latest history state alone, as SASRec scores (item_head_user: last): the
    # head alone loses every 30+ day cell to SASRec and wins every recent one, and the history's mean is the part
    # of mean_last that reads the period a history comes from
    "fix_cf1_dropout01_last": {"variant": "fix", "fixed_cf_tokens": 1, "dropout_prob": 0.1, "item_head_user": "last"},
    # Beauty's section (the router) with that head: the row its runs were trained as, before the section took it
    "last": {"item_head_user": "last", **EXPECTED_LOSS},
    "mean_last": {"variant": "full", **MEAN_LAST, **EXPECTED_LOSS},  # Beauty's section before it took the last-state head
    # the item head's user vector: the history's mean beside its latest state (SASRec scores from the latter)
    "fix_user_last": {"variant": "fix", "item_head_user": "mean_last", **UNTIED},
    # semantic IDs alone with the item head (the semantic_only row takes the dataset's head setting; this
    # one names it, beside the earlier head-less runs of that row)
    "semantic_only_head": {"variant": "semantic_only", "item_head_weight": 1.0},
    # the strengthened core (the head with the mean_last user vector) with one change each: the paper's claims
    # rechecked on it (issue #13 item 5); named rows, since the earlier runs of these variants had the mean head
    "semantic_only_user_last": {"variant": "semantic_only", "item_head_weight": 1.0, "item_head_user": "mean_last",
                                **UNTIED},
    "cf_only_user_last": {"variant": "cf_only", "item_head_weight": 1.0, "item_head_user": "mean_last", **UNTIED},
    "full_user_last": {"variant": "full", "item_head_weight": 1.0, "item_head_user": "mean_last", **UNTIED,
                       **EXPECTED_LOSS},
    "fix_no_align_user_last": {"variant": "fix", "align_weight": 0.0, "item_head_user": "mean_last", **UNTIED},
    # the head's item vectors also project each item's CF and text embeddings (item_head_features): the tail
    "full_user_last_features": {"variant": "full", "item_head_weight": 1.0, "item_head_user": "mean_last",
                                "item_head_features": "both", **UNTIED, **EXPECTED_LOSS},
    # the tail (issue #13): the history's per-item embedding, then the head scoring items by it (tied, as SASRec)
    "full_user_last_item_emb": {"variant": "full", "item_head_weight": 1.0, "item_head_user": "mean_last",
                                **UNTIED, "history_item_embedding": True, **EXPECTED_LOSS},
    "full_user_last_tied": {"variant": "full", "item_head_weight": 1.0, "item_head_user": "mean_last",
                            **UNTIED, "history_item_embedding": True, "item_head_tied": True, **EXPECTED_LOSS},
    # one group of training settings set to the named value, whatever the run's other flags (the CPU
    # pilot gives every row ml-100k's short schedule and takes one change back per row)
    "epochs20": {"variant": "full", "epochs": 20, **EXPECTED_LOSS},
    "dropout0": {"variant": "full", **NO_DROPOUT, **MEAN_LAST, **EXPECTED_LOSS},  # Beauty's section before it took dropout 0.1
    "dropout01": {"variant": "full", "dropout_prob": 0.1, **MEAN_LAST, **EXPECTED_LOSS},
    "dropout02": {"variant": "full", "dropout_prob": 0.2, **MEAN_LAST, **EXPECTED_LOSS},
    "layers_2x2": {"variant": "full", "n_encoder_layers": 2, "n_decoder_layers": 2, **EXPECTED_LOSS},
    "lr_constant": {"variant": "full", "learning_rate": 0.001, "lr_warmup_steps": 0, "lr_schedule": "constant",
                    "train_batch_size": 256, **EXPECTED_LOSS},
    # residual k-means codebooks (faiss, no training, no alignment term)
    "rkmeans": {"variant": "no_align", "tokenizer": "rkmeans", **EXPECTED_LOSS},
    # generator options (issue #13): T5 stacks, every history item's path tokens as encoder positions
    "t5": {"variant": "full", "generator": "t5", **EXPECTED_LOSS},
    "tokens": {"variant": "full", "history_encoding": "tokens", **EXPECTED_LOSS},
    "t5_tokens": {"variant": "full", "generator": "t5", "history_encoding": "tokens", **EXPECTED_LOSS},
    # the public recipes' size (SPEC §6: d 128, 6 heads of 64, FFN 1024, 4 + 4 layers), FlexCode and TIGER-style
    "recipe": {"variant": "full", **RECIPE, **EXPECTED_LOSS},
    "recipe_item_head": {"variant": "full", "item_head_weight": 1.0, **RECIPE, **EXPECTED_LOSS},
    "tiger": {"variant": "semantic_only", "item_head_weight": 0.0, **UNTIED, **RECIPE},  # TIGER has no item-level parameters
    # the generator's training settings of properties/model/FlexCode.yaml, over a dataset's own FlexCode
    # section (Amazon_Beauty's, ml-100k's): the configuration of the first H100 runs
    "model_defaults": {"variant": "full", **_model_defaults(
        "n_encoder_layers", "n_decoder_layers", "dropout_prob", "bf16", "train_batch_size", "learning_rate",
        "lr_warmup_steps", "lr_schedule", "epochs", "item_head_weight", "item_head_candidates", "item_head_prior",
        "item_head_user", "item_head_features", "item_head_shrink", "item_head_tied", "history_item_embedding",
        "router_mode")},
    "no_item_head": {"variant": "full", "item_head_weight": 0.0, **UNTIED, **EXPECTED_LOSS},
}
_ROW_NAME = re.compile(r"^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*$")
_FLEX_ROW = re.compile(r"^FlexCode(?:-(?P<variant>[a-z][a-z0-9_]*?))?(?:-L(?P<budget>\d+))?$")


#: ``--stage`` values that stop a run after its stages (properties/overall.yaml ``stage``): no training, no run file.
_STAGES_ONLY = ("embed", "tokenize")


class BenchmarkError(ValueError):
    """A user-facing argument problem (unknown row, bad list); the CLI exits with status 2."""


@dataclass(frozen=True)
class RowSpec:
    """One row of the benchmark: a model and the settings that distinguish it."""

    name: str
    model: str
    overrides: dict = field(default_factory=dict)

    @property
    def variant(self):
        return self.overrides.get("variant")

    @property
    def budget(self):
        return self.overrides.get("token_budget")

    @property
    def is_budget_row(self) -> bool:
        return self.model == "FlexCode" and "token_budget" in self.overrides


#: SOLID's ablations (issue #5): the backbone without dynamic layers, and DUET without semantics.
SOLID_ROWS = {
    "static": {"dynamic": False},
    "DUET": {"use_semantics": False},
}

#: RecBole's SASRec with one of its settings changed: the grid a tuned SASRec row is chosen from on
#: validation (issue #13: width, history length, dropout, learning rate), so FlexCode is compared with
#: a strong baseline as well as RecBole's default one.
SASREC_ROWS = {
    "h128": {"hidden_size": 128, "inner_size": 512},
    "dropout02": {"hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2},
    "len50": {"MAX_ITEM_LIST_LENGTH": 50},
    "lr0003": {"learning_rate": 0.003},
}


def parse_row(name: str, check_model: bool = True) -> RowSpec:
    """Row name -> :class:`RowSpec` (see the module docstring); :class:`BenchmarkError` if unknown."""
    name = name.strip()
    if not name or not _ROW_NAME.match(name):
        raise BenchmarkError(f"unknown row '{name}'")
    if name == "FlexCode" or name.startswith("FlexCode-"):
        m = _FLEX_ROW.match(name)
        if not m:
            raise BenchmarkError(f"unknown row '{name}': FlexCode rows are FlexCode[-<variant>][-L<n>]")
        variant = m.group("variant") or "full"
        if variant in FLEXCODE_SETTING_ROWS:
            overrides = dict(FLEXCODE_SETTING_ROWS[variant])
        elif variant not in FLEXCODE_VARIANTS:
            raise BenchmarkError(
                f"unknown row '{name}': FlexCode variant '{variant}' is not one of {', '.join(FLEXCODE_VARIANTS)}"
            )
        else:
            overrides = {"variant": variant}
        if m.group("budget") is not None:
            budget = int(m.group("budget"))
            if not 1 <= budget <= 8:
                raise BenchmarkError(f"unknown row '{name}': token budget must be in 1..8")
            overrides["token_budget"] = budget
        return RowSpec(name, "FlexCode", overrides)
    if name.startswith("SOLID-"):
        ablation = name.split("-", 1)[1]
        if ablation not in SOLID_ROWS:
            raise BenchmarkError(f"unknown row '{name}': SOLID rows are SOLID, {', '.join('SOLID-' + a for a in SOLID_ROWS)}")
        return RowSpec(name, "SOLID", dict(SOLID_ROWS[ablation]))
    if name.startswith("SASRec-"):
        setting = name.split("-", 1)[1]
        if setting not in SASREC_ROWS:
            raise BenchmarkError(f"unknown row '{name}': SASRec rows are SASRec, {', '.join('SASRec-' + a for a in SASREC_ROWS)}")
        return RowSpec(name, "SASRec", dict(SASREC_ROWS[setting]))
    if "-" in name:
        raise BenchmarkError(f"unknown row '{name}'")
    if check_model:
        from recbole_flexcode.config import ConfigError, get_model_class

        try:
            get_model_class(name)
        except (ConfigError, ImportError) as exc:
            # RecBole's model lookup imports every model module while searching; a missing
            # optional dependency (lightgbm, xgboost) surfaces as ImportError for unknown names.
            raise BenchmarkError(f"unknown row '{name}': not a plugin model nor a RecBole model") from exc
    return RowSpec(name, name, {})


def _split_list(text: str) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in _split_list(text)]
    except ValueError as exc:
        raise BenchmarkError(f"--{what} must be comma-separated integers, got '{text}'") from exc
    return list(dict.fromkeys(values))


def build_rows(models: str, budgets: str | None, check_model: bool = True) -> list[RowSpec]:
    """Rows in command-line order, duplicates dropped; ``--budgets`` appends ``FlexCode-L<n>`` rows."""
    names = _split_list(models)
    for b in parse_int_list(budgets, "budgets") if budgets else []:
        names.append(f"FlexCode-L{b}")
    rows, seen = [], set()
    for n in names:
        spec = parse_row(n, check_model=check_model)
        if spec.name not in seen:
            seen.add(spec.name)
            rows.append(spec)
    if not rows:
        raise BenchmarkError("no rows given (--models)")
    return rows


# ---------------------------------------------------------------------- paths and files
def dataset_dir(out: str, dataset: str) -> str:
    return os.path.join(out, dataset)


def runs_dir(out: str, dataset: str) -> str:
    return os.path.join(dataset_dir(out, dataset), "runs")


def run_file(out: str, dataset: str, row: str, seed: int) -> str:
    return os.path.join(runs_dir(out, dataset), f"{row}-seed{seed}.json")


def write_json_atomic(path: str, data: dict) -> None:
    """``recbole_flexcode.io.write_json``: never a partial run file."""
    write_json(path, data)


def load_finished(path: str) -> dict | None:
    """The run JSON at ``path`` if it is complete (has the ``benchmark`` section), else None."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("benchmark"), dict) and "test_result" in data:
        return data
    return None


# ---------------------------------------------------------------------- measurements
def device_name(machine: dict | None) -> str:
    machine = machine or {}
    if machine.get("gpu"):
        return f"GPU: {machine['gpu']}"
    return f"CPU: {cpu_model()} ({os.cpu_count()} cores)"


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux ``echo 5 > /proc/self/clear_refs``); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (``VmHWM``; ``ru_maxrss`` where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def _bench_base(spec: RowSpec, seed: int, device: str, wall_s, timings: dict, n_users) -> dict:
    """The ``benchmark`` fields shared by runner-made and adopted runs (row, seed, times, throughput)."""
    test_s = timings.get("test")
    return {
        "row": spec.name,
        "model": spec.model,
        "row_overrides": dict(spec.overrides),
        "seed": int(seed),
        "device": device,
        "wall_s": wall_s,
        "train_s": timings.get("train"),
        "stages_s": sum((timings.get("stages") or {}).values()) if timings.get("stages") else None,
        "test_s": test_s,
        "n_test_users": n_users,
        "inference_users_per_s": (n_users / test_s) if n_users and test_s else None,
        "inference_timing": "test users / timings_s.test (RecBole test pass incl. checkpoint load)",
    }


def row_overrides(spec: RowSpec, overrides: dict, dataset: str, config_files) -> dict:
    """The ``--key=value`` settings this row's model accepts: a FlexCode-only setting (``--cf_epochs``)
    given to a mixed run reaches the FlexCode rows, not the SASRec one."""
    if not overrides:
        return {}
    from recbole_flexcode.config import FlexConfig

    known = FlexConfig(spec.model, dataset, config_files, None, {"seed": 0}).known_keys
    return {k: v for k, v in overrides.items() if k in known}


def check_rows(rows, overrides: dict, dataset: str, config_files, seed: int) -> None:
    """Build every row's configuration before anything runs: a bad setting fails in seconds, not
    hours into the run; a setting no row accepts is an error."""
    from recbole_flexcode.config import ConfigError, FlexConfig

    used = set()
    for spec in rows:
        mine = row_overrides(spec, overrides, dataset, config_files)
        used |= set(mine)
        try:
            FlexConfig(spec.model, dataset, config_files, None, {**mine, **spec.overrides, "seed": seed})
        except (ConfigError, FileNotFoundError) as exc:
            raise BenchmarkError(f"row {spec.name}: {exc}") from exc
    unused = sorted(set(overrides) - used)
    if unused:
        raise BenchmarkError(f"no row accepts {', '.join('--' + k for k in unused)} "
                             f"(rows: {', '.join(s.name for s in rows)})")


def run_one(spec: RowSpec, seed: int, dataset: str, path: str, overrides: dict, config_files, command: str) -> dict:
    """Train and evaluate one (row, seed) through ``quick_start.run``; write its JSON; return it."""
    from recbole_flexcode import quick_start

    cuda = _cuda_available()
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    rss_reset = reset_peak_rss()
    cmd_args = {**row_overrides(spec, overrides, dataset, config_files), **spec.overrides, "seed": int(seed)}
    t0 = time.time()
    result = quick_start.run(
        spec.model,
        dataset,
        config_file_list=config_files,
        cmd_args=cmd_args,
        saved=True,
        result_file=path,
        command=command,
    )
    wall = time.time() - t0
    if result.get("stage") in _STAGES_ONLY:
        return dict(result)  # caches built, nothing trained: no run file, so a later run trains it
    result = dict(result)
    result.pop("result_file", None)
    machine = result.get("machine") or {}
    on_gpu = str(machine.get("device", "")).startswith("cuda") and cuda
    timings = result.get("timings_s") or {}
    n_users = result.get("n_test_users")
    if n_users is None:
        n_users = (result.get("popularity_groups") or {}).get("all", {}).get("users")
    bench = {
        **_bench_base(spec, seed, device_name(machine if on_gpu else {}), wall, timings, n_users),
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_rss_reset": rss_reset,
        "peak_gpu_memory_bytes": None,
    }
    if on_gpu:
        import torch

        bench["peak_gpu_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        bench["peak_memory_bytes"] = bench["peak_gpu_memory_bytes"]
        bench["peak_memory_kind"] = "GPU max allocated"
    else:
        bench["peak_memory_bytes"] = bench["peak_rss_bytes"]
        bench["peak_memory_kind"] = "process peak RSS" if rss_reset else "process lifetime max RSS"
    result["benchmark"] = bench
    write_json_atomic(path, result)
    return result


def adopt_runs(out: str, dataset: str) -> list[str]:
    """Give finished ``run_flexcode.py`` results in ``runs/`` a ``benchmark`` section.

    A run made with ``python run_flexcode.py ... --result_file=<out>/<dataset>/runs/<row>-seed<seed>.json``
    follows the same protocol as a runner's run but lacks the cost bookkeeping. Its row comes from
    the file name (checked against the record's model, variant, budget and seed); cost fields come
    from its ``timings_s``; peak memory was not measured and stays empty. Returns the adopted paths.
    """
    adopted = []
    for path in sorted(glob.glob(os.path.join(runs_dir(out, dataset), "*.json"))):
        m = re.match(r"^(?P<row>.+)-seed(?P<seed>-?\d+)\.json$", os.path.basename(path))
        if m is None:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or "test_result" not in rec or isinstance(rec.get("benchmark"), dict):
            continue
        spec = parse_row(m.group("row"), check_model=False)
        seed = int(m.group("seed"))
        report = rec.get("model_report") or {}
        mismatch = []
        if rec.get("model") != spec.model:
            mismatch.append(f"model {rec.get('model')} != {spec.model}")
        if rec.get("seed") is not None and int(rec["seed"]) != seed:
            mismatch.append(f"seed {rec['seed']} != {seed}")
        for key in ("variant", "token_budget"):
            if key in spec.overrides and report.get(key) is not None and report[key] != spec.overrides[key]:
                mismatch.append(f"{key} {report[key]} != {spec.overrides[key]}")
        if mismatch:
            raise BenchmarkError(f"{path}: file name does not match the run ({'; '.join(mismatch)})")
        timings = rec.get("timings_s") or {}
        machine = rec.get("machine") or {}
        n_users = rec.get("n_test_users")
        if machine.get("gpu"):
            device = f"GPU: {machine['gpu']}"
        else:
            threads = machine.get("cpu_threads")
            device = f"CPU: {machine['cpu']}" if machine.get("cpu") else "CPU (model not recorded)"
            if threads:
                device += f"; {threads} thread{'s' if threads != 1 else ''}"
        # the stages are a nested section of timings_s; they are part of the run's wall time too
        wall = sum(v for v in timings.values() if isinstance(v, (int, float)))
        wall += sum(v for v in (timings.get("stages") or {}).values() if isinstance(v, (int, float)))
        rec["benchmark"] = {
            **_bench_base(spec, seed, device, wall, timings, n_users),
            "peak_rss_bytes": None,
            "peak_gpu_memory_bytes": rec.get("peak_gpu_memory_bytes"),
            "peak_memory_bytes": None,
            "peak_memory_kind": "not measured: adopted run",
            "adopted": "made by the command above, not by this runner; wall_s = sum of timings_s",
        }
        write_json_atomic(path, rec)
        adopted.append(path)
    return adopted


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# ---------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m recbole_flexcode.benchmark",
        allow_abbrev=False,  # --seed or --data_path must never be read as --seeds / --dataset
        description="Train every row for every seed under the shared protocol (resumable) and write "
        "<out>/<dataset>/benchmark.md and benchmark.csv. Any other --key=value is a RecBole/plugin "
        "setting given to every run.",
    )
    p.add_argument("--dataset", "-d", required=True, help="dataset name (e.g. Amazon_Beauty)")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated rows (default: {DEFAULT_MODELS})")
    p.add_argument("--budgets", default=None, help="token budgets: adds rows FlexCode-L<n> (e.g. 3,4,5,6)")
    p.add_argument("--seeds", default=DEFAULT_SEEDS, help=f"comma-separated seeds (default: {DEFAULT_SEEDS})")
    p.add_argument("--out", default="results", help="results root (default: results)")
    p.add_argument("--config_files", default=None, help="space-separated YAML config files for every run")
    p.add_argument("--tables-only", "--tables_only", dest="tables_only", action="store_true",
                   help="only rewrite the tables from existing run JSONs (no training)")
    p.add_argument("--adopt", action="store_true",
                   help="first give runs/<row>-seed<seed>.json files written by run_flexcode.py a benchmark "
                   "section (cost fields from their timings), so tables and resume count them")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per run, as in run_flexcode.py (default: OMP_NUM_THREADS when set, else 1)")
    return p


def command_line(argv) -> str:
    return "python -m recbole_flexcode.benchmark " + " ".join(shlex.quote(a) for a in argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    command = command_line(argv)
    from recbole_flexcode.benchmark import tables

    try:
        from recbole_flexcode.config import ConfigError, parse_overrides

        try:
            overrides = parse_overrides(rest)
        except ConfigError as exc:
            raise BenchmarkError(str(exc)) from exc
        if "seed" in overrides:
            raise BenchmarkError("use --seeds=a,b,c instead of --seed")
        from recbole_flexcode.quick_start import keep_freed_memory, set_threads

        # the same process settings as run_flexcode.py, so a row costs what a plain run of it costs
        try:
            set_threads(args.threads)
        except ConfigError as exc:
            raise BenchmarkError(str(exc)) from exc
        keep_freed_memory()
        rows = build_rows(args.models, args.budgets, check_model=not args.tables_only)
        seeds = parse_int_list(args.seeds, "seeds")
        if not seeds:
            raise BenchmarkError("no seeds given (--seeds)")
        config_files = args.config_files.split() if args.config_files else None
        if not args.tables_only:
            check_rows(rows, overrides, args.dataset, config_files, seeds[0])
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.adopt:
        try:
            for path in adopt_runs(args.out, args.dataset):
                print(f"adopted {path}")
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    row_names = [r.name for r in rows]
    models_given = any(a == "--models" or a.startswith("--models=") for a in argv) or args.budgets
    if args.tables_only:
        written = tables.write_tables(
            args.out, args.dataset, row_order=row_names, only_rows=row_names if models_given else None,
            command=command,
        )
        for path in written:
            print(f"wrote {path}")
        return 0

    plan = [(spec, seed) for spec in rows for seed in seeds]
    total = len(plan)
    # a stages-only run writes no run file, so a finished run of the same row and seed (another
    # machine's, a GPU run's) must neither skip its stages nor have its tables rewritten here
    stages_only = overrides.get("stage") in _STAGES_ONLY

    def done(spec, seed) -> bool:
        return not stages_only and load_finished(run_file(args.out, args.dataset, spec.name, seed)) is not None

    todo = sum(1 for spec, seed in plan if not done(spec, seed))
    print(f"benchmark {args.dataset}: {len(rows)} rows x {len(seeds)} seeds = {total} runs ({total - todo} done, {todo} to run)",
          flush=True)
    start = time.time()
    durations: list[float] = []
    failed: list[str] = []
    status = 0
    try:
        for i, (spec, seed) in enumerate(plan, start=1):
            path = run_file(args.out, args.dataset, spec.name, seed)
            head = f"[{i}/{total}] {spec.name} seed {seed} ..."
            if done(spec, seed):
                print(f"{head} skip (done)", flush=True)
                continue
            print(f"{head} start (elapsed {_fmt_duration(time.time() - start)})", flush=True)
            t = time.time()
            try:
                result = run_one(spec, seed, args.dataset, path, overrides, config_files, command)
            except (ConfigError, FileNotFoundError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one failed run must not stop the others
                traceback.print_exc()
                print(f"{head} FAILED: {type(exc).__name__}: {exc}", flush=True)
                failed.append(f"{spec.name} seed {seed}")
                status = 1
                todo -= 1
                continue
            if result.get("stage") in _STAGES_ONLY:
                print(f"{head} stages built and cached in {_fmt_duration(time.time() - t)} (stage={result['stage']})",
                      flush=True)
                todo -= 1
                continue
            durations.append(time.time() - t)
            todo -= 1
            eta = (sum(durations) / len(durations)) * todo
            print(
                f"{head} done in {_fmt_duration(durations[-1])} (elapsed {_fmt_duration(time.time() - start)}, "
                f"ETA {_fmt_duration(eta)} for {todo} more)",
                flush=True,
            )
            tables.write_tables(args.out, args.dataset, row_order=row_names, command=command)
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    if stages_only:
        return status
    written = tables.write_tables(args.out, args.dataset, row_order=row_names, command=command)
    for path in written:
        print(f"wrote {path}")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
    return status
