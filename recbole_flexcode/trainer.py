"""The trainer of the plugin's models: RecBole's, plus the schedule the strong generative recipes use.

TIGER, GRID and the other public recipes (SPEC §6) train their generators with AdamW, a linear
warm-up and cosine decay of the learning rate, gradient clipping, and bf16 on GPUs. RecBole 1.2.1
has AdamW (``learner: adamw`` with ``weight_decay``) and clipping (``clip_grad_norm``); this adds

* ``lr_warmup_steps`` / ``lr_schedule`` (``constant`` | ``cosine``): the learning rate of training step
  ``t`` is ``lr · min(1, t / warmup) · cos-factor``, the cosine running from the end of the warm-up
  to ``epochs`` × batches per epoch, stepped after every optimizer step;
* ``bf16``: on CUDA, or on a CPU with bf16 arithmetic (AVX512-BF16 / AMX), the loss is computed under
  ``torch.autocast(dtype=bfloat16)`` (no loss scaler: bf16 has float32's exponent range; on a CPU with
  SDPA's math attention kernel); on another CPU it is ignored with a note in the log.

With the defaults (no warm-up, constant) it is RecBole's trainer exactly. Registered as
``recbole.trainer.FlexCodeTrainer`` / ``SOLIDTrainer``, so RecBole's own ``get_trainer`` (and with
it ``run_recbole``) picks it for the plugin's models.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch
from recbole.trainer import Trainer
from torch.nn.attention import SDPBackend, sdpa_kernel

from recbole_flexcode.config import ConfigError

LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine" and total > warmup:
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


class GenerativeTrainer(Trainer):
    """RecBole's ``Trainer`` with warm-up + cosine learning rate and bf16 autocast (module docstring)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.lr_warmup_steps = int(config["lr_warmup_steps"] or 0)
        self.lr_schedule = config["lr_schedule"] or "constant"
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule: unknown value '{self.lr_schedule}' (choose from {', '.join(LR_SCHEDULES)})")
        self.autocast_device = torch.device(self.device).type
        # a CPU with bf16 arithmetic (AVX512-BF16 / AMX: oneDNN's bf16 matmuls) gains from it too; others do not
        self.bf16 = bool(config["bf16"]) and (self.autocast_device == "cuda" or (
            self.autocast_device == "cpu" and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()))
        if config["bf16"] and not self.bf16:
            self.logger.info("bf16: no CUDA device and no CPU bf16 arithmetic, training in float32")
        self.scheduler = None

    def _start_schedule(self, train_data) -> None:
        if self.scheduler is not None or (self.lr_warmup_steps == 0 and self.lr_schedule == "constant"):
            return
        total = self.epochs * len(train_data)
        warmup, schedule = self.lr_warmup_steps, self.lr_schedule
        for group in self.optimizer.param_groups:  # the schedule is a function of the step alone
            group["lr"] = group["initial_lr"] = self.learning_rate
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: lr_factor(step, warmup, total, schedule))
        with warnings.catch_warnings():  # fast-forwarding before any optimizer step is intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(self.start_epoch * len(train_data)):  # a resumed run (--resume) goes on where it stopped
                self.scheduler.step()
        self.optimizer.register_step_post_hook(lambda *_: self.scheduler.step())

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._start_schedule(train_data)
        loss_func = loss_func or self.model.calculate_loss
        if self.bf16:
            inner = loss_func

            # on a CPU, bf16 attention through SDPA's flash kernel is several times slower than the math kernel at these
            # sequence lengths (docs/design.md, "Speed on a 2-core CPU"); float32 keeps its default choice
            kernel = (lambda: sdpa_kernel([SDPBackend.MATH])) if self.autocast_device == "cpu" else contextlib.nullcontext

            def loss_func(interaction):
                with torch.autocast(device_type=self.autocast_device, dtype=torch.bfloat16), kernel():
                    return inner(interaction)

        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
