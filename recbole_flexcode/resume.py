"""Resumable training: a run's full state after every validation, so an interrupted run goes on.

RecBole's trainer keeps only the best checkpoint, and that file holds the pickled ``Config`` (so a
new process may not load it, see compat fix 3). After every validation :class:`ResumableRun`
writes ``<checkpoint_dir>/resume-<model>-<dataset>-seed<seed>-<key>.pth`` (atomically), holding
tensors and plain values only — loadable with ``torch.load(weights_only=True)``:

* the current and the best model weights, the optimizer, the early-stopping state, the epoch;
* every random generator the training loop draws from (torch, NumPy, Python, CUDA) and the training
  loader's shuffling generator;
* the epoch watcher's curve (``training`` in the run JSON).

``--resume=True`` restores it before training (the best weights are written again as this process's
own best checkpoint), so on CPU the resumed run ends exactly where an uninterrupted one would.
The key hashes the configuration except the keys that cannot change the result (``show_progress``,
``resume``, ``train_time_budget``, ...), so a resumed run must use the same settings. The file is
removed when training finishes; one stopped by ``train_time_budget`` keeps it, to go on with more time.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from recbole_flexcode.embeddings.cache import cache_key
from recbole_flexcode.io import atomic_write

#: Keys that do not change what a run computes: a resumed run may differ in them.
NEUTRAL_KEYS = ("resume", "show_progress", "train_time_budget", "results_dir", "checkpoint_dir", "state", "log_wandb",
                "worker", "gpu_id", "use_gpu", "device", "local_rank", "nproc", "world_size", "offset", "ip", "port")


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_key(config) -> str:
    """Hash of every setting that can change what the run computes."""
    settings = {k: v for k, v in config.final_config_dict.items() if k not in NEUTRAL_KEYS}
    return cache_key(settings=json.loads(json.dumps(settings, sort_keys=True, default=str)))


class ResumableRun:
    """Saves and restores the state of one training run (see module docstring)."""

    def __init__(self, config, trainer, train_data, watch, logger: logging.Logger | None = None):
        self.trainer, self.train_data, self.watch = trainer, train_data, watch
        self.logger = logger or logging.getLogger(__name__)
        name = f"resume-{config['model']}-{config['dataset']}-seed{config['seed']}-{run_key(config)}.pth"
        self.path = Path(config["checkpoint_dir"], name)
        self.best_state: dict | None = None
        self.best_epoch: int | None = None

    def after_validation(self, epoch_idx: int, valid_score: float) -> None:
        """RecBole ``fit`` callback (after the epoch's best checkpoint is written): save the run's state."""
        t = self.trainer
        if t.cur_step == 0:  # this validation improved the best score: the current weights are the best
            self.best_state = copy.deepcopy(t.model.state_dict())
            self.best_epoch = epoch_idx
        state = {
            "epoch": epoch_idx,
            "cur_step": t.cur_step,
            "best_valid_score": float(t.best_valid_score),
            "best_valid_result": {k: float(v) for k, v in (t.best_valid_result or {}).items()},
            "stopped": bool(t.cur_step > t.stopping_step),
            "model": t.model.state_dict(),
            "best_model": self.best_state,
            "best_epoch": self.best_epoch,
            "optimizer": t.optimizer.state_dict(),
            "rng": _rng_state(),
            "loader_rng": self.train_data.generator.get_state(),
            "watch": {"epochs_run": epoch_idx + 1, "valid_curve": list(self.watch.valid_curve) + [float(valid_score)],
                      "best_epoch": epoch_idx - t.cur_step * max(int(t.eval_step or 1), 1)},
        }
        try:
            atomic_write(self.path, lambda p: torch.save(state, p))
        except OSError as exc:  # a read-only checkpoint folder: training goes on, unresumable
            self.logger.warning("resume: cannot write %s (%s)", self.path, exc)

    def restore(self) -> bool:
        """Load the saved state into the trainer, model and generators; False when there is none."""
        if not self.path.is_file():
            self.logger.info("resume: no saved state %s; training from the start", self.path)
            return False
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        t = self.trainer
        if state["best_model"] is not None:
            # the previous process's best checkpoint is not ours to unpickle: write it again
            t.model.load_state_dict(state["best_model"])
            t._save_checkpoint(state["best_epoch"], verbose=False)
            self.best_state, self.best_epoch = state["best_model"], state["best_epoch"]
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.start_epoch = t.epochs if state["stopped"] else state["epoch"] + 1
        t.cur_step = state["cur_step"]
        t.best_valid_score = state["best_valid_score"]
        t.best_valid_result = state["best_valid_result"] or None
        _set_rng_state(state["rng"])
        self.train_data.generator.set_state(state["loader_rng"])
        self.watch.epochs_run = state["watch"]["epochs_run"]
        self.watch.valid_curve = list(state["watch"]["valid_curve"])
        self.watch.best_epoch = state["watch"]["best_epoch"]
        self.logger.info("resume: continuing after epoch %d (best epoch %s) from %s", state["epoch"], state["best_epoch"], self.path)
        return True

    def clear(self) -> None:
        """Training finished: the state is no longer needed."""
        if self.path.is_file():
            os.unlink(self.path)
