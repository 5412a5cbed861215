"""How each item's token budget is split between the two codebooks (FlexCode §4.3), as small objects.

A split policy answers three questions for :class:`~recbole_flexcode.model.flexcode.FlexCode`:

* :meth:`SplitPolicy.probs` — ``p_i(s)`` of every item over the ``L + 1`` splits (``s`` = collaborative
  tokens), which masks the item's code embeddings in histories;
* :meth:`SplitPolicy.plan` — for a training batch, the history masks to use, the target splits whose
  ``L_ARG`` is computed and their weights;
* :meth:`SplitPolicy.add_loss` — the policy's own loss terms.

:class:`FixedSplit` (variants ``fix``, ``cf_only``, ``semantic_only``), :class:`ExpectedLossRouter`
(the paper's router as SPEC reads it) and :class:`DecoupledRouter` (ours; docs/design.md, "router").
Both routers may start with a warm-up in which every item draws a random split each step, so that
every split's paths get trained before the router chooses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recbole_flexcode.config import ConfigError
from recbole_flexcode.data.popularity import item_features, popularity_strata
from recbole_flexcode.tokenizer.router import PopularityRouter, popularity_smoothness, stratified_load_balance

ROUTER_MODES = ("expected_loss", "decoupled")


@dataclass
class Plan:
    """One training step: history masks ``[N, S]``, target splits and weights ``[B, S']``."""

    history_probs: torch.Tensor
    splits: torch.Tensor
    weights: torch.Tensor
    warmup: bool = False


class SplitPolicy(nn.Module):
    n_splits: int

    def probs(self) -> torch.Tensor:
        raise NotImplementedError

    def inference_splits(self) -> torch.Tensor:
        """Split of every item at inference: ``argmax_s p_i(s)``."""
        return self.probs().argmax(dim=-1)

    def plan(self, target: torch.Tensor) -> Plan:
        raise NotImplementedError

    def add_loss(self, loss: torch.Tensor, plan: Plan, nll: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss


class FixedSplit(SplitPolicy):
    """Every item uses ``split`` collaborative tokens (FlexCode-Fix, CF-only, semantic-only)."""

    def __init__(self, n_items: int, budget: int, split: int):
        super().__init__()
        self.n_splits, self.split = budget + 1, int(split)
        onehot = torch.zeros(n_items, budget + 1)
        onehot[:, self.split] = 1.0
        self.register_buffer("onehot", onehot, persistent=False)

    def probs(self) -> torch.Tensor:
        return self.onehot

    def plan(self, target: torch.Tensor) -> Plan:
        ones = torch.ones(len(target), 1, device=target.device)
        return Plan(self.onehot, torch.full((len(target), 1), self.split, device=target.device), ones)


class _Router(SplitPolicy):
    """The PATA router over the item features (§4.3) with its regularisers and an optional warm-up."""

    def __init__(self, features, counts, budget: int, hidden_size: int, temperature: float, lb_weight: float,
                 lb_strata: int, smooth_weight: float, warmup_steps: int):
        super().__init__()
        self.n_splits, self.budget = budget + 1, budget
        self.router = PopularityRouter(features.shape[1], budget, hidden_size=hidden_size, temperature=temperature)
        self.register_buffer("features", torch.as_tensor(features))
        self.n_strata = int(lb_strata)
        self.register_buffer("strata", torch.as_tensor(popularity_strata(counts, self.n_strata)[1:], dtype=torch.long))
        order = torch.as_tensor(counts[1:]).argsort(stable=True) + 1
        self.register_buffer("popularity_order", order.long())
        self.lb_weight, self.smooth_weight, self.warmup_steps = float(lb_weight), float(smooth_weight), int(warmup_steps)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # in the checkpoint: a resumed run keeps its warm-up

    def probs(self) -> torch.Tensor:
        return self.router(self.features)

    def _in_warmup(self) -> bool:
        warm = self.training and int(self.steps) < self.warmup_steps
        self.steps += int(self.training)
        return warm

    def _warmup_plan(self, target: torch.Tensor) -> Plan:
        """Warm-up (ours): one uniformly drawn one-hot split per item, all target splits weighted equally."""
        n = self.features.shape[0]
        history = F.one_hot(torch.randint(0, self.n_splits, (n,), device=self.features.device), self.n_splits)
        splits = torch.arange(self.n_splits, device=target.device).expand(len(target), -1)
        weights = torch.full((len(target), self.n_splits), 1.0 / self.n_splits, device=target.device)
        return Plan(history.to(self.features.dtype), splits, weights, warmup=True)

    def _regularise(self, loss: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """``+ λ_lb L_lb + λ_smooth L_smooth`` (§4.3)."""
        if self.lb_weight > 0:
            loss = loss + self.lb_weight * stratified_load_balance(probs[1:], self.strata, self.n_strata)
        if self.smooth_weight > 0:
            loss = loss + self.smooth_weight * popularity_smoothness(self.router.alpha(probs), self.popularity_order)
        return loss


class ExpectedLossRouter(_Router):
    """Router and generator share ``Σ_s p_i(s) L_ARG(i, s)`` (SPEC's reading of §4.3); the router waits out the warm-up."""

    def plan(self, target: torch.Tensor) -> Plan:
        if self._in_warmup():
            return self._warmup_plan(target)
        probs = self.probs()
        splits = torch.arange(self.n_splits, device=target.device).expand(len(target), -1)
        return Plan(probs, splits, probs[target])

    def add_loss(self, loss, plan, nll, target):
        return loss if plan.warmup else self._regularise(loss, plan.history_probs)


class DecoupledRouter(_Router):
    """Ours (docs/design.md, "router"): during the warm-up the router fits the posterior over splits
    ``softmax_s(−sg[L_ARG(i, s)])`` of a generator trained on every split; afterwards it is frozen and
    the generator trains on each target's chosen split only."""

    def __init__(self, *args, stratum_balance: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if self.warmup_steps == 0:
            raise ConfigError("router_mode: decoupled needs a warm-up > 0 (the router learns during the warm-up only)")
        self.stratum_balance = stratum_balance

    def plan(self, target: torch.Tensor) -> Plan:
        if self._in_warmup():
            return self._warmup_plan(target)
        probs = self.probs().detach()
        ones = torch.ones(len(target), 1, device=target.device)
        return Plan(probs, probs[target].argmax(-1, keepdim=True), ones)

    def add_loss(self, loss, plan, nll, target):
        if not plan.warmup:
            return loss
        probs = self.probs()
        posterior = torch.softmax(-nll.detach(), dim=-1)
        per_row = -(posterior * probs[target].clamp_min(1e-12).log()).sum(-1)
        return self._regularise(loss + self._stratum_mean(per_row, target), probs)

    def _stratum_mean(self, values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean of per-row ``values`` with every popularity stratum of the targets weighted equally.

        A plain batch mean weights items by how often they are targets, so the few tail targets are
        outvoted in a router that generalises over popularity features (with the synthetic split
        losses of tests/test_flexcode.py the plain mean put 73 of 84 tail items on their split, this
        one 78). ``router_loss_balance: plain`` keeps the batch mean.
        """
        if not self.stratum_balance:
            return values.mean()
        stratum = self.strata[target - 1]
        sums = torch.zeros(self.n_strata, device=values.device, dtype=values.dtype).index_add_(0, stratum, values)
        counts = torch.bincount(stratum, minlength=self.n_strata).to(values.dtype)
        present = counts > 0
        return (sums[present] / counts[present]).mean()


def warmup_steps(config, train_rows: int) -> int:
    """Router warm-up in training steps: ``router_warmup_steps``, or ``router_warmup_epochs`` epochs of
    the training split at ``train_batch_size`` (rounded up); ``decoupled`` without either takes
    ``router_decoupled_warmup_epochs``."""
    steps = int(config["router_warmup_steps"] or 0)
    epochs = config["router_warmup_epochs"]
    if epochs is None and steps == 0 and config["router_mode"] == "decoupled":
        epochs = config["router_decoupled_warmup_epochs"]
    if steps < 0 or (epochs is not None and float(epochs) < 0):
        raise ConfigError("router_warmup_steps and router_warmup_epochs must be >= 0")
    if epochs is not None and steps:
        raise ConfigError("give router_warmup_steps or router_warmup_epochs, not both")
    if epochs is not None:
        steps = math.ceil(float(epochs) * math.ceil(train_rows / int(config["train_batch_size"])))
    return steps


def build_split_policy(config, variant, train_dataset, counts, uncertainty) -> SplitPolicy:
    """The policy of ``variant``: a fixed split, or the router of ``router_mode``."""
    budget = int(config["token_budget"])
    if not variant.routed:
        return FixedSplit(train_dataset.item_num, budget, variant.fixed_split)
    mode = config["router_mode"]
    if mode not in ROUTER_MODES:
        raise ConfigError(f"router_mode: unknown value '{mode}' (choose from {', '.join(ROUTER_MODES)})")
    balance = config["router_loss_balance"]
    if balance not in ("stratum", "plain"):
        raise ConfigError(f"router_loss_balance: unknown value '{balance}' (choose from stratum, plain)")
    args = (item_features(train_dataset, uncertainty)["features"], counts, budget, int(config["router_hidden_size"]),
            float(config["router_temperature"]), config["lb_weight"], config["lb_strata"], config["smooth_weight"],
            warmup_steps(config, len(train_dataset.inter_feat)))
    if mode == "decoupled":
        return DecoupledRouter(*args, stratum_balance=balance == "stratum")
    return ExpectedLossRouter(*args)
