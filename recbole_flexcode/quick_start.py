"""Run one model on one dataset through RecBole's pipeline and report like for like.

``run()`` is the library entry point; ``main()`` backs ``run_flexcode.py`` and the
``recbole-flexcode`` console script.  Steps: plugin config -> RecBole dataset and leave-last-out
split -> model (plugin models run their tokenizer stages in their constructor, cached) ->
RecBole trainer with early stopping on validation NDCG@10 -> test on the best-validation
checkpoint -> head/tail metrics -> a JSON result file.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from logging import getLogger

import torch

import recbole_flexcode  # noqa: F401  (compatibility fixes)
from recbole_flexcode.config import ConfigError, FlexConfig, get_model_class
from recbole_flexcode.analysis import export_artifacts, model_report, validation_diagnostics
from recbole_flexcode.data.checks import check_atomic_files, create_checked_dataset
from recbole_flexcode.evaluation import popularity_group_metrics
from recbole_flexcode.io import write_json
from recbole_flexcode.reporting import machine_description
from recbole_flexcode.pipeline import prepare
from recbole_flexcode.resume import ResumableRun


_TRAINER_COUNT = itertools.count()


def _trainer_for(config, model):
    from recbole.utils import get_trainer

    # the plugin's models get recbole_flexcode.trainer.GenerativeTrainer (compat fix 9)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    # RecBole names the checkpoint <model>-<local time to the second>.pth: runs of one model started
    # in the same second (parallel benchmark processes on one GPU) would overwrite each other's
    # best checkpoint and test the wrong model.
    root, ext = os.path.splitext(trainer.saved_model_file)
    trainer.saved_model_file = f"{root}-seed{config['seed']}-{os.getpid()}-{next(_TRAINER_COUNT)}{ext}"
    return trainer


def _plain(value):
    """Metrics dicts as JSON-friendly floats."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def format_table(result: dict) -> str:
    """Best-validation and test metrics side by side, one metric per row."""
    valid, test = result.get("best_valid_result") or {}, result.get("test_result") or {}
    names = list(dict.fromkeys(list(valid) + list(test)))
    lines = [f"{'metric':<12} {'valid':>8} {'test':>8}", "-" * 30]
    def cell(x):
        return "-" if x is None else f"{x:.4f}"

    for name in names:
        lines.append(f"{name:<12} {cell(valid.get(name)):>8} {cell(test.get(name)):>8}")
    groups = result.get("popularity_groups")
    if groups:
        lines.append("-" * 30)
        for g in ("head", "tail"):
            m = groups[g]
            lines.append(
                f"test {g:<4} users={m['users']:<6} recall@10={m.get('recall@10', float('nan')):.4f} "
                f"ndcg@10={m.get('ndcg@10', float('nan')):.4f}"
            )
    return "\n".join(lines)


class _TimeBudgetReached(Exception):
    """Raised between epochs by :class:`_EpochWatch`; the best checkpoint is already on disk."""


class _EpochWatch:
    """RecBole ``fit`` callback: records epochs, the best epoch and the validation curve, and enforces
    ``train_time_budget``.

    RecBole calls it after each validation, once the epoch's checkpoint (if best) is saved.  With a
    budget, training stops before an epoch that would end past it (judged by the slowest epoch so
    far), so a CPU run or a time-limited GPU job ends with a tested model instead of none.  Each call
    logs one progress line: the epoch, the time so far and the most that is left (every remaining epoch
    at the mean epoch time so far, capped by the budget; early stopping can end the run sooner).
    """

    def __init__(self, trainer, budget):
        self.trainer = trainer
        self.budget = None if budget in (None, "", 0) else float(budget)
        if self.budget is not None and self.budget < 0:
            raise ConfigError("train_time_budget must be a positive number of seconds")
        self.start = time.time()
        self.last = self.start
        self.slowest = 0.0
        self.epochs_run = 0
        self.best_epoch = None
        self.stopped_by_budget = False
        self.valid_curve: list[float] = []

    def __call__(self, epoch_idx, valid_score):
        now = time.time()
        self.valid_curve.append(float(valid_score))
        self.slowest = max(self.slowest, now - self.last)
        self.last = now
        self.epochs_run = epoch_idx + 1
        eval_step = max(int(getattr(self.trainer, "eval_step", 1) or 1), 1)
        self.best_epoch = epoch_idx - self.trainer.cur_step * eval_step
        total = int(getattr(self.trainer, "epochs", self.epochs_run + 1))
        more = self.epochs_run < total
        self._progress(now, total)
        if self.budget is not None and more and now - self.start + self.slowest > self.budget:
            self.stopped_by_budget = True
            raise _TimeBudgetReached()

    def _progress(self, now: float, total: int) -> None:
        elapsed = now - self.start
        first = int(getattr(self.trainer, "start_epoch", 0) or 0)  # a resumed run counts from where it went on
        done = max(self.epochs_run - first, 1)
        left = elapsed / done * max(total - self.epochs_run, 0)
        if self.budget is not None:
            left = min(left, max(self.budget - elapsed, 0.0))
        getLogger().info("training: epoch %d/%d done, elapsed %.1f s, at most about %.1f s left (%s)", self.epochs_run,
                         total, elapsed, left, "early stopping can end it sooner" if self.epochs_run < total else "last epoch")

    def summary(self) -> dict:
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "train_time_budget_s": self.budget,
            "stopped_by_time_budget": self.stopped_by_budget,
            "valid_curve": self.valid_curve,
        }


def run(
    model: str,
    dataset: str = "ml-100k",
    config_file_list=None,
    config_dict: dict | None = None,
    cmd_args=None,
    saved: bool = True,
    result_file: str | None = None,
    command: str | None = None,
) -> dict:
    """Train ``model`` on ``dataset`` under the shared protocol; return (and write) the results."""
    t0 = time.time()
    config = FlexConfig(model, dataset, config_file_list, config_dict, cmd_args)
    config.check_dataset()
    check_atomic_files(config)  # one error line for unreadable input, before RecBole or any stage reads it

    from recbole.data import data_preparation
    from recbole.utils import init_logger, init_seed

    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    timings = {}

    dataset_obj = create_checked_dataset(config)
    logger.info(dataset_obj)
    train_data, valid_data, test_data = data_preparation(config, dataset_obj)
    timings["data"] = time.time() - t0

    # stages before the model (text embeddings -> collaborative embeddings -> item tokenizer), each
    # seeded from the run's seed, so the model starts from the same random state whatever was cached
    t = time.time()
    stages = prepare(config, train_data._dataset, logger)
    if stages is not None:
        timings["stages"] = dict(stages.timings)
    if config["stage"] in ("embed", "tokenize"):  # properties/overall.yaml: train
        timings["stages_total"] = time.time() - t
        logger.info("stage=%s: stages built and cached in %.1f s; no training", config["stage"], timings["stages_total"])
        return {"model": config["model"], "dataset": config["dataset"], "seed": config["seed"],
                "stage": config["stage"], "timings_s": timings}

    t = time.time()
    init_seed(config["seed"], config["reproducibility"])
    model_obj = get_model_class(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model_obj)
    timings["model_init"] = time.time() - t

    trainer = _trainer_for(config, model_obj)
    t = time.time()
    watch = _EpochWatch(trainer, config["train_time_budget"] if "train_time_budget" in config else None)
    resumable = ResumableRun(config, trainer, train_data, watch, logger)
    resumed = bool(config["resume"]) and resumable.restore()

    def after_validation(epoch_idx, valid_score):
        resumable.after_validation(epoch_idx, valid_score)  # first: an interruption from here on loses nothing
        watch(epoch_idx, valid_score)

    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=after_validation
        )
        resumable.clear()
    except _TimeBudgetReached:
        logger.warning(
            "train_time_budget (%ss) reached after epoch %d: testing the best-validation checkpoint so far "
            "(--resume=True goes on from here)", watch.budget, watch.epochs_run - 1,
        )
        best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
    except KeyboardInterrupt:
        logger.warning("interrupted: the state after the last validation is in %s; rerun with --resume=True to go on",
                       resumable.path)
        raise
    timings["train"] = time.time() - t

    t = time.time()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    timings["test"] = time.time() - t
    n_test_users = len(test_data._dataset.inter_feat) if hasattr(test_data, "_dataset") else None

    from recbole.data.dataloader import FullSortEvalDataLoader

    # head/tail ranks need every item's score; sampled evaluation (uniN, GAUC) has no such ranks
    def groups_of(data):
        if not isinstance(data, FullSortEvalDataLoader):
            return None
        return popularity_group_metrics(trainer.model, data, train_data._dataset, config["device"], ks=tuple(config["topk"]))

    groups = groups_of(test_data)
    # the selected checkpoint on validation too, by the same strata: whether a valid→test drop comes from the
    # test targets being other items (evaluation.at_mix)
    valid_groups = groups_of(valid_data)

    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "best_valid_score": _plain(best_valid_score),
        "best_valid_result": _plain(dict(best_valid_result or {})),
        "test_result": _plain(dict(test_result)),
        "popularity_groups": groups,
        "popularity_groups_valid": valid_groups,
        "n_test_users": n_test_users,
        "timings_s": timings,
        "training": {**watch.summary(), "resumed": resumed},
        "checkpoint": trainer.saved_model_file if saved else None,
        "machine": machine_description(config["device"]),
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
    }
    report = model_report(trainer.model)
    if report is not None:
        result["model_report"] = report
    # validation rows only, so test data informs nothing but the test metrics
    diagnostics = validation_diagnostics(trainer.model, valid_data)
    if diagnostics is not None:
        result["diagnostics"] = diagnostics

    if result_file is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        result_file = os.path.join(config["results_dir"], f"{config['model']}-{config['dataset']}-{stamp}.json")
    artifacts = export_artifacts(trainer.model, os.path.splitext(result_file)[0] + "_artifacts")
    if artifacts is not None:
        result["artifacts"] = artifacts
    write_json(result_file, result)
    result["result_file"] = result_file
    logger.info("results written to %s", result_file)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_flexcode.py",
        allow_abbrev=False,
        description="Train and evaluate a model (FlexCode, SOLID or any RecBole model) under the shared protocol. "
        "Any other RecBole setting is given as --key=value.",
    )
    parser.add_argument("--model", "-m", default="FlexCode", help="model name (default: FlexCode)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (default: ml-100k)")
    parser.add_argument("--config_files", default=None, help="space-separated YAML config files")
    parser.add_argument("--result_file", default=None, help="where to write the JSON results")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: OMP_NUM_THREADS when set, else 1; docs/design.md, 'Speed')")

    def one_line_error(message):  # main() prints it as one "error:" line (argparse: usage block, exit 2)
        raise ConfigError(message)

    parser.error = one_line_error
    return parser


def set_threads(requested: int | None = None) -> int:
    """Set torch's CPU threads for a run: ``requested``, else ``OMP_NUM_THREADS`` when set, else one.

    One by default, measured (docs/design.md, "Speed on a 2-core CPU"): on a 2-core machine that other
    jobs share, two OpenMP threads ran FlexCode's training step several times *slower* than one whenever another
    process was busy (each of the ~hundreds of small ops per step ends in a barrier that waits for the
    descheduled thread), while one thread loses far less than that on an idle machine. Give
    ``--threads=2`` on a machine of your own.
    """
    if requested is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        requested = int(env) if env.isdigit() and int(env) > 0 else 1
    if requested < 1:
        raise ConfigError(f"--threads must be >= 1, got {requested}")
    torch.set_num_threads(int(requested))
    return torch.get_num_threads()


def keep_freed_memory() -> bool:
    """glibc's allocator: serve and keep large blocks on the heap instead of mapping and unmapping them.

    By default every temporary above a few MiB (the ``[batch, positions, vocab]`` logits of each training
    step) is a fresh ``mmap`` whose pages fault in on first touch and go back to the kernel on ``free``;
    on the 2-core VM this cost FlexCode's step a measurable share (docs/design.md, "Speed on a 2-core CPU"). With
    ``mallopt`` the process keeps up to 1 GiB of freed memory for reuse. A no-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, 256 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        # every bad input (argument, key, value, file, model, dataset) is a ConfigError raised while the
        # configuration is built, so it fails before any dataset is loaded or stage trained
        args, rest = parser.parse_known_args(argv)
        set_threads(args.threads)
        keep_freed_memory()
        config_files = args.config_files.split() if args.config_files else None
        result = run(
            args.model,
            args.dataset,
            config_file_list=config_files,
            cmd_args=rest,
            result_file=args.result_file,
            command="python run_flexcode.py " + " ".join(shlex.quote(a) for a in argv),
        )
    except (ConfigError, FileNotFoundError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if result.get("stage") in ("embed", "tokenize"):
        print(f"{result['model']} on {result['dataset']}: stages up to '{result['stage']}' built and cached "
              f"({result['timings_s']['stages_total']:.1f} s); no training")
        return 0
    print(f"\n{result['model']} on {result['dataset']} (best validation epoch; test on that checkpoint)")
    print(format_table(result))
    print(f"results: {result['result_file']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
